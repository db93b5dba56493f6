import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSandboxApp } from './app-api.js';
import type { AppFaults, SandboxApp } from './app-api.js';
import { sendJson } from './http-util.js';
import type { RecordedRequest } from './http-util.js';
import { createRng } from './random.js';
import { createSandboxRunway } from './runway.js';
import type { ConcurrencyOption, SandboxRunway, SandboxRunwayFaults } from './runway.js';
import { createSandboxStorage } from './storage.js';
import type { SandboxStorage, StorageFaults } from './storage.js';

export interface SandboxFaults {
  readonly app?: AppFaults;
  readonly storage?: StorageFaults;
  readonly runway?: SandboxRunwayFaults;
}

export interface SandboxOptions {
  readonly workerApiKey: string;
  readonly runwayApiKey: string;
  /** Storage objects live under `<dataDir>/storage` (wiped at start). */
  readonly dataDir: string;
  /** Shared by every fault decision, so a chaos run replays from its seed. */
  readonly rng?: () => number;
  readonly faults?: SandboxFaults;
  readonly runway?: {
    readonly generationMs?: number;
    readonly outputBytes?: number;
    readonly outputUrlTtlMs?: number;
    /** Per-model limit on tasks generating at once; over it, tasks wait THROTTLED. Default: none. */
    readonly concurrency?: ConcurrencyOption;
    /** Creates per model and UTC day before a create answers 429; default 1000. */
    readonly dailyLimit?: number;
    /** Keep the bytes of every prompt image Runway received (`runway.promptImageBytes`). */
    readonly keepPromptImages?: boolean;
  };
  readonly uploadTokenTtlSeconds?: number;
  readonly maxUploadBytes?: number;
  readonly discardVideoBytes?: boolean;
  /**
   * Storage reads the whole body of an upload it refuses before answering, and keeps the
   * connection. Off by default: Supabase answers at once and closes the connection.
   */
  readonly gentleRefusal?: boolean;
  /** 0 (the default) picks a free port. */
  readonly port?: number;
}

export interface Sandbox {
  /** `NEXT_API_URL` for the worker: ends in `/api`. */
  readonly nextApiUrl: string;
  /** `RUNWAY_API_URL` for the worker. */
  readonly runwayApiUrl: string;
  /** Supabase-style `.../storage/v1` base that signed URLs point into. */
  readonly storageUrl: string;
  readonly app: SandboxApp;
  readonly storage: SandboxStorage;
  readonly runway: SandboxRunway;
  /** Every request any of the three services received, oldest first. */
  requests(): readonly RecordedRequest[];
  close(): Promise<void>;
}

const APP_MOUNT = '/app/api';
const RUNWAY_MOUNT = '/runway';
const STORAGE_MOUNT = '/storage/v1';
const DEFAULT_RNG_SEED = 1;

type Handler = (req: IncomingMessage, res: ServerResponse, subpath: string) => Promise<void>;

/** The part of the request target after `mount`, query string kept; undefined when it is not under `mount`. */
function subpathUnder(mount: string, target: string): string | undefined {
  if (!target.startsWith(mount)) return undefined;
  const rest = target.slice(mount.length);
  if (rest === '') return '/';
  if (rest.startsWith('?')) return `/${rest}`;
  return rest.startsWith('/') ? rest : undefined;
}

function listeningPort(address: AddressInfo | string | null): number {
  if (address === null || typeof address === 'string') throw new Error('sandbox server is not listening on TCP');
  return address.port;
}

function answerCrash(res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, 500, { success: false, error: 'Internal server error' });
}

/**
 * Starts the app worker API, Runway and Supabase Storage stand-ins on one loopback
 * server: `/app/api/...`, `/runway/...` and `/storage/v1/...`.
 */
export async function startSandbox(options: SandboxOptions): Promise<Sandbox> {
  const rng = options.rng ?? createRng(DEFAULT_RNG_SEED);
  const recorded: RecordedRequest[] = [];
  const record = (request: RecordedRequest): void => {
    recorded.push(request);
  };
  let origin = '';

  const storage = createSandboxStorage({
    dataDir: options.dataDir,
    publicBaseUrl: () => `${origin}${STORAGE_MOUNT}`,
    rng,
    record,
    ...(options.faults?.storage === undefined ? {} : { faults: options.faults.storage }),
    ...(options.uploadTokenTtlSeconds === undefined ? {} : { uploadTokenTtlSeconds: options.uploadTokenTtlSeconds }),
    ...(options.maxUploadBytes === undefined ? {} : { maxUploadBytes: options.maxUploadBytes }),
    ...(options.discardVideoBytes === undefined ? {} : { discardVideoBytes: options.discardVideoBytes }),
    ...(options.gentleRefusal === undefined ? {} : { gentleRefusal: options.gentleRefusal }),
  });
  const app = createSandboxApp({
    workerApiKey: options.workerApiKey,
    storage,
    rng,
    record,
    ...(options.faults?.app === undefined ? {} : { faults: options.faults.app }),
  });
  const runway = createSandboxRunway({
    apiKey: options.runwayApiKey,
    publicBaseUrl: () => `${origin}${RUNWAY_MOUNT}`,
    rng,
    record,
    ...(options.faults?.runway === undefined ? {} : { faults: options.faults.runway }),
    ...(options.runway?.generationMs === undefined ? {} : { generationMs: options.runway.generationMs }),
    ...(options.runway?.outputBytes === undefined ? {} : { outputBytes: options.runway.outputBytes }),
    ...(options.runway?.outputUrlTtlMs === undefined ? {} : { outputUrlTtlMs: options.runway.outputUrlTtlMs }),
    ...(options.runway?.concurrency === undefined ? {} : { concurrency: options.runway.concurrency }),
    ...(options.runway?.dailyLimit === undefined ? {} : { dailyLimit: options.runway.dailyLimit }),
    ...(options.runway?.keepPromptImages === undefined ? {} : { keepPromptImages: options.runway.keepPromptImages }),
  });

  const mounts: readonly (readonly [string, Handler])[] = [
    [APP_MOUNT, (req, res, subpath) => app.handle(req, res, subpath)],
    [RUNWAY_MOUNT, (req, res, subpath) => runway.handle(req, res, subpath)],
    [STORAGE_MOUNT, (req, res, subpath) => storage.handle(req, res, subpath)],
  ];

  async function dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    for (const [mount, handler] of mounts) {
      const subpath = subpathUnder(mount, target);
      if (subpath !== undefined) {
        await handler(req, res, subpath);
        return;
      }
    }
    req.resume();
    sendJson(res, 404, { error: `no sandbox service at ${target.split('?')[0] ?? ''}` });
  }

  const server = createServer((req, res) => {
    dispatch(req, res).catch(() => answerCrash(res));
  });
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  origin = `http://127.0.0.1:${listeningPort(server.address())}`;

  return {
    nextApiUrl: `${origin}${APP_MOUNT}`,
    runwayApiUrl: `${origin}${RUNWAY_MOUNT}`,
    storageUrl: `${origin}${STORAGE_MOUNT}`,
    app,
    storage,
    runway,
    requests: () => [...recorded],
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Held (timeout-fault) and keep-alive connections would otherwise keep close() waiting.
        server.closeAllConnections();
      }),
  };
}
