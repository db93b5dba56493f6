import http from 'node:http';
import https from 'node:https';
import { pipeline as pipelineStreams, type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { z } from 'zod';
import { PermanentError, UpstreamError } from '../errors.js';
import { IDEMPOTENT_RETRY, withRetry } from '../retry.js';
import { humanSize, notVideoMessage } from '../decide/failure-message.js';
import { isVideoOutput, mediaTypeOf, VIDEO_SNIFF_BYTES } from '../media/video-sniff.js';
import { assertAllowedUrl } from '../url-policy.js';

/**
 * Bytes in and out: the photo from its signed download URL, and the Runway output
 * streamed into the Supabase signed upload URL (contract §6). The output's download and its
 * upload both use node:http, piped with backpressure: `fetch` with a stream body reads ahead
 * and grows memory by the body size (contract §6), and fetch's download body reads ahead too.
 */

/** How long to wait for storage's answer after the upload stream broke off. */
const EARLY_ANSWER_GRACE_MS = 1_000;

/** App photos can be up to 20 MB (contract §2.2). */
export const PHOTO_MAX_BYTES = 20 * 1024 * 1024;

/**
 * A signal that aborts after `ms`, or when `parent` does, with a `TimeoutError` reason for
 * the timeout. Its own timer holds the controller: a signal from `AbortSignal.timeout` that
 * only an `AbortSignal.any` refers to can be garbage collected before it fires, and the
 * timeout with it (a transfer that never ends). The timer does not keep the process alive.
 */
function deadlineSignal(ms: number, parent?: AbortSignal): { readonly signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')), ms);
  timer.unref();
  const onParentAbort = (): void => controller.abort(parent?.reason);
  if (parent?.aborted) onParentAbort();
  else parent?.addEventListener('abort', onParentAbort, { once: true });
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onParentAbort);
    },
  };
}

/** A timeout as a person reads it: whole seconds, or milliseconds under one second. */
function spanText(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

/** A download that got no answer: timed out, or failed below HTTP (refused, reset, a redirect). */
function downloadFailure(service: 'photo' | 'output', timeoutMs: number, error: unknown): UpstreamError {
  const timedOut = error instanceof Error && error.name === 'TimeoutError';
  return new UpstreamError(service, `${service}: download ${timedOut ? `timed out after ${spanText(timeoutMs)}` : 'failed (network error)'}`, {
    retryable: true,
    code: timedOut ? 'timeout' : 'network',
    cause: error,
  });
}

async function fetchPhoto(url: URL, timeoutMs: number): Promise<Response> {
  try {
    return await fetch(url, {
      redirect: 'error',
      // Not cleared: the timeout covers the body, which the caller reads after this returns.
      signal: deadlineSignal(timeoutMs).signal,
    });
  } catch (error) {
    throw downloadFailure('photo', timeoutMs, error);
  }
}

/** Downloads the photo with a byte cap; the timeout covers the body as well as the headers. */
export async function downloadPhoto(rawUrl: string, options: { timeoutMs: number }): Promise<Uint8Array<ArrayBuffer>> {
  const url = assertAllowedUrl(rawUrl, 'photo');
  return withRetry(async () => {
    const response = await fetchPhoto(url, options.timeoutMs);
    if (!response.ok) throw photoDownloadError(response.status, await response.text().catch(() => ''));
    const declared = Number(response.headers.get('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > PHOTO_MAX_BYTES) {
      await response.body?.cancel();
      throw new PermanentError('photo', `photo: ${humanSize(declared)} is over the ${humanSize(PHOTO_MAX_BYTES)} limit`);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      const reader = response.body?.getReader();
      for (;;) {
        const next = reader ? await reader.read() : { done: true as const, value: undefined };
        if (next.done) break;
        size += next.value.byteLength;
        if (size > PHOTO_MAX_BYTES) {
          await reader?.cancel();
          throw new PermanentError('photo', `photo: over the ${humanSize(PHOTO_MAX_BYTES)} limit`);
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
function supabaseErrorOf(bodyText: string): { code: string; name: string; message: string } {
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
function photoDownloadError(status: number, bodyText: string): UpstreamError {
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

export interface OpenedOutput {
  /** Every byte of the output, the sniffed first ones included. */
  readonly body: Readable;
  /** Content-Length, when it describes the bytes `body` yields. */
  readonly length: number | undefined;
}

/**
 * Statuses fetch follows. The output download refuses them as a network error, as it did with
 * fetch's `redirect: 'error'`: following one would lead past `assertAllowedUrl`.
 */
const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/** 2xx statuses that carry no body (fetch gives them a null body). */
const NO_BODY_STATUSES: ReadonlySet<number> = new Set([204, 205]);

/** What an output URL whose signature has expired answers: the task has fresh ones (contract §2.3). */
const EXPIRED_URL_STATUSES: readonly number[] = [401, 403, 404, 410];

/**
 * GETs the output with node:http(s): its answer reads from the socket only as fast as the body
 * is read, where fetch's body reads ahead. An abort of `signal` destroys the request and the
 * answer with the signal's reason, so a timeout mid-body fails the body with a TimeoutError.
 */
function requestOutput(url: URL, signal: AbortSignal): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const transport = url.protocol === 'https:' ? https : http;
    // The Accept fetch sent; identity, so that Content-Length counts the very bytes that are stored.
    const request = transport.get(url, { headers: { accept: '*/*', 'accept-encoding': 'identity' } });
    let answer: http.IncomingMessage | undefined;
    const abort = (): void => {
      const reason: unknown = signal.reason;
      const failure = reason instanceof Error ? reason : new Error('the output download was aborted', { cause: reason });
      request.destroy(failure);
      answer?.destroy(failure);
    };
    // Kept after the answer: a socket error then fails the answer too, where the caller sees it.
    request.on('error', reject);
    request.on('close', () => reject(new Error('the output request closed without an answer')));
    request.on('response', (response) => {
      answer = response;
      resolve(response);
    });
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
  });
}

/**
 * The body as fetch yielded it: decoded when the server compressed it in spite of the identity
 * asked for (gzip, deflate, br, with fetch's lenient flushing), left as it came for a coding
 * fetch does not decode either. Destroying the body destroys the answer.
 */
function decodedBody(response: http.IncomingMessage): Readable {
  const codings = (response.headers['content-encoding'] ?? '').toLowerCase().split(',').map((coding) => coding.trim()).filter((coding) => coding !== '' && coding !== 'identity');
  const decoders: Transform[] = [];
  // Codings are listed in the order they were applied: undone from the last.
  for (const coding of codings.reverse()) {
    if (coding === 'gzip' || coding === 'x-gzip') decoders.push(zlib.createGunzip({ flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH }));
    else if (coding === 'deflate') decoders.push(zlib.createInflate({ flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH }));
    else if (coding === 'br') decoders.push(zlib.createBrotliDecompress({ flush: zlib.constants.BROTLI_OPERATION_FLUSH, finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH }));
    else return response;
  }
  const last = decoders.at(-1);
  if (last === undefined) return response;
  // The pipeline destroys every stream when one fails or the last is destroyed; the last reports it.
  pipelineStreams([response, ...decoders], () => undefined);
  return last;
}

/**
 * Reads the first `count` bytes of `body` (fewer when it ends before) and puts every chunk read
 * back at its front, unchanged and uncopied: the body then yields every byte, and nothing sits
 * between it and whoever streams it on.
 */
function peekHead(body: Readable, count: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (): void => {
      body.off('readable', onReadable);
      body.off('end', onEnd);
      body.off('error', reject);
      body.off('close', onClose);
    };
    const finish = (): void => {
      settle();
      const head = Buffer.concat(chunks, Math.min(size, count));
      // Put back in the same tick as the last read, before the stream can emit 'end'.
      for (const chunk of chunks.reverse()) body.unshift(chunk);
      resolve(head);
    };
    function onReadable(): void {
      for (let chunk: unknown = body.read(); chunk !== null; chunk = body.read()) {
        const buffer = chunk as Buffer;
        chunks.push(buffer);
        size += buffer.length;
        if (size >= count) {
          finish();
          return;
        }
      }
    }
    const onEnd = (): void => {
      settle();
      resolve(Buffer.concat(chunks));
    };
    const onClose = (): void => {
      settle();
      reject(new Error('the output closed before its first bytes'));
    };
    body.on('readable', onReadable);
    body.once('end', onEnd);
    body.once('error', reject);
    body.once('close', onClose);
  });
}

/**
 * Opens the Runway output and checks that it is a video before anyone streams it anywhere:
 * a video (or generic binary) Content-Type and bytes that open like an MP4. A 401/403/404/410
 * means the signed URL expired (code `expired`); anything that is not a video is refused
 * with code `not-video`. Either way the caller can get the task again for a fresh URL.
 *
 * The body is the answer stream itself (decoded if need be): it reads from the socket as fast
 * as the caller reads it, and no faster, so a 1 GB output costs no more memory than a small one.
 */
export async function openOutput(rawUrl: string, timeoutMs: number, signal: AbortSignal): Promise<OpenedOutput> {
  const url = assertAllowedUrl(rawUrl, 'output');
  // The timeout covers the body too; it ends once the body has closed.
  const deadline = deadlineSignal(timeoutMs, signal);
  let response: http.IncomingMessage;
  try {
    response = await requestOutput(url, deadline.signal);
  } catch (error) {
    deadline.clear();
    throw downloadFailure('output', timeoutMs, error);
  }
  const status = response.statusCode ?? 0;
  if (REDIRECT_STATUSES.has(status)) {
    response.destroy();
    deadline.clear();
    throw downloadFailure('output', timeoutMs, new Error(`unexpected redirect (${status})`));
  }
  if (status < 200 || status > 299 || NO_BODY_STATUSES.has(status)) {
    // Its body is not worth reading (an error page can be large): the connection goes with it.
    response.destroy();
    deadline.clear();
    const expired = EXPIRED_URL_STATUSES.includes(status);
    throw new UpstreamError('output', `output: download answered ${status}`, {
      status,
      retryable: !expired,
      code: expired ? 'expired' : undefined,
    });
  }
  const declared = Number(response.headers['content-length'] ?? NaN);
  const encoded = (response.headers['content-encoding'] ?? 'identity').trim().toLowerCase() !== 'identity';
  const length = Number.isFinite(declared) && !encoded ? declared : undefined;
  const mediaType = mediaTypeOf(response.headers['content-type']);
  const body = decodedBody(response);
  body.once('close', () => deadline.clear());
  // Between this return and the caller's pipe, an error (a reset, the timeout) would be an
  // unhandled 'error' event, which ends the process. The body stays errored: a pipe sees it.
  body.on('error', () => undefined);
  let head: Buffer;
  try {
    head = await peekHead(body, VIDEO_SNIFF_BYTES);
  } catch (error) {
    body.destroy();
    throw new UpstreamError('output', 'output: download was cut off before its first bytes', { retryable: true, cause: error });
  }
  if (!isVideoOutput(mediaType, head)) {
    body.destroy();
    throw new UpstreamError('output', notVideoMessage(mediaType, Number.isFinite(declared) ? declared : undefined), {
      status,
      retryable: false,
      code: NOT_VIDEO,
    });
  }
  return { body, length };
}

/** The output URL answered with something that is not a video (an HTML page from a CDN). */
export const NOT_VIDEO = 'not-video';

/** Bytes of storage's answer worth keeping: its JSON verdict is far smaller. */
const MAX_ANSWER_BYTES = 64 * 1024;

interface StorageAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * Storage's answer to one upload request. Once an answer has begun, only the answer itself
 * decides: a request error after it (storage closing the connection under a sender still
 * writing) must not hide it. An answer cut off part-way counts as none.
 */
function watchAnswer(request: http.ClientRequest): { readonly begun: () => boolean; readonly answer: Promise<StorageAnswer | undefined> } {
  let begun = false;
  const answer = new Promise<StorageAnswer | undefined>((resolve) => {
    request.on('response', (response) => {
      begun = true;
      const chunks: Buffer[] = [];
      let kept = 0;
      response.on('data', (chunk: Buffer) => {
        if (kept >= MAX_ANSWER_BYTES) return;
        chunks.push(chunk);
        kept += chunk.length;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', () => resolve(undefined));
      response.on('close', () => resolve(undefined));
    });
    const noAnswer = (): void => {
      if (!begun) resolve(undefined);
    };
    request.on('error', noAnswer);
    request.on('close', noAnswer);
  });
  return { begun: () => begun, answer };
}

/**
 * Calls back after one whole turn of the event loop, its poll phase included, whatever phase
 * it was called in: an answer that had reached the socket when the loop went round has been
 * read by then. (From the poll phase, a single setImmediate would run before the next poll.)
 */
function afterPendingReads(callback: () => void): void {
  setImmediate(() => setImmediate(callback));
}

/**
 * Bytes sent per wait for storage's answer. Under one socket read (64 KB), so an upload holds
 * a read or two while it waits: bytes still held when V8 collects its young buffers (it does
 * every 32 MB of new ones) outlive that collection and wait for a full one. Ten uploads
 * at once grew RSS by 66-96 MB with 1 MB batches and by 45-67 MB with these; throughput did
 * not measurably change (tools/bench/upload.ts, single runs on a 2-core machine).
 */
const UPLOAD_BATCH_BYTES = 16 * 1024;

function lengthMismatch(bytes: number, expected: number): UpstreamError {
  return new UpstreamError('output', `output: got ${bytes} of ${expected} bytes`, { retryable: true });
}

/**
 * The body's way from the source to the upload request. It sends in batches, each only once
 * storage's answers so far have been read (`afterPendingReads`), and nothing more once
 * storage has answered. It reads on while a batch waits, up to two batches, so the download
 * keeps flowing. It breaks the upload off when the source yields more or fewer bytes than
 * `expected`; the bytes that complete `expected` wait for the source's end, so storage never
 * receives a whole body from a source that then turns out to be longer.
 */
function sendGate(expected: number | undefined, answered: () => boolean): { gate: Transform; sentBytes: () => number } {
  let received = 0;
  let sent = 0;
  const batch: Buffer[] = [];
  let batchBytes = 0;
  let releasing = false;
  let resumeSource: TransformCallback | undefined;
  const release = (stream: Transform, then?: TransformCallback): void => {
    releasing = true;
    afterPendingReads(() => {
      // Storage has answered: hold the rest back for good (the answer decides, the socket is closing).
      if (answered()) return;
      releasing = false;
      for (const chunk of batch.splice(0)) stream.push(chunk);
      sent += batchBytes;
      batchBytes = 0;
      const waiting = resumeSource;
      resumeSource = undefined;
      waiting?.();
      then?.();
    });
  };
  const gate = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      if (expected !== undefined && received > expected) {
        done(lengthMismatch(received, expected));
        return;
      }
      batch.push(chunk);
      batchBytes += chunk.length;
      if (!releasing && batchBytes >= UPLOAD_BATCH_BYTES && received !== expected) release(this);
      if (releasing && batchBytes >= 2 * UPLOAD_BATCH_BYTES) resumeSource = done;
      else done();
    },
    flush(done) {
      if (expected !== undefined && received !== expected) {
        done(lengthMismatch(received, expected));
        return;
      }
      // With a release under way, the last batch goes once it has.
      if (releasing) resumeSource = () => release(this, done);
      else release(this, done);
    },
  });
  return { gate, sentBytes: () => sent };
}

/**
 * Streams `source` into a Supabase signed upload URL with PUT. Memory stays flat: the
 * pipeline only reads from the download as fast as the upload socket drains.
 *
 * Storage may refuse before reading the body (an expired token, a duplicate, a declared size
 * over the limit) and close the connection under us (contract §6); its answer is the truth
 * about the upload. A write into a connection storage has reset fails at once, and Node then
 * drops the socket with the answer unread: `sendGate` makes sure storage's answers so far are
 * read before each batch goes out.
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
  const expected = options.contentLength;
  const headers: Record<string, string | number> = { 'content-type': 'video/mp4' };
  if (expected !== undefined) headers['content-length'] = expected;
  const deadline = deadlineSignal(options.timeoutMs, options.signal);
  const { signal } = deadline;

  const request = transport.request(target, { method: 'PUT', headers, signal });
  const storage = watchAnswer(request);
  const { gate, sentBytes } = sendGate(expected, storage.begun);
  const sent = pipeline(source, gate, request).then(
    () => ({ kind: 'sent' as const, failure: undefined }),
    (failure: unknown) => ({ kind: 'sent' as const, failure }),
  );
  const failureOf = (failure: unknown): UpstreamError => (failure instanceof UpstreamError ? failure : cutOff(signal, sentBytes(), failure));

  try {
    const first = await Promise.race([sent, storage.answer.then((answer) => ({ kind: 'answer' as const, answer }))]);
    if (first.kind === 'answer') {
      // A refusal (early or not) or a success: storage's answer is the truth about the upload.
      if (first.answer) return { ...first.answer, bytes: sentBytes() };
      // No answer: the connection went. Say why, from the stream's side if it broke first.
      const settled = await Promise.race([sent, delay(EARLY_ANSWER_GRACE_MS)]);
      throw failureOf(settled?.failure);
    }
    if (first.failure === undefined) {
      const answer = await storage.answer;
      if (answer) return { ...answer, bytes: sentBytes() };
      throw cutOff(signal, sentBytes(), undefined);
    }
    // The stream broke first: storage may have refused early, and then its answer wins.
    const early = await Promise.race([storage.answer, delay(EARLY_ANSWER_GRACE_MS)]);
    if (early && early.status >= 400) return { ...early, bytes: sentBytes() };
    throw failureOf(first.failure);
  } finally {
    deadline.clear();
    source.destroy();
    request.destroy();
  }
}

function cutOff(signal: AbortSignal, bytes: number, cause: unknown): UpstreamError {
  return new UpstreamError('storage', `storage: upload ${signal.aborted ? 'timed out' : 'was cut off'} after ${humanSize(bytes)}`, {
    retryable: true,
    cause,
  });
}

const delay = (ms: number): Promise<undefined> => new Promise((resolve) => setTimeout(() => resolve(undefined), ms));
