import { randomUUID } from 'node:crypto';
import type { LocalMessage } from '../../server/local-qstash.js';
import { startWorkerServer, type WorkerServer } from '../../server/worker-server.js';
import { parseConfig, secretsOf, type Env } from '../../lib/config.js';
import type { Deps, Timeouts } from '../../lib/deps.js';
import { createDeps } from '../../lib/runtime.js';
import { captureLog, type CapturedLog } from './extra-log.js';
import { answerOf, CRON_SECRET, workerEnv, type Answer, type Harness } from './harness.js';
import { mintQStashJwt } from './qstash-jwt.js';

/**
 * A second worker next to a harness: its own handlers on a loopback port, built from the
 * harness's env plus overrides (a stand-in app or Runway, short timeouts), sharing the
 * harness's sandbox, embedded QStash and ledger. Its log is captured.
 */

export interface ExtraWorker {
  readonly url: string;
  readonly deps: Deps;
  readonly log: CapturedLog;
  /** `GET /api/cron-poll` with the cron secret. */
  cron(query?: string): Promise<Answer>;
  /** A POST signed as QStash signs a delivery to this worker. */
  deliver(pathname: string, body: unknown, options?: { retried?: number }): Promise<Answer>;
  /** Messages this worker published (to its own URL), oldest first. */
  messages(pathname?: string): LocalMessage[];
}

export interface ExtraWorkerOptions {
  /** Overrides on top of the harness's worker env. */
  readonly env?: Env;
  readonly timeouts?: Partial<Timeouts>;
  /** The worker's clock (default `Date.now`), e.g. to play a delivery that arrives much later. */
  readonly now?: () => number;
}

const servers = new Set<WorkerServer>();

/** Closes every extra worker still open; call from `afterEach` before the harnesses close. */
export async function closeExtraWorkers(): Promise<void> {
  const open = [...servers];
  servers.clear();
  await Promise.all(open.map((server) => server.close()));
}


/**
 * One signed QStash delivery, minted once: every `send()` repeats the very same request
 * (signature, message id and body), as a duplicate delivery does.
 */
export async function signedDelivery(
  target: string,
  body: unknown,
  signingKey: string,
): Promise<{ send(options?: { retried?: number }): Promise<Answer> }> {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const signature = await mintQStashJwt({ signingKey, url: target, body: raw });
  const messageId = `msg_${randomUUID().replace(/-/g, '')}`;
  return {
    async send(options = {}) {
      const response = await fetch(target, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Upstash-QStash',
          'upstash-message-id': messageId,
          'upstash-retried': String(options.retried ?? 0),
          'upstash-signature': signature,
        },
        body: raw,
        signal: AbortSignal.timeout(60_000),
      });
      return answerOf(response);
    },
  };
}

export async function startExtraWorker(harness: Harness, options: ExtraWorkerOptions = {}): Promise<ExtraWorker> {
  const holder: { deps?: Deps } = {};
  const server = await startWorkerServer(() => {
    if (!holder.deps) throw new Error('extra worker is starting');
    return holder.deps;
  }, 0);
  servers.add(server);
  const config = parseConfig({
    ...workerEnv(harness),
    CRON_SECRET,
    WORKER_BASE_URL: server.url,
    ...options.env,
  });
  const log = captureLog({ secrets: secretsOf(config) });
  const deps = createDeps(config, {
    log: log.logger,
    ...(options.timeouts ? { timeouts: options.timeouts } : {}),
    ...(options.now ? { now: options.now } : {}),
  });
  holder.deps = deps;

  return {
    url: server.url,
    deps,
    log,
    async cron(query = '') {
      const response = await fetch(`${server.url}/api/cron-poll${query}`, {
        headers: { authorization: `Bearer ${CRON_SECRET}`, 'user-agent': 'vercel-cron/1.0' },
        signal: AbortSignal.timeout(60_000),
      });
      return answerOf(response);
    },
    async deliver(pathname, body, delivery = {}) {
      const once = await signedDelivery(`${server.url}${pathname}`, body, config.qstashCurrentSigningKey);
      return once.send(delivery);
    },
    messages: (pathname) =>
      harness.qstash
        .messages()
        .filter((message) => (pathname === undefined ? message.url.startsWith(server.url) : message.url === `${server.url}${pathname}`)),
  };
}
