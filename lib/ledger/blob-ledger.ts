import { randomUUID } from 'node:crypto';
import {
  BlobAccessError,
  BlobContentTypeNotAllowedError,
  BlobError,
  BlobFileTooLargeError,
  BlobPathnameMismatchError,
  BlobRequestAbortedError,
  BlobServiceNotAvailable,
  BlobServiceRateLimited,
  BlobStoreNotFoundError,
  BlobStoreSuspendedError,
  del,
  get,
  list,
  put,
} from '@vercel/blob';
import { PermanentError, UpstreamError } from '../errors.js';
import { assertReadWriteToken } from './blob-token.js';
import {
  factPath,
  itemPrefix,
  parseAttempt,
  parseFact,
  parseGeneration,
  readRecord,
  slotPath,
  slotsViewOf,
  SLOTS_PREFIX,
  throttledPath,
  type FactName,
  type JobKey,
  type JobRecord,
  type Ledger,
} from './ledger.js';

/**
 * Blob operations one video costs, counting only advanced operations (put, copy, list),
 * the ones the plans meter hardest (contract §5: Hobby includes about 2,000 a month): one
 * put per claim of `submitting`, `task` and `reported` (a completed report's claim is also
 * the upload's record), and one for the Runway slot marker = 4. An item seen for the first
 * time needs no list (its first claim is the lookup); an item with history (a resumed
 * attempt, an admin retry) costs one list more. Deleting the marker is free; reads are
 * `get`s, simple operations: the poll and the upload read only the two facts that close an
 * attempt (`reported`, `abandoned`). Apart from videos, a cron-poll run that leased
 * something lists the slot markers once (`SLOT_LISTS_PER_CRON_RUN`); an idle run makes no
 * Blob call. A task seen THROTTLED costs one put.
 */
export const BLOB_ADVANCED_OPS_PER_VIDEO = 4;
export const SLOT_LISTS_PER_CRON_RUN = 1;

const DEFAULT_BLOB_REQUEST_TIMEOUT_MS = 15_000;

/**
 * Stored next to the fact's own fields. The SDK retries a put whose response was lost,
 * and the retry then fails with "already exists" although the first try wrote the blob;
 * the claim id lets the writer recognise its own write. Fact schemas ignore the field.
 */
const CLAIM_ID_FIELD = 'claim_id';
const CHECK_PATHNAME = 'check/ledger-check.json';

export interface BlobLedgerOptions {
  /** `BLOB_READ_WRITE_TOKEN` of a private store, passed on every call (never read from env). */
  readonly token: string;
  /** Bound on one Blob call, the SDK's own retries included. */
  readonly requestTimeoutMs?: number;
}

/** The ledger in a private Vercel Blob store (design §4). */
export function createBlobLedger(options: BlobLedgerOptions): Ledger {
  const { token } = options;
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_BLOB_REQUEST_TIMEOUT_MS;
  assertReadWriteToken(token);

  /**
   * Aborts through an AbortController on purpose: the SDK stops its retry loop only on an
   * `AbortError`, while `AbortSignal.timeout` rejects with a `TimeoutError` it would retry.
   */
  async function withDeadline<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      return await run(controller.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The blob's text, or undefined when it does not exist. Always read past the CDN cache. */
  async function fetchText(pathname: string): Promise<string | undefined> {
    try {
      return await withDeadline(async (signal) => {
        const result = await get(toUrlPath(pathname), {
          access: 'private',
          useCache: false,
          token,
          abortSignal: signal,
        });
        // No If-None-Match is sent, so the store never answers 304: a result always has a body.
        if (result === null) return undefined;
        return await new Response(result.stream).text();
      });
    } catch (error) {
      throw toUpstreamError('get', pathname, error);
    }
  }

  async function read(key: JobKey, facts?: readonly FactName[]): Promise<JobRecord> {
    return readRecord(key, async (fact) => parseJson(await fetchText(factPath(key, fact))), facts);
  }

  /** Every blob under a prefix: one list call per 1,000 blobs. */
  async function listAll(prefix: string): Promise<{ pathname: string; uploadedAt: Date }[]> {
    const blobs: { pathname: string; uploadedAt: Date }[] = [];
    let cursor: string | undefined;
    do {
      const page = await withDeadline((signal) =>
        list({ prefix, token, abortSignal: signal, ...(cursor === undefined ? {} : { cursor }) }),
      ).catch((error: unknown) => {
        throw toUpstreamError('list', prefix, error);
      });
      blobs.push(...page.blobs);
      cursor = page.hasMore ? page.cursor : undefined;
    } while (cursor !== undefined);
    return blobs;
  }

  /** A small blob written in place of any older one (markers, the reachability probe). */
  async function overwrite(pathname: string, body = '{}'): Promise<void> {
    await withDeadline((signal) =>
      put(pathname, body, {
        access: 'private',
        addRandomSuffix: false,
        allowOverwrite: true,
        contentType: 'application/json',
        token,
        abortSignal: signal,
      }),
    ).catch((error: unknown) => {
      throw toUpstreamError('put', pathname, error);
    });
  }

  async function remove(pathnames: string | string[]): Promise<void> {
    await withDeadline((signal) => del(pathnames, { token, abortSignal: signal })).catch((error: unknown) => {
      throw toUpstreamError('del', String(pathnames), error);
    });
  }

  return {
    async latest(itemId) {
      const prefix = itemPrefix(itemId);
      let highest: number | undefined;
      const generations = new Map<number, number>();
      for (const blob of await listAll(prefix)) {
        // Attempt numbers compare as numbers: the listing is lexical, where "10" < "9".
        const [first, second] = blob.pathname.slice(prefix.length).split('/');
        const attempt = parseAttempt(first ?? '');
        if (attempt === undefined) continue;
        if (highest === undefined || attempt > highest) highest = attempt;
        const generation = parseGeneration(second ?? '');
        if (generation !== undefined) generations.set(attempt, Math.max(generations.get(attempt) ?? 1, generation));
      }
      if (highest === undefined) return undefined;
      const record = await read({ itemId, attempt: highest });
      const generation = generations.get(highest) ?? 1;
      return generation > 1 ? { ...record, latestGeneration: generation } : record;
    },

    read,

    async claim(key, fact, value) {
      const pathname = factPath(key, fact);
      const parsed = parseFact(fact, value);
      if (parsed === undefined) throw new PermanentError('ledger', `invalid ${fact} fact`);
      const claimId = randomUUID();
      const body = JSON.stringify({ ...parsed, [CLAIM_ID_FIELD]: claimId });
      try {
        await withDeadline((signal) =>
          put(pathname, body, {
            access: 'private',
            addRandomSuffix: false,
            allowOverwrite: false,
            contentType: 'application/json',
            token,
            abortSignal: signal,
          }),
        );
        return true;
      } catch (putError) {
        // "Already exists" arrives as a plain BlobError that only its message tells apart
        // from other bad requests, so the blob itself decides: present means claimed, and
        // it is this call's own write when it carries this call's claim id.
        const existing = await fetchText(pathname).catch(() => undefined);
        if (existing === undefined) throw toUpstreamError('put', pathname, putError);
        const stored = parseJson(existing);
        return isRecord(stored) && stored[CLAIM_ID_FIELD] === claimId;
      }
    },

    markSlot: (key, model) => overwrite(slotPath(key, model)),
    releaseSlot: (key, model) => remove(slotPath(key, model)),
    markThrottled: (model) => overwrite(throttledPath(model)),
    clearThrottled: (model) => remove(throttledPath(model)),

    async slots(sinceMs) {
      const blobs = await listAll(SLOTS_PREFIX);
      const { view, stale } = slotsViewOf(
        blobs.map((blob) => ({ pathname: blob.pathname, atMs: blob.uploadedAt.getTime() })),
        sinceMs,
      );
      // Deletes are free; a marker left by a job that died would otherwise be listed forever.
      if (stale.length > 0) await remove(stale).catch(() => undefined);
      return view;
    },

    async check() {
      await overwrite(CHECK_PATHNAME, JSON.stringify({ at: new Date().toISOString() }));
      if ((await fetchText(CHECK_PATHNAME)) === undefined) {
        const message = `Vercel Blob get "${CHECK_PATHNAME}": just written, yet not found`;
        throw new UpstreamError('ledger', message, { retryable: true });
      }
    },
  };
}

/**
 * `get` joins a pathname into the store URL without escaping it, and the store decodes the
 * URL path; the `%XX` that `safeSegment` puts in pathnames must survive that decoding.
 */
function toUrlPath(pathname: string): string {
  return pathname.split('/').map(encodeURIComponent).join('/');
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

type Operation = 'put' | 'list' | 'get' | 'del';

interface Verdict {
  readonly status?: number;
  readonly retryable: boolean;
  readonly retryAfterSeconds?: number;
}

/** What a failed call means, from the SDK's error classes (its API errors carry no status). */
function classify(operation: Operation, error: unknown): Verdict {
  if (error instanceof BlobServiceRateLimited) {
    return error.retryAfter > 0
      ? { status: 429, retryable: true, retryAfterSeconds: error.retryAfter }
      : { status: 429, retryable: true };
  }
  if (error instanceof BlobServiceNotAvailable) return { status: 503, retryable: true };
  if (error instanceof BlobRequestAbortedError) return { retryable: true };
  if (error instanceof BlobAccessError) return { status: 403, retryable: false };
  if (error instanceof BlobStoreNotFoundError || error instanceof BlobStoreSuspendedError) {
    return { retryable: false };
  }
  if (
    error instanceof BlobContentTypeNotAllowedError ||
    error instanceof BlobFileTooLargeError ||
    error instanceof BlobPathnameMismatchError
  ) {
    return { status: 400, retryable: false };
  }
  // `get` reports every non-2xx answer, 5xx included, as a plain BlobError.
  if (operation !== 'get' && error instanceof BlobError && error.constructor === BlobError) {
    return { status: 400, retryable: false };
  }
  // BlobUnknownError (5xx after the SDK's own retries), network failures, timeouts.
  return { retryable: true };
}

function toUpstreamError(operation: Operation, pathname: string, error: unknown): UpstreamError {
  const verdict = classify(operation, error);
  const reason = error instanceof Error ? error.message : String(error);
  return new UpstreamError('ledger', `Vercel Blob ${operation} "${pathname}": ${reason}`, {
    status: verdict.status,
    retryable: verdict.retryable,
    retryAfterSeconds: verdict.retryAfterSeconds,
    cause: error,
  });
}
