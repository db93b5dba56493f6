/**
 * Finds secrets in text the worker produced: its log lines and the `error_message`s the
 * app stored. Known values (keys, tokens, signing keys, the cron secret, every signed-URL
 * credential the sandbox handed out) are matched literally; on top of that, anything shaped
 * like a credential is caught by pattern. Overlapping hits count once.
 */

export type LeakKind = 'known-secret' | 'url-token' | 'url-signature' | 'jwt' | 'auth-header';

export interface Leak {
  readonly where: string;
  readonly kind: LeakKind;
  /** The hit with its middle masked, safe to print. */
  readonly excerpt: string;
}

const PATTERNS: readonly (readonly [LeakKind, RegExp])[] = [
  // `[redacted]` is what the logger and the message sanitizer leave behind.
  ['url-token', /token=(?!\[redacted)[A-Za-z0-9._~+/=%-]{8,}/g],
  ['url-signature', /[?&](?:sig|signature|X-Amz-Signature)=(?!\[redacted)[A-Za-z0-9._~+/=%-]{8,}/gi],
  // A JWT, or any base64url-encoded JSON object (a JWT part, the QStash token).
  ['jwt', /eyJ[A-Za-z0-9_=-]{10,}(?:\.[A-Za-z0-9_=-]*){0,2}/g],
  ['auth-header', /\b(?:Bearer|Worker)\s+(?!\[redacted)[A-Za-z0-9._~+/=-]{8,}/g],
];

interface Hit {
  readonly start: number;
  readonly end: number;
  readonly kind: LeakKind;
}

function mask(text: string): string {
  if (text.length <= 10) return `${text.slice(0, 2)}…`;
  return `${text.slice(0, 6)}…${text.slice(-2)} (${text.length} chars)`;
}

export interface LeakScanner {
  /** Records and counts the leaks in one text. */
  scan(text: string, where: string): number;
  leaks(): readonly Leak[];
}

/** `secrets` shorter than 4 characters are ignored (they would match ordinary text). */
export function createLeakScanner(secrets: Iterable<string>): LeakScanner {
  const known = [...new Set([...secrets].filter((secret) => secret.length >= 4))];
  const found: Leak[] = [];

  function hitsIn(text: string): Hit[] {
    const hits: Hit[] = [];
    for (const secret of known) {
      for (let at = text.indexOf(secret); at !== -1; at = text.indexOf(secret, at + secret.length)) {
        hits.push({ start: at, end: at + secret.length, kind: 'known-secret' });
      }
    }
    for (const [kind, pattern] of PATTERNS) {
      for (const match of text.matchAll(pattern)) hits.push({ start: match.index, end: match.index + match[0].length, kind });
    }
    return hits.sort((a, b) => a.start - b.start || b.end - a.end);
  }

  return {
    scan(text, where) {
      let count = 0;
      let coveredUntil = -1;
      for (const hit of hitsIn(text)) {
        if (hit.start < coveredUntil) {
          coveredUntil = Math.max(coveredUntil, hit.end);
          continue;
        }
        coveredUntil = hit.end;
        count += 1;
        found.push({ where, kind: hit.kind, excerpt: mask(text.slice(hit.start, hit.end)) });
      }
      return count;
    },
    leaks: () => [...found],
  };
}

/** Credentials carried in the query of signed URLs the sandbox saw (`token`, `sig`). */
export function urlCredentials(pathWithQuery: string): string[] {
  const query = pathWithQuery.indexOf('?');
  if (query === -1) return [];
  const params = new URLSearchParams(pathWithQuery.slice(query + 1));
  return ['token', 'sig', 'signature'].flatMap((name) => params.getAll(name)).filter((value) => value.length >= 8);
}
