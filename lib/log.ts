import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

const TOKEN_QUERY = /([?&](?:token|X-Amz-Signature|X-Amz-Credential|sig|signature)=)[^&\s"'\\]+/gi;
const AUTH_VALUE = /\b(Bearer|Worker)\s+(?=[\w.~+/=-]*[\d_.~+/=-])[\w.~+/=-]{8,}/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g;

/** Removes known secrets, signed-URL tokens, auth header values and JWTs from a text. */
export function redactText(text: string, secrets: readonly string[]): string {
  let out = text;
  // Longest first, so a secret that starts another cannot leave the other's tail behind;
  // each also in its JSON-escaped form, as it appears inside a serialised log line.
  const forms = secrets
    .filter((secret) => secret.length >= 4)
    .flatMap((secret) => [secret, JSON.stringify(secret).slice(1, -1)])
    .sort((a, b) => b.length - a.length);
  for (const form of new Set(forms)) out = out.split(form).join('[redacted]');
  return out
    .replace(TOKEN_QUERY, '$1[redacted]')
    .replace(AUTH_VALUE, '$1 [redacted]')
    .replace(JWT, '[redacted-jwt]');
}

export interface LoggerOptions {
  level: string;
  secrets: readonly string[];
  /** Readable lines for a terminal instead of one JSON object per line. */
  pretty?: boolean;
  destination?: DestinationStream;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Turns one pino JSON line into `HH:MM:SS LEVEL msg key=value ...`. */
export function prettyLine(json: string): string {
  try {
    const record = JSON.parse(json) as Record<string, unknown>;
    const { level, time, msg, pid: _pid, hostname: _host, ...rest } = record;
    const clock = new Date(typeof time === 'number' ? time : Date.now()).toISOString().slice(11, 19);
    const fields = Object.entries(rest)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    const name = LEVEL_NAMES[Number(level)] ?? 'INFO';
    return `${clock} ${name.padEnd(5)} ${typeof msg === 'string' ? msg : ''}${fields ? `  ${fields}` : ''}\n`;
  } catch {
    return json;
  }
}

/**
 * One JSON object per line (for Vercel log drains). Redaction happens here, on the
 * serialised line, so no call site has to remember it.
 */
export function createLogger(options: LoggerOptions): Logger {
  const secrets = [...options.secrets];
  return pino(
    {
      level: options.level,
      base: null,
      formatters: { level: (label, number) => ({ level: options.pretty ? number : label }) },
      hooks: {
        streamWrite: (line: string) => {
          const clean = redactText(line, secrets);
          return options.pretty ? prettyLine(clean) : clean;
        },
      },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A short, log-safe description of any thrown value. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
