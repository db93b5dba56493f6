import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { chance } from './random.js';
import { flatHeaders, sendJson } from './http-util.js';
import type { RecordedRequest } from './http-util.js';

/** The two buckets the app uses (contract §1.2). */
export const STORAGE_BUCKETS = ['group-photos', 'generated-videos'] as const;
export type StorageBucket = (typeof STORAGE_BUCKETS)[number];

export interface StorageFaults {
  /** Destroy the connection part-way through an upload body; nothing is stored. */
  readonly resetRate?: number;
  /** Answer a signed GET or upload with the Supabase "exp claim" InvalidJWT 400. */
  readonly expiredTokenRate?: number;
  /** Store the upload completely, then destroy the connection without any answer. */
  readonly lostAnswerRate?: number;
}

export interface SandboxStorageOptions {
  readonly dataDir: string;
  /** Base URL this service is reached at, e.g. `http://127.0.0.1:4000/storage/v1`. */
  readonly publicBaseUrl: () => string;
  readonly rng: () => number;
  readonly faults?: StorageFaults;
  readonly record?: (request: RecordedRequest) => void;
  /** Lifetime of signed upload tokens: 2 h on hosted Supabase (contract §1.2). */
  readonly uploadTokenTtlSeconds?: number;
  /** Free-plan file size limit (contract §6). */
  readonly maxUploadBytes?: number;
  /** Keep only size and sha256 of uploaded videos (benchmarks, large test bodies). */
  readonly discardVideoBytes?: boolean;
  readonly signingSecret?: string;
  /**
   * Read the whole body before answering a refused upload, and keep the connection open.
   * Off by default: Supabase answers at once and closes the connection under the sender.
   */
  readonly gentleRefusal?: boolean;
}

export interface StoredObject {
  readonly bucket: StorageBucket;
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  readonly contentType: string;
  /** Upload attempts (PUT/POST to a signed upload URL) seen for this path, failed ones included. */
  readonly uploads: number;
  /** False when the bytes were discarded after hashing (`discardVideoBytes`). */
  readonly hasBytes: boolean;
  readonly storedAt: number;
}

export interface SandboxStorage {
  handle(req: IncomingMessage, res: ServerResponse, subpath: string): Promise<void>;
  signDownload(bucket: StorageBucket, path: string, ttlSeconds: number): string;
  signUpload(bucket: StorageBucket, path: string, ttlSeconds?: number): string;
  has(bucket: StorageBucket, path: string): boolean;
  object(bucket: StorageBucket, path: string): StoredObject | undefined;
  objects(): readonly StoredObject[];
  putObject(bucket: StorageBucket, path: string, bytes: Uint8Array, contentType?: string): Promise<StoredObject>;
  /** Upload attempts seen for a path, whether or not one succeeded. */
  uploadAttempts(bucket: StorageBucket, path: string): number;
  /** Where an object's bytes live on disk (absent when discarded or never stored). */
  filePath(bucket: StorageBucket, path: string): string | undefined;
}

export const DEFAULT_UPLOAD_TOKEN_TTL_SECONDS = 7200;
export const DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024;
const DEFAULT_SIGNING_SECRET = 'sandbox-storage-jwt-secret';

const CONTENT_TYPES_BY_EXTENSION: Readonly<Record<string, string>> = {
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  mp4: 'video/mp4',
  mov: 'video/quicktime',
  webm: 'video/webm',
  json: 'application/json',
  txt: 'text/plain',
};

export function contentTypeForPath(path: string): string {
  const dot = path.lastIndexOf('.');
  const extension = dot === -1 ? '' : path.slice(dot + 1).toLowerCase();
  return CONTENT_TYPES_BY_EXTENSION[extension] ?? 'application/octet-stream';
}

/** Supabase Storage answers errors as HTTP 400 with the real code in the body (contract §6). */
interface StorageError {
  readonly httpStatus: number;
  readonly body: { readonly statusCode: string; readonly error: string; readonly message: string };
}

function storageError(statusCode: string, error: string, message: string, httpStatus = 400): StorageError {
  return { httpStatus, body: { statusCode, error, message } };
}

const EXPIRED_TOKEN = storageError('400', 'InvalidJWT', '"exp" claim timestamp check failed');
const DUPLICATE = storageError('409', 'Duplicate', 'The resource already exists');
const NOT_FOUND = storageError('404', 'not_found', 'Object not found');

function tooLarge(): StorageError {
  return storageError('413', 'Payload too large', 'The object exceeded the maximum allowed size');
}

class ConnectionResetFault extends Error {}

function isBucket(value: string): value is StorageBucket {
  return (STORAGE_BUCKETS as readonly string[]).includes(value);
}

function base64UrlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function objectKey(bucket: StorageBucket, path: string): string {
  return `${bucket}/${path}`;
}

function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** Keys are relative paths without empty, `.` or `..` segments (Supabase rejects them too). */
function isValidKey(path: string): boolean {
  if (path === '' || path.includes('\0') || path.includes('\\')) return false;
  return path.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

interface TokenClaims {
  readonly url: string;
  readonly exp: number;
  readonly upsert?: boolean;
}

function parseClaims(json: unknown): TokenClaims | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const url: unknown = Reflect.get(json, 'url');
  const exp: unknown = Reflect.get(json, 'exp');
  const upsert: unknown = Reflect.get(json, 'upsert');
  if (typeof url !== 'string' || typeof exp !== 'number') return undefined;
  return typeof upsert === 'boolean' ? { url, exp, upsert } : { url, exp };
}

interface ParsedTarget {
  readonly kind: 'download' | 'upload';
  readonly bucket: string;
  readonly path: string;
  readonly token: string | null;
}

function parseTarget(subpath: string): ParsedTarget | undefined {
  const url = new URL(subpath, 'http://sandbox.invalid');
  const match = /^\/object\/(upload\/sign|sign)\/([^/]+)\/(.+)$/.exec(url.pathname);
  if (!match) return undefined;
  const [, route, bucket, rawPath] = match;
  if (route === undefined || bucket === undefined || rawPath === undefined) return undefined;
  let path: string;
  try {
    path = rawPath.split('/').map(decodeURIComponent).join('/');
  } catch {
    return undefined;
  }
  return { kind: route === 'sign' ? 'download' : 'upload', bucket, path, token: url.searchParams.get('token') };
}

interface ObjectRecord {
  bucket: StorageBucket;
  path: string;
  size: number;
  sha256: string;
  contentType: string;
  hasBytes: boolean;
  storedAt: number;
}

interface ByteCounter {
  bytes: number;
}

interface Meter extends Transform {
  readonly size: () => number;
  readonly sha256: () => string;
  readonly overLimit: () => boolean;
}

/**
 * Hashes and counts bytes on their way to disk. Past the size limit it either stops there
 * and calls `onOverLimit` (Supabase stops reading at the limit), or, without it, keeps
 * reading without passing bytes on so a gentle server can answer 413 after the whole body.
 */
function createMeter(
  maxBytes: number,
  received: ByteCounter,
  hooks: { readonly onOverLimit?: (() => void) | undefined; readonly onFirstBytes?: (() => void) | undefined },
): Meter {
  const hash = createHash('sha256');
  let size = 0;
  let onFirstBytes = hooks.onFirstBytes;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      received.bytes += chunk.length;
      if (size > maxBytes) {
        // Holding the callback stops the flow: nothing more is read from the client.
        if (hooks.onOverLimit) hooks.onOverLimit();
        else callback();
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
      if (onFirstBytes) {
        const trigger = onFirstBytes;
        onFirstBytes = undefined;
        trigger();
      }
    },
  });
  return Object.assign(meter, {
    size: () => size,
    sha256: () => hash.digest('hex'),
    overLimit: () => size > maxBytes,
  });
}

function discardSink(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}

/** Reads and throws away the rest of a request body so the client sees the answer, not a reset. */
async function drain(req: IncomingMessage, received: ByteCounter): Promise<void> {
  try {
    for await (const chunk of req) received.bytes += (chunk as Buffer).length;
  } catch {
    // The client went away; there is nobody left to answer.
  }
}

/**
 * Supabase Storage's signed URLs as the worker sees them (contract §1.2 and §6): signed
 * GET for photos, signed upload with upsert off for videos, errors as HTTP 400 with the
 * real status code in the JSON body. An upload it refuses (token, existing object, size) is
 * answered before its body is read, and the connection closed under the sender, unless
 * `gentleRefusal` is set.
 */
export function createSandboxStorage(options: SandboxStorageOptions): SandboxStorage {
  const root = join(options.dataDir, 'storage');
  const tmpDir = join(root, '.incoming');
  const secret = options.signingSecret ?? DEFAULT_SIGNING_SECRET;
  const uploadTtlSeconds = options.uploadTokenTtlSeconds ?? DEFAULT_UPLOAD_TOKEN_TTL_SECONDS;
  const maxUploadBytes = options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES;
  const faults = options.faults ?? {};
  const gentle = options.gentleRefusal === true;
  const objects = new Map<string, ObjectRecord>();
  const attempts = new Map<string, number>();
  // Keys whose upload finished streaming and is being moved into place; a racing upload
  // of the same key must lose as a duplicate, exactly as with upsert off.
  const committing = new Set<string>();

  // The in-memory index is the truth; leftovers from an earlier run would only mislead.
  rmSync(root, { recursive: true, force: true });
  mkdirSync(tmpDir, { recursive: true });

  const fileFor = (bucket: StorageBucket, path: string): string => join(root, bucket, ...path.split('/'));

  function sign(claims: Record<string, unknown>): string {
    const header = base64UrlJson({ alg: 'HS256', typ: 'JWT' });
    const payload = base64UrlJson(claims);
    const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
    return `${header}.${payload}.${signature}`;
  }

  function verify(token: string | null, expectedUrl: string, kind: ParsedTarget['kind']): StorageError | undefined {
    if (token === null || token === '') {
      return storageError('400', 'Error', "querystring must have required property 'token'");
    }
    const parts = token.split('.');
    const [header, payload, signature] = parts;
    if (parts.length !== 3 || header === undefined || payload === undefined || signature === undefined) {
      return storageError('400', 'InvalidJWT', 'jwt malformed');
    }
    const expected = createHmac('sha256', secret).update(`${header}.${payload}`).digest();
    const given = Buffer.from(signature, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return storageError('400', 'InvalidJWT', 'invalid signature');
    }
    let claims: TokenClaims | undefined;
    try {
      claims = parseClaims(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
    } catch {
      claims = undefined;
    }
    if (!claims) return storageError('400', 'InvalidJWT', 'jwt malformed');
    if (claims.exp <= Math.floor(Date.now() / 1000)) return EXPIRED_TOKEN;
    // Upload tokens carry `upsert`; a download token cannot be used to write, nor the reverse.
    if ((kind === 'upload') !== (claims.upsert !== undefined) || claims.url !== expectedUrl) {
      return storageError('400', 'InvalidSignature', 'The url do not match the signature');
    }
    return undefined;
  }

  function snapshot(record: ObjectRecord): StoredObject {
    return {
      bucket: record.bucket,
      path: record.path,
      size: record.size,
      sha256: record.sha256,
      contentType: record.contentType,
      uploads: attempts.get(objectKey(record.bucket, record.path)) ?? 0,
      hasBytes: record.hasBytes,
      storedAt: record.storedAt,
    };
  }

  function signDownload(bucket: StorageBucket, path: string, ttlSeconds: number): string {
    const iat = Math.floor(Date.now() / 1000);
    const token = sign({ url: objectKey(bucket, path), iat, exp: iat + ttlSeconds });
    return `${options.publicBaseUrl()}/object/sign/${bucket}/${encodePath(path)}?token=${token}`;
  }

  function signUpload(bucket: StorageBucket, path: string, ttlSeconds = uploadTtlSeconds): string {
    const iat = Math.floor(Date.now() / 1000);
    const token = sign({ owner: 'sandbox-app', url: objectKey(bucket, path), upsert: false, iat, exp: iat + ttlSeconds });
    return `${options.publicBaseUrl()}/object/upload/sign/${bucket}/${encodePath(path)}?token=${token}`;
  }

  async function serveDownload(req: IncomingMessage, res: ServerResponse, bucket: StorageBucket, path: string): Promise<void> {
    const record = objects.get(objectKey(bucket, path));
    if (!record) {
      sendJson(res, NOT_FOUND.httpStatus, NOT_FOUND.body);
      return;
    }
    if (!record.hasBytes) {
      sendJson(res, 400, { statusCode: '404', error: 'not_found', message: 'Object bytes were discarded by the sandbox' });
      return;
    }
    res.writeHead(200, {
      'content-type': record.contentType,
      'content-length': String(record.size),
      'cache-control': 'max-age=3600',
      etag: `"${record.sha256.slice(0, 32)}"`,
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    await pipeline(createReadStream(fileFor(bucket, path)), res);
  }

  /** How a signed upload ended, once its body was read (or given up on). */
  type UploadResult =
    | { readonly kind: 'stored' }
    /** Refused after reading part of the body (`bodyLeft`) or all of it. */
    | { readonly kind: 'refused'; readonly error: StorageError; readonly bodyLeft: boolean }
    /** The connection went (client gone, or the reset fault): nobody to answer. */
    | { readonly kind: 'reset' }
    /** Stored, but the answer is to be lost (fault). */
    | { readonly kind: 'stored-answer-lost' };

  const isTaken = (key: string): boolean => objects.has(key) || committing.has(key);

  /** What Supabase checks before it reads a byte of an upload body: the object and the declared size. */
  function refusalBeforeBody(req: IncomingMessage, bucket: StorageBucket, path: string): StorageError | undefined {
    if (isTaken(objectKey(bucket, path))) return DUPLICATE;
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxUploadBytes) return tooLarge();
    return undefined;
  }

  async function receiveUpload(
    req: IncomingMessage,
    bucket: StorageBucket,
    path: string,
    received: ByteCounter,
  ): Promise<UploadResult> {
    const key = objectKey(bucket, path);
    const declared = Number(req.headers['content-length']);
    const resetPartWay = chance(options.rng, faults.resetRate);
    if (resetPartWay && declared === 0) return { kind: 'reset' };
    let stopAtLimit: () => void = () => undefined;
    const atLimit = new Promise<'at-limit'>((resolve) => {
      stopAtLimit = () => resolve('at-limit');
    });
    const meter = createMeter(maxUploadBytes, received, {
      onOverLimit: gentle ? undefined : stopAtLimit,
      onFirstBytes: resetPartWay ? () => meter.destroy(new ConnectionResetFault('sandbox fault: connection reset')) : undefined,
    });
    const keepBytes = !(bucket === 'generated-videos' && options.discardVideoBytes === true);
    const tmpFile = join(tmpDir, randomUUID());
    const sink = keepBytes ? createWriteStream(tmpFile) : discardSink();
    const discardTmp = async (): Promise<void> => {
      if (keepBytes) await rm(tmpFile, { force: true });
    };
    const streamed = pipeline(req, meter, sink).then(
      () => 'complete' as const,
      () => 'broken' as const,
    );
    const ending = await Promise.race([streamed, atLimit]);
    if (ending === 'at-limit') {
      // The rest of the body is still on its way: the caller answers and closes, which
      // breaks the pipeline; the partial file goes once it has.
      void streamed.then(discardTmp);
      return { kind: 'refused', error: tooLarge(), bodyLeft: true };
    }
    if (ending === 'broken') {
      // The client went away part-way (or the reset fault fired): nothing is stored.
      await discardTmp();
      return { kind: 'reset' };
    }
    if (resetPartWay || meter.overLimit()) {
      await discardTmp();
      // An empty chunked body never reached the meter: the reset fault still fires.
      return resetPartWay ? { kind: 'reset' } : { kind: 'refused', error: tooLarge(), bodyLeft: false };
    }
    if (isTaken(key)) {
      await discardTmp();
      return { kind: 'refused', error: DUPLICATE, bodyLeft: false };
    }
    committing.add(key);
    try {
      if (keepBytes) {
        const target = fileFor(bucket, path);
        await mkdir(dirname(target), { recursive: true });
        await rename(tmpFile, target);
      }
      const contentType = req.headers['content-type'] ?? 'application/octet-stream';
      objects.set(key, { bucket, path, size: meter.size(), sha256: meter.sha256(), contentType, hasBytes: keepBytes, storedAt: Date.now() });
    } finally {
      committing.delete(key);
    }
    return chance(options.rng, faults.lostAnswerRate) ? { kind: 'stored-answer-lost' } : { kind: 'stored' };
  }

  async function handle(req: IncomingMessage, res: ServerResponse, subpath: string): Promise<void> {
    const at = Date.now();
    const received: ByteCounter = { bytes: 0 };
    try {
      await route(req, res, subpath, received);
    } finally {
      options.record?.({
        service: 'storage',
        method: req.method ?? '',
        path: subpath,
        headers: flatHeaders(req),
        json: undefined,
        bytes: received.bytes,
        at,
      });
    }
  }

  async function answerAfterDrain(
    req: IncomingMessage,
    res: ServerResponse,
    received: ByteCounter,
    error: StorageError,
  ): Promise<void> {
    await drain(req, received);
    if (!res.destroyed) sendJson(res, error.httpStatus, error.body);
  }

  /**
   * Refuses an upload whose body is still coming. Supabase answers at once and the
   * connection is closed under the sender (contract §6): a client still writing reads the
   * answer, then a reset or EPIPE. The gentle mode reads the rest first and keeps the
   * connection.
   */
  async function refuseUpload(req: IncomingMessage, res: ServerResponse, received: ByteCounter, error: StorageError): Promise<void> {
    if (gentle) {
      await answerAfterDrain(req, res, received, error);
      return;
    }
    // Captured now: once the body stream is destroyed the request no longer points at its socket.
    const socket = req.socket;
    if (res.destroyed) return;
    await new Promise<void>((resolve) => {
      const text = JSON.stringify(error.body);
      res.writeHead(error.httpStatus, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        connection: 'close',
      });
      // The answer is in the kernel's hands once `end` calls back; then the unread body
      // makes the close a reset, as it does in front of Supabase.
      res.end(text, () => {
        socket.destroy();
        // A body still being piped somewhere would otherwise wait for bytes that never come.
        req.destroy();
        resolve();
      });
      res.once('close', resolve);
    });
  }

  async function route(req: IncomingMessage, res: ServerResponse, subpath: string, received: ByteCounter): Promise<void> {
    const method = req.method ?? '';
    // Captured now: once the body stream is destroyed the request no longer points at its socket.
    const socket = req.socket;
    const target = parseTarget(subpath);
    if (!target) {
      await answerAfterDrain(req, res, received, storageError('404', 'not_found', 'Route not found', 404));
      return;
    }
    const allowed = target.kind === 'download' ? ['GET', 'HEAD'] : ['PUT', 'POST'];
    if (!allowed.includes(method)) {
      await answerAfterDrain(req, res, received, storageError('405', 'Method Not Allowed', `Route ${method}:${subpath.split('?')[0] ?? ''} not found`, 404));
      return;
    }
    const { bucket, path } = target;
    const refuse = target.kind === 'upload' ? refuseUpload : answerAfterDrain;
    if (target.kind === 'upload' && isBucket(bucket) && isValidKey(path)) {
      const key = objectKey(bucket, path);
      attempts.set(key, (attempts.get(key) ?? 0) + 1);
    }
    if (!isBucket(bucket)) {
      await refuse(req, res, received, storageError('404', 'Bucket not found', 'Bucket not found'));
      return;
    }
    if (!isValidKey(path)) {
      await refuse(req, res, received, storageError('400', 'InvalidKey', `Invalid key: ${path}`));
      return;
    }
    const tokenError = chance(options.rng, faults.expiredTokenRate)
      ? EXPIRED_TOKEN
      : verify(target.token, objectKey(bucket, path), target.kind);
    if (tokenError) {
      await refuse(req, res, received, tokenError);
      return;
    }
    if (target.kind === 'download') {
      await serveDownload(req, res, bucket, path);
      return;
    }
    const early = refusalBeforeBody(req, bucket, path);
    if (early) {
      await refuse(req, res, received, early);
      return;
    }
    const result = await receiveUpload(req, bucket, path, received);
    switch (result.kind) {
      case 'reset':
      case 'stored-answer-lost':
        socket.destroy();
        res.destroy();
        return;
      case 'refused':
        if (result.bodyLeft) await refuseUpload(req, res, received, result.error);
        else if (!res.destroyed) sendJson(res, result.error.httpStatus, result.error.body);
        return;
      case 'stored':
        sendJson(res, 200, { Key: objectKey(bucket, path) });
        return;
    }
  }

  async function putObject(bucket: StorageBucket, path: string, bytes: Uint8Array, contentType?: string): Promise<StoredObject> {
    if (!isValidKey(path)) throw new Error(`invalid storage key: ${path}`);
    const key = objectKey(bucket, path);
    const target = fileFor(bucket, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, bytes);
    const record: ObjectRecord = {
      bucket,
      path,
      size: bytes.byteLength,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      contentType: contentType ?? contentTypeForPath(path),
      hasBytes: true,
      storedAt: Date.now(),
    };
    objects.set(key, record);
    return snapshot(record);
  }

  return {
    handle,
    signDownload,
    signUpload,
    has: (bucket, path) => objects.has(objectKey(bucket, path)),
    object(bucket, path) {
      const record = objects.get(objectKey(bucket, path));
      return record ? snapshot(record) : undefined;
    },
    objects: () => [...objects.values()].map(snapshot),
    putObject,
    uploadAttempts: (bucket, path) => attempts.get(objectKey(bucket, path)) ?? 0,
    filePath(bucket, path) {
      const record = objects.get(objectKey(bucket, path));
      return record?.hasBytes ? fileFor(bucket, path) : undefined;
    },
  };
}
