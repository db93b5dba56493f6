import type { IncomingMessage, ServerResponse } from 'node:http';

/** One request a sandbox service received, kept so tests can assert what was sent. */
export interface RecordedRequest {
  readonly service: 'app' | 'runway' | 'storage';
  readonly method: string;
  /** Path with query string, relative to the service's base URL. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Parsed JSON when the body was JSON, else undefined. */
  readonly json: unknown;
  /** Body size in bytes. */
  readonly bytes: number;
  readonly at: number;
}

export async function readBody(req: IncomingMessage, limitBytes = 64 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limitBytes) throw new Error(`body over ${limitBytes} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

export function flatHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[key] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

export function tryJson(body: Buffer): unknown {
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
