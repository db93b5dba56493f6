import { randomBytes } from 'node:crypto';
import { parseConfig, type Env } from '../lib/config.js';
import type { Deps, Timeouts } from '../lib/deps.js';
import type { Logger } from '../lib/log.js';
import { createDeps } from '../lib/runtime.js';
import { startLocalQStash, type LocalQStash, type LocalQStashFaults } from './local-qstash.js';
import { startWorkerServer, type Health, type WorkerServer } from './worker-server.js';

/**
 * The self-hosted worker (design §7): the three handlers on one port, a cron ticker, and —
 * unless an outside QStash is configured — an embedded QStash that the real Client
 * publishes to. Everything it talks to comes from `env`.
 */

/** The QStash dev server's public credentials (contract §3): fine for loopback use. */
export const DEV_QSTASH = {
  token: 'eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=',
  currentSigningKey: 'sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r',
  nextSigningKey: 'sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs',
} as const;

/** Unhealthy once no cron tick has completed for this many intervals (counted from start before the first). */
export const UNHEALTHY_AFTER_INTERVALS = 3;

export const present = (value: string | undefined): value is string => value !== undefined && value.trim() !== '';

interface TickState {
  readonly startedAt: number;
  lastCompletedAt: number | undefined;
  /** 0 while no ticker runs: nothing to fall behind. */
  intervalMs: number;
}

function tickHealth(ticks: TickState, nowMs: number): Health {
  const since = ticks.lastCompletedAt ?? ticks.startedAt;
  const ok = ticks.intervalMs === 0 || nowMs - since <= UNHEALTHY_AFTER_INTERVALS * ticks.intervalMs;
  return {
    ok,
    last_tick_at: ticks.lastCompletedAt === undefined ? null : new Date(ticks.lastCompletedAt).toISOString(),
    seconds_since_tick: Math.round((nowMs - since) / 100) / 10,
    tick_interval_seconds: ticks.intervalMs / 1000,
    ...(ok ? {} : { detail: `no cron tick has completed for ${UNHEALTHY_AFTER_INTERVALS} intervals` }),
  };
}

export interface WorkerRuntimeOptions {
  readonly env: Env;
  /** Overrides PORT (0 picks a free port). */
  readonly port?: number;
  readonly log?: Logger;
  readonly pretty?: boolean;
  /** Embedded QStash: delays are multiplied by this (1 = real time). */
  readonly qstashTimeScale?: number;
  readonly qstashFaults?: LocalQStashFaults;
  /** Bounds on outside calls (tests and chaos runs shorten them). */
  readonly timeouts?: Partial<Timeouts>;
  /** Start the cron ticker (default true). */
  readonly ticker?: boolean;
  /** Lease only what Runway can start (default true); off only to measure what it saves. */
  readonly backpressure?: boolean;
}

export interface WorkerRuntime {
  readonly url: string;
  readonly deps: Deps;
  /** The embedded QStash, when no outside one is configured. */
  readonly qstash: LocalQStash | undefined;
  /** One cron-poll run through HTTP, as Vercel Cron would call it. */
  runCron(query?: string): Promise<unknown>;
  close(): Promise<void>;
}

export async function startWorkerRuntime(options: WorkerRuntimeOptions): Promise<WorkerRuntime> {
  const env = options.env;
  const closers: (() => Promise<void>)[] = [];
  const close = async (): Promise<void> => {
    for (const closer of closers.reverse()) await closer().catch(() => undefined);
  };

  try {
    const externalQStash = present(env.QSTASH_URL) && present(env.QSTASH_TOKEN);
    const signing = {
      current: externalQStash ? env.QSTASH_CURRENT_SIGNING_KEY : (env.QSTASH_CURRENT_SIGNING_KEY ?? DEV_QSTASH.currentSigningKey),
      next: externalQStash ? env.QSTASH_NEXT_SIGNING_KEY : (env.QSTASH_NEXT_SIGNING_KEY ?? DEV_QSTASH.nextSigningKey),
    };
    let qstash: LocalQStash | undefined;
    if (!externalQStash) {
      qstash = await startLocalQStash({
        token: env.QSTASH_TOKEN ?? DEV_QSTASH.token,
        currentSigningKey: signing.current ?? DEV_QSTASH.currentSigningKey,
        nextSigningKey: signing.next ?? DEV_QSTASH.nextSigningKey,
        timeScale: options.qstashTimeScale ?? 1,
        ...(options.qstashFaults ? { faults: options.qstashFaults } : {}),
      });
      closers.push(() => qstash?.close() ?? Promise.resolve());
    }

    // The server must listen before the config exists: its URL is the callback base.
    const holder: { deps?: Deps } = {};
    const ticks = { startedAt: Date.now(), lastCompletedAt: undefined as number | undefined, intervalMs: 0 };
    const server: WorkerServer = await startWorkerServer(
      () => {
        if (!holder.deps) throw new Error('worker is starting');
        return holder.deps;
      },
      options.port ?? Number(env.PORT ?? 3000),
      () => tickHealth(ticks, Date.now()),
    );
    closers.push(() => server.close());

    const cronSecret = present(env.CRON_SECRET) ? env.CRON_SECRET : randomBytes(18).toString('base64url');
    const config = parseConfig({
      ...env,
      ...(qstash ? { QSTASH_URL: qstash.url, QSTASH_TOKEN: env.QSTASH_TOKEN ?? DEV_QSTASH.token } : {}),
      QSTASH_CURRENT_SIGNING_KEY: signing.current,
      QSTASH_NEXT_SIGNING_KEY: signing.next,
      WORKER_BASE_URL: present(env.WORKER_BASE_URL) ? env.WORKER_BASE_URL : server.url,
      CRON_SECRET: cronSecret,
      // Not on Vercel, whatever the shell says.
      VERCEL: undefined,
    });
    const ready = createDeps(config, {
      ...(options.log ? { log: options.log } : {}),
      ...(options.timeouts ? { timeouts: options.timeouts } : {}),
      ...(options.backpressure === undefined ? {} : { backpressure: options.backpressure }),
      pretty: options.pretty ?? false,
    });
    holder.deps = ready;

    const runCron = async (query = ''): Promise<unknown> => {
      const response = await fetch(`${server.url}/api/cron-poll${query}`, {
        headers: { authorization: `Bearer ${cronSecret}`, 'user-agent': 'vercel-cron/1.0' },
      });
      return response.json();
    };

    if (options.ticker ?? true) {
      let running = false;
      const tick = (): void => {
        if (running) return;
        running = true;
        runCron()
          .then(() => {
            ticks.lastCompletedAt = Date.now();
          })
          .catch((error: unknown) => ready.log.error({ err: String(error) }, 'local cron tick failed'))
          .finally(() => {
            running = false;
          });
      };
      ticks.intervalMs = config.localCronSeconds * 1000;
      const timer = setInterval(tick, ticks.intervalMs);
      setImmediate(tick);
      closers.push(() => {
        clearInterval(timer);
        return Promise.resolve();
      });
    }

    return { url: server.url, deps: ready, qstash, runCron, close };
  } catch (error) {
    await close();
    throw error;
  }
}
