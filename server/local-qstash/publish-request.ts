import { createHash } from 'node:crypto';

export const PUBLISH_PATH_PREFIX = '/v2/publish/';
/** contract.md §3: 1 MB message limit. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
/** contract.md §3: 7-day maximum delay on the free tier. */
export const MAX_DELAY_MS = 7 * 24 * 60 * 60 * 1000;
export const DEFAULT_RETRIES = 3;

const FORWARD_PREFIX = 'upstash-forward-';
/** Hop-by-hop and framing headers: a forwarded copy would corrupt the delivery request. */
const UNFORWARDABLE_HEADERS = new Set([
  'connection',
  'content-length',
  'expect',
  'host',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
const DURATION_UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** What a publish asks for, read from its path and headers. */
export interface PublishSpec {
  /** Everything after `/v2/publish/`, query string included; also the JWT `sub`. */
  readonly destination: string;
  readonly method: string;
  /** `Upstash-Delay` in ms, when given. */
  readonly delayMs: number | undefined;
  /** `Upstash-Not-Before` as epoch ms, when given; it overrides `Upstash-Delay`. */
  readonly notBeforeMs: number | undefined;
  readonly retries: number;
  readonly deduplicationId: string | undefined;
  readonly contentBasedDeduplication: boolean;
  readonly contentType: string | undefined;
  /** `Upstash-Forward-*` headers with the prefix removed, lower-case names. */
  readonly forwardedHeaders: Readonly<Record<string, string>>;
}

export type PublishParseResult =
  | { readonly ok: true; readonly spec: PublishSpec }
  | { readonly ok: false; readonly status: number; readonly error: string };

/**
 * Reads a publish request. `path` is the raw request target (path and query);
 * `headers` have lower-case names, as Node delivers them.
 */
export function parsePublishRequest(
  path: string,
  headers: Readonly<Record<string, string>>,
  nowMs: number,
): PublishParseResult {
  if (!path.startsWith(PUBLISH_PATH_PREFIX)) return fail(404, `no route for ${path}`);
  const destination = path.slice(PUBLISH_PATH_PREFIX.length);
  if (!isHttpUrl(destination)) return fail(400, `invalid destination url: ${JSON.stringify(destination)}`);

  const method = (headers['upstash-method'] ?? 'POST').toUpperCase();
  if (!/^[A-Z]+$/.test(method)) return fail(400, `invalid Upstash-Method: ${method}`);

  const delayHeader = headers['upstash-delay'];
  const delayMs = delayHeader === undefined ? undefined : parseDurationMs(delayHeader);
  if (delayMs === null) return fail(400, `invalid Upstash-Delay: ${String(delayHeader)}`);
  if (delayMs !== undefined && delayMs > MAX_DELAY_MS) return fail(400, `Upstash-Delay ${String(delayHeader)} exceeds 7d`);

  const notBeforeHeader = headers['upstash-not-before'];
  const notBeforeSeconds = notBeforeHeader === undefined ? undefined : parseWholeNumber(notBeforeHeader);
  if (notBeforeSeconds === null) return fail(400, `invalid Upstash-Not-Before: ${String(notBeforeHeader)}`);
  const notBeforeMs = notBeforeSeconds === undefined ? undefined : notBeforeSeconds * 1000;
  if (notBeforeMs !== undefined && notBeforeMs - nowMs > MAX_DELAY_MS) {
    return fail(400, `Upstash-Not-Before ${String(notBeforeHeader)} is more than 7d ahead`);
  }

  const retriesHeader = headers['upstash-retries'];
  const retries = retriesHeader === undefined ? DEFAULT_RETRIES : parseWholeNumber(retriesHeader);
  if (retries === null) return fail(400, `invalid Upstash-Retries: ${String(retriesHeader)}`);

  const deduplicationId = headers['upstash-deduplication-id'];
  if (deduplicationId === '') return fail(400, 'empty Upstash-Deduplication-Id');

  return {
    ok: true,
    spec: {
      destination,
      method,
      delayMs,
      notBeforeMs,
      retries,
      deduplicationId,
      contentBasedDeduplication: headers['upstash-content-based-deduplication'] === 'true',
      contentType: headers['content-type'],
      forwardedHeaders: readForwardedHeaders(headers),
    },
  };
}

/** The key a publish is deduplicated on, or undefined when it asked for no deduplication. */
export function deduplicationKey(spec: PublishSpec, body: Uint8Array): string | undefined {
  if (spec.deduplicationId !== undefined) return `id:${spec.deduplicationId}`;
  if (!spec.contentBasedDeduplication) return undefined;
  const hash = createHash('sha256').update(spec.destination).update('\n').update(body).digest('hex');
  return `content:${hash}`;
}

/** Time from publish to the first delivery, in unscaled ms. */
export function firstDeliveryDelayMs(spec: PublishSpec, publishedAtMs: number): number {
  if (spec.notBeforeMs !== undefined) return Math.max(0, spec.notBeforeMs - publishedAtMs);
  return spec.delayMs ?? 0;
}

/**
 * `"10s"`, `"3m"`, `"2h"`, `"7d"`, and Go-style sums such as `"1h30m"`;
 * null when the text is not a duration.
 */
export function parseDurationMs(text: string): number | null {
  const trimmed = text.trim();
  if (!/^(?:\d+(?:ms|s|m|h|d))+$/.test(trimmed)) return null;
  let total = 0;
  for (const match of trimmed.matchAll(/(\d+)(ms|s|m|h|d)/g)) {
    const [, amount, unit] = match;
    total += Number(amount) * (DURATION_UNIT_MS[unit ?? ''] ?? 0);
  }
  return total;
}

function readForwardedHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  const forwarded: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(FORWARD_PREFIX)) continue;
    const target = name.slice(FORWARD_PREFIX.length);
    if (target !== '' && !UNFORWARDABLE_HEADERS.has(target)) forwarded[target] = value;
  }
  return forwarded;
}

function parseWholeNumber(text: string): number | null {
  const trimmed = text.trim();
  return /^\d+$/.test(trimmed) ? Number(trimmed) : null;
}

function isHttpUrl(text: string): boolean {
  if (!URL.canParse(text)) return false;
  const { protocol } = new URL(text);
  return protocol === 'http:' || protocol === 'https:';
}

function fail(status: number, error: string): PublishParseResult {
  return { ok: false, status, error };
}
