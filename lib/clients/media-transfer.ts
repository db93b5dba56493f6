import http from 'node:http';
import https from 'node:https';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { z } from 'zod';
import { PermanentError, UpstreamError } from '../errors.js';
import { IDEMPOTENT_RETRY, withRetry } from '../retry.js';
import { assertAllowedUrl } from '../url-policy.js';

/**
 * Bytes in and out: the photo from its signed download URL, and the Runway output
 * streamed into the Supabase signed upload URL (contract §6). The upload uses node:http
 * so the request honours backpressure: `fetch` with a stream body reads ahead and grows
 * memory by the body size.
 */

/** How long to wait for storage's answer after the upload stream broke off. */
const EARLY_ANSWER_GRACE_MS = 1_000;

/** App photos can be up to 20 MB (contract §2.2). */
export const PHOTO_MAX_BYTES = 20 * 1024 * 1024;

const megabytes = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MB`;

async function fetchWithTimeout(url: URL, service: 'photo' | 'output', timeoutMs: number, signal?: AbortSignal): Promise<Response> {
  try {
    return await fetch(url, {
      redirect: 'error',
      signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const timedOut = error instanceof Error && error.name === 'TimeoutError';
    throw new UpstreamError(service, `${service}: download ${timedOut ? `timed out after ${Math.round(timeoutMs / 1000)} s` : 'failed (network error)'}`, {
      retryable: true,
      code: timedOut ? 'timeout' : 'network',
      cause: error,
    });
  }
}

/** Downloads the photo with a byte cap; the timeout covers the body as well as the headers. */
export async function downloadPhoto(rawUrl: string, options: { maxBytes?: number; timeoutMs: number }): Promise<Uint8Array<ArrayBuffer>> {
  const maxBytes = options.maxBytes ?? PHOTO_MAX_BYTES;
  const url = assertAllowedUrl(rawUrl, 'photo');
  return withRetry(async () => {
    const response = await fetchWithTimeout(url, 'photo', options.timeoutMs);
    if (!response.ok) throw photoDownloadError(response.status, await response.text().catch(() => ''));
    const declared = Number(response.headers.get('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > maxBytes) {
      await response.body?.cancel();
      throw new PermanentError('photo', `photo: ${megabytes(declared)} is over the ${megabytes(maxBytes)} limit`);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      const reader = response.body?.getReader();
      for (;;) {
        const next = reader ? await reader.read() : { done: true as const, value: undefined };
        if (next.done) break;
        size += next.value.byteLength;
        if (size > maxBytes) {
          await reader?.cancel();
          throw new PermanentError('photo', `photo: over the ${megabytes(maxBytes)} limit`);
        }
        chunks.push(next.value);
      }
    } catch (error) {
      if (error instanceof PermanentError) throw error;
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      throw new UpstreamError('photo', `photo: download ${timedOut ? 'timed out' : 'was cut off'}`, { retryable: true, cause: error });
    }
    const out = new Uint8Array(new ArrayBuffer(size));
    let offset = 0;
    for (const chunk of chunks) {
      out.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return out;
  }, IDEMPOTENT_RETRY);
}

/** What Supabase said about an upload. Errors are HTTP 400 with the real code in the body. */
export type UploadVerdict =
  | { readonly kind: 'stored' }
  | { readonly kind: 'duplicate' }
  | { readonly kind: 'expired-token' }
  | { readonly kind: 'too-large' }
  | { readonly kind: 'error'; readonly retryable: boolean; readonly detail: string };

const supabaseErrorSchema = z.looseObject({
  statusCode: z.union([z.string(), z.number()]).optional(),
  error: z.string().optional(),
  message: z.string().optional(),
});

/** Supabase Storage's error body: the real code is `statusCode` in the body, not the HTTP status. */
export function supabaseErrorOf(bodyText: string): { code: string; name: string; message: string } {
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    body = undefined;
  }
  const parsed = supabaseErrorSchema.safeParse(body);
  if (!parsed.success) return { code: '', name: '', message: '' };
  return { code: String(parsed.data.statusCode ?? ''), name: parsed.data.error ?? '', message: parsed.data.message ?? '' };
}

/**
 * A refused photo download. Only "not found" means the photo is missing; an expired token
 * or an outage is transient (the next lease presigns a fresh URL).
 */
export function photoDownloadError(status: number, bodyText: string): UpstreamError {
  const { code, name } = supabaseErrorOf(bodyText);
  if (status === 404 || code === '404' || /^not_?found$/i.test(name)) {
    return new UpstreamError('photo', 'photo: not found in storage', { status, retryable: false, code: 'not-found' });
  }
  if (name === 'InvalidJWT') {
    return new UpstreamError('photo', 'photo: download token expired', { status, retryable: true, code: 'expired' });
  }
  const detail = [code && `statusCode ${code}`, name].filter(Boolean).join(' ');
  return new UpstreamError('photo', `photo: download answered ${status}${detail ? ` (${detail})` : ''}`, {
    status,
    retryable: status >= 500 || status === 408 || status === 429,
  });
}

export function interpretUploadAnswer(status: number, bodyText: string): UploadVerdict {
  const { code, name, message } = supabaseErrorOf(bodyText);
  if (status >= 200 && status < 300 && code === '') return { kind: 'stored' };
  if (code === '409' || name === 'Duplicate') return { kind: 'duplicate' };
  if (code === '413' || status === 413) return { kind: 'too-large' };
  if (name === 'InvalidJWT' || (code === '400' && /exp|jwt|token/i.test(message))) return { kind: 'expired-token' };
  const detail = [code && `statusCode ${code}`, name].filter(Boolean).join(' ') || `HTTP ${status}`;
  const retryable = status >= 500 || status === 429 || status === 408 || code.startsWith('5');
  return { kind: 'error', retryable, detail };
}

export interface StreamResult {
  readonly verdict: UploadVerdict;
  readonly bytes: number;
  /** Content-Length of the source, when it sent one. */
  readonly expectedBytes: number | undefined;
}

/** Opens the Runway output. A 401/403/404/410 means the signed URL expired: fetch the task again. */
export async function openOutput(rawUrl: string, timeoutMs: number, signal: AbortSignal): Promise<{ body: Readable; length: number | undefined }> {
  const url = assertAllowedUrl(rawUrl, 'output');
  const response = await fetchWithTimeout(url, 'output', timeoutMs, signal);
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    const expired = [401, 403, 404, 410].includes(response.status);
    throw new UpstreamError('output', `output: download answered ${response.status}`, {
      status: response.status,
      retryable: !expired,
      code: expired ? 'expired' : undefined,
    });
  }
  const declared = Number(response.headers.get('content-length') ?? NaN);
  return {
    body: Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
    length: Number.isFinite(declared) ? declared : undefined,
  };
}

/**
 * Streams `source` into a Supabase signed upload URL with PUT. Memory stays flat: the
 * pipeline only reads from the download as fast as the upload socket drains.
 */
export async function putStream(
  rawTarget: string,
  source: Readable,
  options: { contentLength: number | undefined; timeoutMs: number; signal: AbortSignal },
): Promise<{ status: number; body: string; bytes: number }> {
  let target: URL;
  try {
    target = assertAllowedUrl(rawTarget, 'storage');
  } catch (error) {
    source.destroy();
    throw error;
  }
  const transport = target.protocol === 'https:' ? https : http;
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const headers: Record<string, string | number> = { 'content-type': 'video/mp4' };
  if (options.contentLength !== undefined) headers['content-length'] = options.contentLength;
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)]);

  const request = transport.request(target, { method: 'PUT', headers, signal });
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => {
        if (chunks.length < 64) chunks.push(chunk);
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('error', reject);
  });
  // Settles with the answer, or undefined if none came; never rejects.
  const answered = answer.then(
    (result) => result,
    () => undefined,
  );
  try {
    const [, result] = await Promise.all([pipeline(source, counter, request), answer]);
    return { ...result, bytes };
  } catch (error) {
    source.destroy();
    // Storage may refuse early (an expired token, a duplicate) and close the socket before
    // reading the whole body: its answer is still the truth about the upload.
    const early = await Promise.race([answered, new Promise<undefined>((resolve) => setTimeout(resolve, EARLY_ANSWER_GRACE_MS))]);
    request.destroy();
    if (early && early.status >= 400) return { ...early, bytes };
    const fromSource = error instanceof UpstreamError;
    if (fromSource) throw error;
    throw new UpstreamError('storage', `storage: upload ${signal.aborted ? 'timed out' : 'was cut off'} after ${megabytes(bytes)}`, {
      retryable: true,
      cause: error,
    });
  }
}
