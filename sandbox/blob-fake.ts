import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getGlobalDispatcher, setGlobalDispatcher, type Dispatcher } from 'undici';

/**
 * A loopback stand-in for Vercel Blob that the real `@vercel/blob` client talks to.
 *
 * The SDK (2.8.0) sends two kinds of traffic:
 * - control-plane calls to `VERCEL_BLOB_API_URL` (default `https://vercel.com/api/blob`),
 *   each with `authorization: Bearer <token>`, `x-api-version`, `x-vercel-blob-store-id`:
 *   put `PUT {api}/?pathname=` (options as `x-vercel-blob-access`, `x-add-random-suffix`,
 *   `x-allow-overwrite`, `x-content-type`, `x-if-match`, `x-cache-control-max-age`),
 *   copy `PUT {api}?pathname=&fromUrl=`, list `GET {api}?prefix=&cursor=&limit=&mode=`,
 *   head `GET {api}?url=`, del `POST {api}/delete` with `{ urls }` (and `x-if-match`).
 *   Errors are `{ error: { code, message } }`; the SDK maps `code` to its error classes
 *   and retries `unknown_error`, `service_unavailable` and `internal_server_error`.
 * - `get` fetches content straight from the store host
 *   `https://<storeId>.<access>.blob.vercel-storage.com/<pathname>` (`?cache=0` when
 *   `useCache: false`), the store id being the fourth `_` field of the token. That host
 *   is not configurable, so while a fake runs, undici's global dispatcher (shared by the
 *   SDK's undici and Node's fetch) sends requests for this fake's store host here, to
 *   `/store/<host>/<path>`. Everything else passes through untouched.
 */

export type BlobOperation = 'put' | 'copy' | 'list' | 'head' | 'del' | 'get' | 'unsupported';

/** put, copy and list are the operations Vercel meters as "advanced". */
export const ADVANCED_OPERATIONS: readonly BlobOperation[] = ['put', 'copy', 'list'];

export interface StoredBlob {
  readonly pathname: string;
  readonly body: Buffer;
  readonly contentType: string;
  readonly cacheControl: string;
  readonly etag: string;
  readonly uploadedAt: Date;
}

export interface FakeBlobRequest {
  readonly operation: BlobOperation;
  readonly method: string;
  /** Path and query as received (store reads appear under `/store/<host>/`). */
  readonly path: string;
  readonly status: number;
  /** For `get`: whether the read asked to bypass the CDN cache (`cache=0`). */
  readonly cacheBypassed: boolean;
}

export type BlobFault =
  /** Answer with this status and error code instead of serving the request. */
  | { readonly type: 'status'; readonly status: number; readonly code: string; readonly retryAfterSeconds?: number }
  /** Serve the request (the write happens), then drop the connection before answering. */
  | { readonly type: 'drop-response' }
  /** Wait this long before serving the request, as a slow or hung store would. */
  | { readonly type: 'delay'; readonly ms: number };

export interface BlobFakeOptions {
  /** Read-write token the fake accepts; a fresh `vercel_blob_rw_<random store>_…` by default. */
  readonly token?: string;
  /** Access mode of the store; puts with the other mode are refused. */
  readonly access?: 'private' | 'public';
}

export interface BlobFake {
  /** Set `VERCEL_BLOB_API_URL` to this. */
  readonly apiUrl: string;
  readonly token: string;
  readonly storeId: string;
  close(): Promise<void>;
  /** Requests received per operation, failed ones included. */
  counts(): Record<BlobOperation, number>;
  blobs(): ReadonlyMap<string, StoredBlob>;
  requests(): readonly FakeBlobRequest[];
  /** Stores a blob directly, bypassing the API (to plant corrupt data). */
  setBlob(pathname: string, body: string | Buffer, contentType?: string): void;
  /** The next request of this operation meets `fault` (queued, one per request). */
  failNext(operation: BlobOperation, fault: BlobFault): void;
}

const API_PATH = '/api/blob';
const STORE_PATH = '/store/';
const STORE_HOST_SUFFIX = '.blob.vercel-storage.com';
const LIST_LIMIT_MAX = 1000;
const DEFAULT_CACHE_MAX_AGE_SECONDS = 30 * 24 * 60 * 60;

export async function startBlobFake(options: BlobFakeOptions = {}): Promise<BlobFake> {
  const token = options.token ?? `vercel_blob_rw_fake${randomBytes(6).toString('hex')}_${randomBytes(12).toString('hex')}`;
  const storeId = token.split('_')[3] ?? '';
  if (storeId === '') throw new Error('token must look like vercel_blob_rw_<storeId>_<secret>');
  const access = options.access ?? 'private';
  const storeHost = `${storeId}.${access}${STORE_HOST_SUFFIX}`.toLowerCase();

  const store = new Map<string, StoredBlob>();
  const log: FakeBlobRequest[] = [];
  const faults = new Map<BlobOperation, BlobFault[]>();

  const blobUrl = (pathname: string): string =>
    `https://${storeHost}/${pathname.split('/').map(encodeURIComponent).join('/')}`;

  function describe(blob: StoredBlob) {
    const url = blobUrl(blob.pathname);
    return {
      url,
      downloadUrl: `${url}?download=1`,
      pathname: blob.pathname,
      size: blob.body.length,
      contentType: blob.contentType,
      contentDisposition: `attachment; filename="${encodeURIComponent(blob.pathname.split('/').pop() ?? '')}"`,
      cacheControl: blob.cacheControl,
      uploadedAt: blob.uploadedAt.toISOString(),
      etag: blob.etag,
    };
  }

  function putResult(blob: StoredBlob) {
    const { url, downloadUrl, pathname, contentType, contentDisposition, etag } = describe(blob);
    return { url, downloadUrl, pathname, contentType, contentDisposition, etag };
  }

  function storeBlob(pathname: string, body: Buffer, contentType: string, cacheMaxAge: string | undefined): StoredBlob {
    const maxAge = cacheMaxAge !== undefined && /^\d+$/.test(cacheMaxAge) ? cacheMaxAge : String(DEFAULT_CACHE_MAX_AGE_SECONDS);
    const blob: StoredBlob = {
      pathname,
      body,
      contentType,
      cacheControl: `public, max-age=${maxAge}`,
      etag: `"${createHash('md5').update(body).update(String(Date.now())).update(randomBytes(4)).digest('hex')}"`,
      uploadedAt: new Date(),
    };
    store.set(pathname, blob);
    return blob;
  }

  /** A pathname, or the pathname of one of this store's blob URLs. */
  function toPathname(urlOrPathname: string): string | undefined {
    if (!/^https?:\/\//.test(urlOrPathname)) return urlOrPathname;
    const url = new URL(urlOrPathname);
    if (url.hostname !== storeHost) return undefined;
    return decodePath(url.pathname.slice(1));
  }

  type Answer = { readonly status: number; readonly json?: unknown; readonly headers?: Record<string, string>; readonly body?: Buffer };

  const apiError = (status: number, code: string, message: string): Answer => ({
    status,
    json: { error: { code, message } },
  });

  /** Checks a put/copy destination and writes, with the API's create-if-absent rules. */
  function write(req: IncomingMessage, pathname: string, body: Buffer, fallbackType: string): Answer {
    if (header(req, 'x-vercel-blob-access') !== access) {
      return apiError(400, 'bad_request', `This store only accepts access: "${access}"`);
    }
    let target = pathname;
    if (header(req, 'x-add-random-suffix') === '1') {
      const dot = target.lastIndexOf('.');
      const suffix = `-${randomBytes(8).toString('base64url')}`;
      target = dot > target.lastIndexOf('/') ? `${target.slice(0, dot)}${suffix}${target.slice(dot)}` : `${target}${suffix}`;
    }
    const existing = store.get(target);
    const ifMatch = header(req, 'x-if-match');
    if (ifMatch !== undefined && existing?.etag !== ifMatch) {
      return apiError(412, 'precondition_failed', 'Precondition failed: ETag mismatch.');
    }
    if (existing !== undefined && header(req, 'x-allow-overwrite') !== '1') {
      return apiError(
        400,
        'bad_request',
        'This blob already exists, use `allowOverwrite: true` if you want to overwrite it. Or `addRandomSuffix: true` to generate a unique filename.',
      );
    }
    const blob = storeBlob(target, body, header(req, 'x-content-type') ?? fallbackType, header(req, 'x-cache-control-max-age'));
    return { status: 200, json: putResult(blob) };
  }

  function list(query: URLSearchParams): Answer {
    const limitText = query.get('limit');
    const limit = limitText === null ? LIST_LIMIT_MAX : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX) {
      return apiError(400, 'bad_request', `limit must be between 1 and ${LIST_LIMIT_MAX}`);
    }
    const prefix = query.get('prefix') ?? '';
    const cursorText = query.get('cursor');
    const after = cursorText === null ? undefined : Buffer.from(cursorText, 'base64url').toString('utf8');
    const folded = query.get('mode') === 'folded';

    const entries = new Map<string, StoredBlob | 'folder'>();
    for (const [pathname, blob] of store) {
      if (!pathname.startsWith(prefix)) continue;
      const slash = pathname.indexOf('/', prefix.length);
      if (folded && slash >= 0) entries.set(pathname.slice(0, slash + 1), 'folder');
      else entries.set(pathname, blob);
    }
    const keys = [...entries.keys()].sort().filter((key) => after === undefined || key > after);
    const page = keys.slice(0, limit);
    const hasMore = keys.length > page.length;
    const last = page.at(-1);
    const blobs: ReturnType<typeof describe>[] = [];
    const folders: string[] = [];
    for (const key of page) {
      const entry = entries.get(key);
      if (entry === 'folder') folders.push(key);
      else if (entry !== undefined) blobs.push(describe(entry));
    }
    return {
      status: 200,
      json: {
        blobs,
        ...(folded ? { folders } : {}),
        hasMore,
        ...(hasMore && last !== undefined ? { cursor: Buffer.from(last, 'utf8').toString('base64url') } : {}),
      },
    };
  }

  function serveApi(req: IncomingMessage, url: URL, body: Buffer, operation: BlobOperation): Answer {
    if (header(req, 'authorization') !== `Bearer ${token}`) {
      return apiError(403, 'forbidden', 'Access denied, please provide a valid token for this resource.');
    }
    const query = url.searchParams;
    switch (operation) {
      case 'put': {
        const pathname = query.get('pathname');
        if (!pathname) return apiError(400, 'bad_request', 'pathname is required');
        return write(req, pathname, body, 'application/octet-stream');
      }
      case 'copy': {
        const pathname = query.get('pathname');
        const from = toPathname(query.get('fromUrl') ?? '');
        const source = from === undefined ? undefined : store.get(from);
        if (!pathname) return apiError(400, 'bad_request', 'pathname is required');
        if (source === undefined) return apiError(404, 'not_found', 'The requested blob does not exist');
        return write(req, pathname, source.body, source.contentType);
      }
      case 'list':
        return list(query);
      case 'head': {
        const pathname = toPathname(query.get('url') ?? '');
        const blob = pathname === undefined ? undefined : store.get(pathname);
        if (blob === undefined) return apiError(404, 'not_found', 'The requested blob does not exist');
        return { status: 200, json: describe(blob) };
      }
      case 'del': {
        const parsed = parseJsonBody(body);
        const urls = isRecord(parsed) && Array.isArray(parsed.urls) ? parsed.urls.filter((u) => typeof u === 'string') : [];
        const ifMatch = header(req, 'x-if-match');
        const pathnames = urls.map(toPathname).filter((p): p is string => p !== undefined);
        if (ifMatch !== undefined && pathnames.some((p) => store.get(p)?.etag !== ifMatch)) {
          return apiError(412, 'precondition_failed', 'Precondition failed: ETag mismatch.');
        }
        for (const pathname of pathnames) store.delete(pathname);
        return { status: 200, json: {} };
      }
      default:
        return apiError(400, 'bad_request', `${req.method ?? ''} ${url.pathname} is not implemented by the Blob fake`);
    }
  }

  function serveStore(req: IncomingMessage, url: URL): Answer {
    const rest = url.pathname.slice(STORE_PATH.length);
    const slash = rest.indexOf('/');
    const host = slash < 0 ? rest : rest.slice(0, slash);
    if (host !== storeHost || req.method !== 'GET') return { status: 404, body: Buffer.from('Not Found') };
    if (access === 'private' && header(req, 'authorization') !== `Bearer ${token}`) {
      return { status: 403, body: Buffer.from('Forbidden') };
    }
    const pathname = decodePath(rest.slice(slash + 1));
    const blob = pathname === undefined ? undefined : store.get(pathname);
    if (blob === undefined) return { status: 404, body: Buffer.from('Not Found') };
    const headers = {
      'content-type': blob.contentType,
      etag: blob.etag,
      'last-modified': blob.uploadedAt.toUTCString(),
      'cache-control': access === 'private' ? 'private, no-cache' : blob.cacheControl,
      'content-disposition': describe(blob).contentDisposition,
    };
    if (header(req, 'if-none-match') === blob.etag) return { status: 304, headers };
    return { status: 200, headers, body: blob.body };
  }

  function operationOf(req: IncomingMessage, url: URL): BlobOperation {
    if (url.pathname.startsWith(STORE_PATH)) return 'get';
    if (url.pathname === API_PATH || url.pathname === `${API_PATH}/`) {
      if (req.method === 'PUT') return url.searchParams.has('fromUrl') ? 'copy' : 'put';
      if (req.method === 'GET') return url.searchParams.has('url') ? 'head' : 'list';
    }
    if (url.pathname === `${API_PATH}/delete` && req.method === 'POST') return 'del';
    return 'unsupported';
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const body = await readBody(req);
    const operation = operationOf(req, url);
    const fault = faults.get(operation)?.shift();
    if (fault?.type === 'delay') await new Promise((resolve) => setTimeout(resolve, fault.ms));
    let answer: Answer;
    if (fault?.type === 'status') {
      answer = {
        ...apiError(fault.status, fault.code, `injected ${fault.status}`),
        ...(fault.retryAfterSeconds === undefined ? {} : { headers: { 'retry-after': String(fault.retryAfterSeconds) } }),
      };
    } else {
      answer = operation === 'get' ? serveStore(req, url) : serveApi(req, url, body, operation);
    }
    log.push({
      operation,
      method: req.method ?? '',
      path: req.url ?? '',
      status: answer.status,
      cacheBypassed: url.searchParams.get('cache') === '0',
    });
    if (fault?.type === 'drop-response') {
      res.socket?.destroy();
      return;
    }
    const payload = answer.json === undefined ? answer.body : Buffer.from(JSON.stringify(answer.json));
    res.writeHead(answer.status, {
      ...(answer.json === undefined ? {} : { 'content-type': 'application/json' }),
      ...answer.headers,
      ...(payload === undefined ? {} : { 'content-length': String(payload.length) }),
    });
    res.end(payload);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'internal_server_error', message: String(error) } }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  const unroute = routeStoreHost(storeHost, origin);

  return {
    apiUrl: `${origin}${API_PATH}`,
    token,
    storeId,
    async close() {
      unroute();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    counts() {
      const counts: Record<BlobOperation, number> = { put: 0, copy: 0, list: 0, head: 0, del: 0, get: 0, unsupported: 0 };
      for (const request of log) counts[request.operation] += 1;
      return counts;
    },
    blobs: () => new Map(store),
    requests: () => [...log],
    setBlob(pathname, body, contentType = 'application/json') {
      storeBlob(pathname, typeof body === 'string' ? Buffer.from(body, 'utf8') : body, contentType, undefined);
    },
    failNext(operation, fault) {
      faults.set(operation, [...(faults.get(operation) ?? []), fault]);
    },
  };
}

// Store host → fake origin, for every fake running in this process.
const storeRoutes = new Map<string, string>();
let dispatcherBeforeRouting: Dispatcher | undefined;

const redirectStoreRequests: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (options, handler) => {
  const origin = options.origin === undefined ? undefined : new URL(options.origin);
  const target = origin === undefined ? undefined : storeRoutes.get(origin.hostname);
  if (origin === undefined || target === undefined) return dispatch(options, handler);
  return dispatch({ ...options, origin: target, path: `${STORE_PATH}${origin.hostname}${options.path}` }, handler);
};

/**
 * Sends this process's requests for a Blob store host to a fake at `origin` (which may run
 * in another process); answers the undo.
 */
export function routeStoreHost(host: string, origin: string): () => void {
  if (storeRoutes.has(host)) throw new Error(`${host} is already served by another Blob fake`);
  storeRoutes.set(host, origin);
  if (dispatcherBeforeRouting === undefined) {
    dispatcherBeforeRouting = getGlobalDispatcher();
    setGlobalDispatcher(dispatcherBeforeRouting.compose(redirectStoreRequests));
  }
  return () => {
    storeRoutes.delete(host);
    if (storeRoutes.size === 0 && dispatcherBeforeRouting !== undefined) {
      setGlobalDispatcher(dispatcherBeforeRouting);
      dispatcherBeforeRouting = undefined;
    }
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function decodePath(path: string): string | undefined {
  try {
    return path.split('/').map(decodeURIComponent).join('/');
  } catch {
    return undefined;
  }
}

function parseJsonBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
