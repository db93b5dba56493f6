import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { LocalMessage, LocalQStash } from '../../server/local-qstash.js';
import { DEMO_KEYS, startLocalRuntime, type LocalRuntime, type LocalRuntimeOptions } from '../../sandbox/demo/local-runtime.js';
import { DEV_QSTASH } from '../../server/runtime.js';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import type { Sandbox } from '../../sandbox/index.js';
import type { FixturePhoto, SeedItem } from '../../sandbox/seed.js';
import type { Env } from '../../lib/config.js';
import type { Logger } from '../../lib/log.js';
import { mintQStashJwt } from './qstash-jwt.js';
import { until } from './wait.js';

export { until };

/**
 * One worker under test: the three handlers on a loopback port, the embedded QStash, and
 * the sandbox app, Runway and storage, all started by the local runtime in demo mode
 * (design §7). Tests talk HTTP to it, sign their own QStash deliveries, and read back what
 * every service received.
 */

export { DEMO_KEYS, DEV_QSTASH };

export const CRON_SECRET = 'test-cron-secret-5c1d0b7e';
export const WORKER_ID = 'runway-worker';
export const WORKER_AUTH = `Worker ${DEMO_KEYS.worker}`;
export const RUNWAY_AUTH = `Bearer ${DEMO_KEYS.runway}`;
/** Every Runway path but the limits read cron-poll makes before leasing (backpressure). */
export const RUNWAY_WORK = /^(?!\/v1\/organization(?:\?|$))/;

/**
 * `held`: the embedded QStash accepts, records and deduplicates publishes, but its
 * deliveries are pushed decades out, so each test plays QStash itself with minted
 * signatures and nothing runs behind its back. `auto`: deliveries happen, with every delay
 * scaled down a hundredfold.
 */
export type DeliveryMode = 'held' | 'auto';

const QSTASH_TIME_SCALE = 0.01;
/** Unscaled: about 30 years, so even scaled down no held delivery fires during a run. */
const HELD_DELIVERY_JITTER_MS = 1e14;

export interface HarnessOptions {
  /** Extra worker env (CRON_SECRET and LOG_LEVEL are set unless given here). */
  readonly env?: Env;
  readonly items?: readonly SeedItem[];
  readonly sandbox?: LocalRuntimeOptions['sandbox'];
  readonly delivery?: DeliveryMode;
  readonly log?: Logger;
}

export interface RequestFilter {
  readonly service?: RecordedRequest['service'];
  readonly method?: string;
  /** Exact path (query string included) or a pattern. */
  readonly path?: string | RegExp;
  /** Only requests recorded after this mark. */
  readonly since?: Mark;
}

export interface Mark {
  readonly requests: number;
  readonly messages: number;
}

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly json: unknown;
}

export interface DeliveryOptions {
  /** `Upstash-Retried` (default 0). */
  readonly retried?: number;
  /** Default: the current signing key the worker was configured with. */
  readonly signingKey?: string;
  /** The JWT `sub` (default: the URL the delivery is sent to). */
  readonly signedUrl?: string;
  /** The body the signature covers, when it should differ from the one sent. */
  readonly signedBody?: string;
  /** Epoch seconds the signature was issued at (default now). */
  readonly issuedAtSeconds?: number;
  /** Send no `Upstash-Signature` at all. */
  readonly unsigned?: boolean;
  /** Query string appended to the path, e.g. `?check=1`. */
  readonly query?: string;
}

export interface Harness {
  readonly runtime: LocalRuntime;
  readonly sandbox: Sandbox;
  readonly qstash: LocalQStash;
  /** Base URL of the worker: also the callback base QStash is told to call. */
  readonly url: string;
  requests(filter?: RequestFilter): RecordedRequest[];
  /** Requests to one app worker route (`next-task`, `presign`, `heartbeat`, `report`). */
  appCalls(route: 'next-task' | 'presign' | 'heartbeat' | 'report', since?: Mark): RecordedRequest[];
  /** Every message published to QStash, or only those for one of our paths. */
  messages(pathname?: string, since?: Mark): LocalMessage[];
  mark(): Mark;
  /** `GET /api/cron-poll` as Vercel Cron calls it (`authorization: null` sends none). */
  cron(query?: string, authorization?: string | null): Promise<Answer>;
  /** A POST to one of the worker's paths, signed as QStash signs a delivery. */
  deliver(pathname: string, body: unknown, options?: DeliveryOptions): Promise<Answer>;
  /** Leases the next task in the sandbox app as some other worker would. */
  leaseAs(workerId: string): Promise<unknown>;
  close(): Promise<void>;
}

const open = new Set<Harness>();

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

export async function answerOf(response: Response): Promise<Answer> {
  const text = await response.text();
  let json: unknown = text;
  try {
    json = text === '' ? undefined : (JSON.parse(text) as unknown);
  } catch {
    json = text;
  }
  return { status: response.status, headers: response.headers, json };
}

function matches(request: RecordedRequest, filter: RequestFilter): boolean {
  if (filter.service !== undefined && request.service !== filter.service) return false;
  if (filter.method !== undefined && request.method !== filter.method) return false;
  if (typeof filter.path === 'string' && request.path !== filter.path) return false;
  if (filter.path instanceof RegExp && !filter.path.test(request.path)) return false;
  return true;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'runway-api-test-'));
  let runtime: LocalRuntime;
  try {
    runtime = await startLocalRuntime({
      env: { CRON_SECRET, LOG_LEVEL: 'silent', ...options.env },
      port: 0,
      ticker: false,
      dataDir,
      qstashTimeScale: QSTASH_TIME_SCALE,
      ...((options.delivery ?? 'held') === 'held'
        ? { qstashFaults: { rng: () => 1, reorderJitterMs: HELD_DELIVERY_JITTER_MS } }
        : {}),
      items: options.items ?? [],
      sandbox: { runway: { generationMs: 300 }, ...options.sandbox },
      log: options.log ?? silentLogger(),
    });
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const { sandbox, qstash } = runtime;
  if (!sandbox || !qstash) throw new Error('expected demo mode with the embedded QStash');
  const url = runtime.url;
  const signingKey = runtime.deps.config.qstashCurrentSigningKey;

  const requests = (filter: RequestFilter = {}): RecordedRequest[] =>
    sandbox
      .requests()
      .slice(filter.since?.requests ?? 0)
      .filter((request) => matches(request, filter));

  const harness: Harness = {
    runtime,
    sandbox,
    qstash,
    url,
    requests,
    appCalls: (route, since) => requests({ service: 'app', path: `/worker/${route}`, ...(since ? { since } : {}) }),
    messages: (pathname, since) =>
      qstash
        .messages()
        .slice(since?.messages ?? 0)
        .filter((message) => pathname === undefined || message.url === `${url}${pathname}`),
    mark: () => ({ requests: sandbox.requests().length, messages: qstash.messages().length }),
    async cron(query = '', authorization = `Bearer ${CRON_SECRET}`) {
      const headers: Record<string, string> = { 'user-agent': 'vercel-cron/1.0' };
      if (authorization !== null) headers['authorization'] = authorization;
      return answerOf(await fetch(`${url}/api/cron-poll${query}`, { headers, signal: AbortSignal.timeout(20_000) }));
    },
    async deliver(pathname, body, delivery = {}) {
      const target = `${url}${pathname}${delivery.query ?? ''}`;
      const raw = typeof body === 'string' ? body : JSON.stringify(body);
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'Upstash-QStash',
        'upstash-message-id': `msg_${randomUUID().replace(/-/g, '')}`,
        'upstash-retried': String(delivery.retried ?? 0),
      };
      if (delivery.unsigned !== true) {
        headers['upstash-signature'] = await mintQStashJwt({
          signingKey: delivery.signingKey ?? signingKey,
          url: delivery.signedUrl ?? target,
          body: delivery.signedBody ?? raw,
          ...(delivery.issuedAtSeconds === undefined ? {} : { issuedAtSeconds: delivery.issuedAtSeconds }),
        });
      }
      return answerOf(
        await fetch(target, { method: 'POST', headers, body: raw, signal: AbortSignal.timeout(60_000) }),
      );
    },
    async leaseAs(workerId) {
      const response = await fetch(`${sandbox.nextApiUrl}/worker/next-task`, {
        method: 'POST',
        headers: { authorization: WORKER_AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({ worker_id: workerId, worker_type: 'runway' }),
      });
      return (await answerOf(response)).json;
    },
    async close() {
      open.delete(harness);
      await runtime.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  open.add(harness);
  return harness;
}

/** Closes every harness still open; call from `afterEach`. */
export async function closeHarnesses(): Promise<void> {
  await Promise.all([...open].map((harness) => harness.close()));
}

/** A queue item with one of the sandbox's fixture photos, under fresh ids. */
export function seedItem(photo: FixturePhoto, overrides: Partial<Omit<SeedItem, 'photo'>> = {}): SeedItem {
  const groupId = overrides.group_id ?? randomUUID();
  const photoId = overrides.photo_id ?? randomUUID();
  const extension = photo.endsWith('.png') ? 'png' : 'jpg';
  return {
    item_id: randomUUID(),
    group_id: groupId,
    photo_id: photoId,
    prompt: 'The camera slowly pushes in while leaves drift across the frame in the warm evening light.',
    frame_num: 121,
    photo_storage_path: `${groupId}/${photoId}_original.${extension}`,
    expectation: 'test item',
    ...overrides,
    photo,
  };
}

/**
 * The env the harness's worker was configured from, rebuilt from its config, for tests
 * that build their own deps against the same loopback services.
 */
export function workerEnv(harness: Harness): Env {
  const config = harness.runtime.deps.config;
  return {
    NEXT_API_URL: config.nextApiUrl,
    WORKER_API_KEY: config.workerApiKey,
    RUNWAY_API_KEY: config.runwayApiKey,
    RUNWAY_API_URL: config.runwayApiUrl,
    QSTASH_URL: config.qstashUrl,
    QSTASH_TOKEN: config.qstashToken,
    QSTASH_CURRENT_SIGNING_KEY: config.qstashCurrentSigningKey,
    QSTASH_NEXT_SIGNING_KEY: config.qstashNextSigningKey,
    WORKER_BASE_URL: config.workerBaseUrl,
    LEDGER_DIR: config.ledgerDir,
    LOG_LEVEL: 'silent',
  };
}
