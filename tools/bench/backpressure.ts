import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { startLocalRuntime } from '../../sandbox/demo/local-runtime.js';
import type { SandboxApp } from '../../sandbox/app-api.js';
import type { SeedItem } from '../../sandbox/seed.js';
import type { Env } from '../../lib/config.js';
import { DRAIN_DEDUP_WINDOW_MS } from '../../lib/steps/cron-poll.js';
import type { Print } from './stats.js';

/**
 * A burst against a Runway account that generates only a few videos at once: 100 items queued at once, through the real handlers, the local QStash and
 * the sandbox services, once with backpressure and once without. Time is compressed twenty
 * times: a 3 s sandbox generation stands for a one-minute one, and every worker setting
 * that races against generations is scaled by the same factor.
 */

const ITEM_COUNT = 100;
const RUNWAY_CONCURRENCY = 5;
const GENERATION_MS = 3_000;
/** A 3 s generation for a one-minute one: every QStash delay runs twenty times faster. */
const TIME_SCALE = 0.05;
const SAMPLE_INTERVAL_MS = 100;
/** A run still open after this long ends with its figures (items left open count as unreported). */
const RUN_DEADLINE_MS = 240_000;

const WORKER_ENV = {
  RUNWAY_TIMEOUT_SECONDS: '30',
  LEASE_DURATION_SECONDS: '30',
  HEARTBEAT_INTERVAL_SECONDS: '6',
  MAX_TASKS_PER_RUN: '10',
  LOCAL_CRON_SECONDS: '1',
  CRON_SECRET: 'bench',
  LOG_LEVEL: 'silent',
} as const satisfies Env;

/** Each value is printed with its reason, so the figures can be read without this file. */
const SETTINGS: readonly (readonly [name: string, value: string, reason: string])[] = [
  ['items', `${ITEM_COUNT} × landscape.jpg, gen4_turbo, 121 frames (5 s)`, 'queued at once, oldest first, as a burst from the app'],
  ['runway', `maxConcurrentGenerations ${RUNWAY_CONCURRENCY} per model, ${GENERATION_MS / 1000} s generations`, 'a low tier; over the limit tasks wait THROTTLED'],
  ['qstash_time_scale', String(TIME_SCALE), 'a 3 s generation stands for a one-minute one: the first poll of gen4_turbo (15 s) comes after 0.75 s, the 5 s minimum poll after 0.25 s'],
  ['RUNWAY_TIMEOUT_SECONDS', WORKER_ENV.RUNWAY_TIMEOUT_SECONDS, '600 s against one-minute generations is 10:1; the same ratio for 3 s ones'],
  ['LEASE_DURATION_SECONDS', WORKER_ENV.LEASE_DURATION_SECONDS, '600 s scaled like the timeout, so the lease outlives a generation the way it does in production'],
  ['HEARTBEAT_INTERVAL_SECONDS', WORKER_ENV.HEARTBEAT_INTERVAL_SECONDS, '120 s scaled like the timeout'],
  ['MAX_TASKS_PER_RUN', WORKER_ENV.MAX_TASKS_PER_RUN, 'the default'],
  [
    'LOCAL_CRON_SECONDS',
    WORKER_ENV.LOCAL_CRON_SECONDS,
    `the runtime's smallest tick (20 s of production time); the drain chain's ${DRAIN_DEDUP_WINDOW_MS / 1000} s deduplication window is not scaled, so the ticker does most of the draining`,
  ],
  ['deadline', `${RUN_DEADLINE_MS / 1000} s per run`, 'a stuck run ends with its figures instead of hanging'],
];

interface RunFigures {
  readonly completed: number;
  readonly failed: number;
  readonly throttledAtOnceMax: number;
  readonly leasedInFlightMax: number;
  readonly wallSeconds: number;
  readonly runwayTasks: number;
  /** Drain runs of cron-poll the worker published to QStash (the cron ticker's runs come on top). */
  readonly drainsPublished: number;
  /** Why items failed, most frequent first, e.g. `46× runway: timed out after 30 s (last status THROTTLED)`. */
  readonly failureReasons: string;
}

function burstItems(): SeedItem[] {
  return Array.from({ length: ITEM_COUNT }, (_, i) => {
    const suffix = String(i).padStart(12, '0');
    const groupId = `10000000-0000-4000-8000-${suffix}`;
    const photoId = `20000000-0000-4000-8000-${suffix}`;
    return {
      item_id: `30000000-0000-4000-8000-${suffix}`,
      group_id: groupId,
      photo_id: photoId,
      prompt: 'The camera slowly pushes in while leaves drift across the frame in the warm evening light.',
      frame_num: 121,
      photo_storage_path: `${groupId}/${photoId}_original.jpg`,
      photo: 'landscape.jpg',
      expectation: 'completed',
    };
  });
}

/** Items the app shows leased right now: processing, lease not yet lapsed. */
function leasedNow(app: SandboxApp, nowMs: number): number {
  return app.items().filter((item) => item.status === 'processing' && item.leased_until !== null && Date.parse(item.leased_until) > nowMs).length;
}

function failureReasonsOf(app: SandboxApp): string {
  const counts = new Map<string, number>();
  for (const item of app.items()) {
    if (item.status !== 'failed') continue;
    const reason = item.error_message ?? '(no message)';
    counts.set(reason, (counts.get(reason) ?? 0) + 1);
  }
  if (counts.size === 0) return 'none';
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([reason, count]) => `${count}× ${reason}`)
    .join('; ');
}

async function runBurst(backpressure: boolean): Promise<RunFigures> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bench-backpressure-'));
  try {
    const items = burstItems();
    const runtime = await startLocalRuntime({
      env: WORKER_ENV,
      port: 0,
      dataDir,
      items,
      log: pino({ level: 'silent' }),
      qstashTimeScale: TIME_SCALE,
      backpressure,
      sandbox: { runway: { concurrency: RUNWAY_CONCURRENCY, generationMs: GENERATION_MS } },
    });
    // The ticker's first run is queued behind this line (setImmediate), so the clock starts before any lease.
    const started = performance.now();
    try {
      const sandbox = runtime.sandbox;
      if (!sandbox) throw new Error('the local runtime started without its sandbox');
      let leasedInFlightMax = 0;
      let reported = 0;
      for (;;) {
        const nowMs = Date.now();
        leasedInFlightMax = Math.max(leasedInFlightMax, leasedNow(sandbox.app, nowMs));
        reported = sandbox.app.items().filter((item) => item.status === 'completed' || item.status === 'failed').length;
        if (reported === ITEM_COUNT || performance.now() - started >= RUN_DEADLINE_MS) break;
        await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS));
      }
      const wallSeconds = (performance.now() - started) / 1000;
      const statuses = sandbox.app.items().map((item) => item.status);
      return {
        completed: statuses.filter((status) => status === 'completed').length,
        failed: statuses.filter((status) => status === 'failed').length,
        throttledAtOnceMax: sandbox.runway.maxThrottledAtOnce(),
        leasedInFlightMax,
        wallSeconds,
        runwayTasks: sandbox.runway.tasks().length,
        drainsPublished: runtime.qstash?.messages().filter((message) => new URL(message.url).pathname === '/api/cron-poll').length ?? 0,
        failureReasons: failureReasonsOf(sandbox.app),
      };
    } finally {
      await runtime.close();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

function printRun(print: Print, prefix: string, figures: RunFigures): void {
  print(`${prefix}_completed`, `${figures.completed}/${ITEM_COUNT}`);
  print(`${prefix}_failed`, figures.failed);
  print(`${prefix}_unreported`, ITEM_COUNT - figures.completed - figures.failed);
  print(`${prefix}_throttled_at_once_max`, figures.throttledAtOnceMax);
  print(`${prefix}_leased_in_flight_max`, figures.leasedInFlightMax);
  print(`${prefix}_wall_s`, figures.wallSeconds, 's');
  // Delivered videos' generation time against what the account's slots could have generated in the wall time.
  print(`${prefix}_slot_use`, (100 * figures.completed * GENERATION_MS) / (RUNWAY_CONCURRENCY * figures.wallSeconds * 1000), '%');
  print(`${prefix}_runway_tasks_created`, figures.runwayTasks);
  print(`${prefix}_drains_published`, figures.drainsPublished);
  print(`${prefix}_failure_reasons`, figures.failureReasons);
}

export async function benchBackpressure(print: Print): Promise<void> {
  for (const [name, value, reason] of SETTINGS) print(`backpressure_settings_${name}`, `${value} (${reason})`);
  printRun(print, 'backpressure', await runBurst(true));
  printRun(print, 'backpressure_off', await runBurst(false));
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  await benchBackpressure((name, value, unit = '') => {
    process.stdout.write(`${name}: ${typeof value === 'number' ? Number(value.toFixed(2)) : value}${unit ? ` ${unit}` : ''}\n`);
  });
}
