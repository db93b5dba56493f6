import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { secretsOf, type Env } from '../../lib/config.js';
import type { Timeouts } from '../../lib/deps.js';
import { createLogger } from '../../lib/log.js';
import type { LocalQStashFaults } from '../../server/local-qstash.js';
import { DEMO_KEYS, startLocalRuntime, type LocalRuntime } from '../../sandbox/demo/local-runtime.js';
import { DEV_QSTASH } from '../../server/runtime.js';
import type { AppFaults } from '../../sandbox/app-api.js';
import type { Sandbox } from '../../sandbox/index.js';
import { createRng } from '../../sandbox/random.js';
import { CDN_ERROR_PAGE } from '../../sandbox/runway-output.js';
import type { SandboxRunwayFaults } from '../../sandbox/runway.js';
import type { StorageFaults } from '../../sandbox/storage.js';
import { figuresOf, type ChaosFigures } from './figures.js';
import { chaosItems, DEFAULT_REFUSED_SHARE } from './items.js';
import { createLeakScanner, urlCredentials } from './leaks.js';
import { createLeaseWatch, type LeaseWatch } from './lease-watch.js';
import { releasesIn, taskRequestsIn } from './service-records.js';
import { stallThresholdMs } from './stalls.js';

export { formatFigures, type ChaosFigures } from './figures.js';
export { checkInvariants } from './invariants.js';

/**
 * A chaos run: N items through the real handlers, the local QStash and the sandbox
 * services with every fault switched on, then the figures of what the services saw.
 * Worker time is compressed (short lease, heartbeat and Runway timeout; QStash delays
 * scaled), so a few hundred items finish in minutes.
 */

export interface ChaosFaults {
  readonly app: AppFaults;
  readonly runway: SandboxRunwayFaults;
  readonly storage: StorageFaults;
  readonly qstash: Omit<LocalQStashFaults, 'rng'>;
  /** Share of items with the photo Runway refuses. */
  readonly refusedShare: number;
}

/** Bounds on single outside calls in a chaos run; the app's hang fault sits just above `appMs`. */
export const CHAOS_TIMEOUTS: Timeouts = { appMs: 1_500, runwayMs: 3_000, photoMs: 3_000, uploadMs: 15_000 };

/**
 * The rates of the faults, each chosen so that a few hundred items take every path a few
 * times while an item almost never meets the same fault often enough in a row to fail:
 *
 * - app: about 10 % of calls fail, as real traffic showed. Half are 500s with the body the
 *   real app sends on each route, in runs of three calls for the same route and item (a
 *   storage or database hiccup outlives one call; next-task names no item, so its runs are
 *   per route): 2 % of calls start a run, so about 6 % of calls answer 500, three in a row —
 *   three 500 "Failed to update task" to one report, or every try of one in-process retry
 *   loop (three tries), which by itself costs a delivery or a lease, never an item. The
 *   other half hang past the worker's timeout. 3 % of answers are lost after the app applied
 *   the change.
 * - runway: 10 % of API calls answer 502, 3 % of creates 429 (daily cap), 5 % of tasks are
 *   refused by output moderation and 3 % never finish (so the timeout is taken). 5 % of
 *   generations fail with a transient code: dozens of new generations per 1000 items, and one
 *   item in about 400 whose new generation fails too (0.05²). 3 % of output URLs answer an
 *   HTML page on their first fetch, so the fresh-URL path is taken often and both URLs fail
 *   for about one item in 1000 (0.03²); 1 % of succeeded tasks only ever serve HTML, which
 *   must fail the item and store nothing — kept small because each costs a video.
 * - storage: 5 % of uploads are cut off, 3 % meet an expired token.
 * - qstash: 10 % of deliveries are duplicated at once, 10 % again later, and every delivery
 *   may be held up to 5 s so messages overtake each other.
 */
export const DEFAULT_CHAOS_FAULTS: ChaosFaults = {
  app: { error500Rate: 0.02, error500RunLength: 3, timeoutRate: 0.05, lostResponseRate: 0.03, hangMs: CHAOS_TIMEOUTS.appMs + 300 },
  runway: {
    error502Rate: 0.1,
    create429Rate: 0.03,
    safetyRate: 0.05,
    neverFinishRate: 0.03,
    transientFailureRate: 0.05,
    htmlOutputFirstFetchRate: 0.03,
    htmlOutputRate: 0.01,
  },
  storage: { resetRate: 0.05, expiredTokenRate: 0.03 },
  qstash: { duplicateRate: 0.1, lateDuplicateRate: 0.1, reorderJitterMs: 5_000 },
  refusedShare: DEFAULT_REFUSED_SHARE,
};

/**
 * The worker's settings, compressed: a 15 s lease heartbeated every 3 s, Runway tasks
 * cancelled after 12 s (generation takes 2 s, so only never-finishing ones time out), a
 * cron tick every second.
 */
export const CHAOS_WORKER_ENV: Env = {
  LEASE_DURATION_SECONDS: '15',
  HEARTBEAT_INTERVAL_SECONDS: '3',
  RUNWAY_TIMEOUT_SECONDS: '12',
  RUNWAY_POLL_MIN_SECONDS: '5',
  RUNWAY_POLL_MAX_SECONDS: '60',
  LOCAL_CRON_SECONDS: '1',
  MAX_TASKS_PER_RUN: '15',
  LOG_LEVEL: 'info',
};

/** QStash delays run this much faster: the 45 s first poll takes ~1.4 s, the 5 s minimum 150 ms. */
export const CHAOS_TIME_SCALE = 0.03;
export const CHAOS_GENERATION_MS = 2_000;

/**
 * The sandbox Runway's limit on generations at once per model. Without a limit that binds, a
 * run keeps about 20 in flight (a cron run a second, each leasing up to MAX_TASKS_PER_RUN), so
 * 8 binds nearly all the time: without backpressure tasks would wait THROTTLED through their
 * timeout; with it the worker must lease only what can start. 300 items still finish in
 * under three minutes.
 */
export const CHAOS_RUNWAY_CONCURRENCY = 8;

export interface ChaosProgress {
  readonly items: number;
  readonly completed: number;
  readonly failed: number;
  readonly elapsedMs: number;
}

export interface ChaosOptions {
  readonly items: number;
  readonly seed: number;
  /** Wiped at the start; holds the ledger and storage. Default `.data/chaos`. */
  readonly dataDir?: string;
  /**
   * Give up on items still open after this long; they count as lost. Default 60 s + 1 s per
   * item: with CHAOS_RUNWAY_CONCURRENCY slots about two items finish a second, so this is
   * twice what a run needs.
   */
  readonly deadlineSeconds?: number;
  /** After every item is finished, wait at most this long for late deliveries. Default 15 s. */
  readonly settleSeconds?: number;
  readonly faults?: Partial<ChaosFaults>;
  readonly timeScale?: number;
  /** Per-model concurrency limit of the sandbox Runway; default CHAOS_RUNWAY_CONCURRENCY. */
  readonly runwayConcurrency?: number;
  /** Where to write every captured log line (JSON, one per line). */
  readonly logFile?: string;
  readonly onProgress?: (progress: ChaosProgress) => void;
  readonly progressIntervalMs?: number;
}

const POLL_MS = 200;

/** Independent rng streams per consumer, so adding draws in one does not shift the others. */
function streamSeed(seed: number, stream: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca6b)) >>> 0;
}

/** A sleep whose timer is cleared when `cancel` is called (nothing left to keep the process up). */
function sleep(ms: number): { done: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
    timer = setTimeout(resolve, ms);
  });
  return {
    done,
    cancel: () => {
      clearTimeout(timer);
      finish();
    },
  };
}

function progressOf(items: readonly { readonly status: string }[], itemCount: number, started: number): ChaosProgress {
  let completed = 0;
  let failed = 0;
  for (const item of items) {
    if (item.status === 'completed') completed += 1;
    else if (item.status === 'failed') failed += 1;
  }
  return { items: itemCount, completed, failed, elapsedMs: Date.now() - started };
}

/** Drives the run until every item is finished or the deadline passes; returns when it stopped watching. */
async function driveUntilFinished(
  runtime: LocalRuntime,
  sandbox: Sandbox,
  itemIds: readonly string[],
  leases: LeaseWatch,
  options: ChaosOptions,
  started: number,
): Promise<number> {
  const deadline = started + (options.deadlineSeconds ?? 60 + itemIds.length) * 1000;
  const progressEveryMs = options.progressIntervalMs ?? 5_000;
  const seeded = new Set(itemIds);
  let lastProgress = started;
  let watchedUntil = started;
  for (;;) {
    watchedUntil = Date.now();
    const items = sandbox.app.items().filter((item) => seeded.has(item.item_id));
    leases.sample(items, watchedUntil);
    const progress = progressOf(items, itemIds.length, started);
    const finished = progress.completed + progress.failed === progress.items;
    if (options.onProgress && (finished || Date.now() - lastProgress >= progressEveryMs)) {
      lastProgress = Date.now();
      options.onProgress(progress);
    }
    if (finished || Date.now() >= deadline) break;
    await sleep(POLL_MS).done;
  }
  // Late and duplicate deliveries may still be on their way: a second report would land now.
  const settle = sleep((options.settleSeconds ?? 15) * 1000);
  await Promise.race([runtime.qstash?.idle() ?? Promise.resolve(), settle.done]);
  settle.cancel();
  return watchedUntil;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosFigures> {
  const started = Date.now();
  const faults: ChaosFaults = { ...DEFAULT_CHAOS_FAULTS, ...options.faults };
  const dataDir = path.resolve(options.dataDir ?? '.data/chaos');
  // The runtime wipes it at start: never the working directory or one of its parents.
  if (!path.relative(dataDir, process.cwd()).startsWith('..')) throw new Error(`refusing to use ${dataDir} as the chaos data directory: it would be wiped`);
  const items = chaosItems(options.items, createRng(streamSeed(options.seed, 0)), faults.refusedShare);
  const itemIds = items.map((item) => item.item_id);

  // The production logger (redaction at the stream), writing into memory instead of stdout.
  const cronSecret = randomBytes(24).toString('base64url');
  const configuredSecrets = [DEMO_KEYS.worker, DEMO_KEYS.runway, DEV_QSTASH.token, DEV_QSTASH.currentSigningKey, DEV_QSTASH.nextSigningKey, cronSecret];
  const lines: string[] = [];
  const log = createLogger({
    level: CHAOS_WORKER_ENV.LOG_LEVEL ?? 'info',
    secrets: configuredSecrets,
    destination: {
      write(line: string) {
        lines.push(line);
      },
    },
  });

  const timeScale = options.timeScale ?? CHAOS_TIME_SCALE;
  const concurrencyLimit = options.runwayConcurrency ?? CHAOS_RUNWAY_CONCURRENCY;
  const runtime = await startLocalRuntime({
    env: { ...CHAOS_WORKER_ENV, CRON_SECRET: cronSecret },
    port: 0,
    dataDir,
    log,
    items,
    qstashTimeScale: timeScale,
    qstashFaults: { rng: createRng(streamSeed(options.seed, 1)), ...faults.qstash },
    sandbox: {
      rng: createRng(streamSeed(options.seed, 2)),
      faults: { app: faults.app, runway: faults.runway, storage: faults.storage },
      // Runway's daily cap is the create429Rate fault's to play: a real cap would end the run.
      runway: { generationMs: CHAOS_GENERATION_MS, concurrency: concurrencyLimit, dailyLimit: Math.max(1_000, items.length * 10) },
      discardVideoBytes: true,
    },
    timeouts: CHAOS_TIMEOUTS,
  });
  const sandbox = runtime.sandbox;
  const leases = createLeaseWatch();
  let watchedUntilMs = started;
  try {
    if (!sandbox) throw new Error('chaos runs need demo mode (sandbox services)');
    const missing = secretsOf(runtime.deps.config).filter((secret) => !configuredSecrets.includes(secret));
    if (missing.length > 0) throw new Error(`the worker holds ${missing.length} secret(s) the capturing logger was not told about`);
    watchedUntilMs = await driveUntilFinished(runtime, sandbox, itemIds, leases, options, started);
  } finally {
    await runtime.close();
  }

  // Every credential the sandbox handed out inside a signed URL is a secret too.
  const secrets = new Set([...configuredSecrets, ...secretsOf(runtime.deps.config)]);
  for (const request of sandbox.requests()) for (const credential of urlCredentials(request.path)) secrets.add(credential);
  const scanner = createLeakScanner(secrets);
  lines.forEach((line, index) => scanner.scan(line, `log line ${index + 1}`));
  for (const report of sandbox.app.reports()) {
    if (report.error_message !== null) scanner.scan(report.error_message, `error_message of a report for ${report.item_id}`);
  }
  for (const item of sandbox.app.items()) {
    if (item.error_message !== null) scanner.scan(item.error_message, `error_message of item ${item.item_id}`);
  }

  if (options.logFile) {
    await mkdir(path.dirname(options.logFile), { recursive: true });
    await writeFile(options.logFile, lines.join(''));
  }

  const stats = runtime.qstash?.stats();
  const { config } = runtime.deps;
  const requests = sandbox.requests();
  return figuresOf({
    seed: options.seed,
    itemIds,
    workItems: sandbox.app.items(),
    reports: sandbox.app.reports(),
    releases: releasesIn(requests),
    leaseSamples: leases.samples(),
    watchedUntilMs,
    tasks: sandbox.runway.tasks(),
    taskPolls: taskRequestsIn(requests, 'GET'),
    taskDeletes: taskRequestsIn(requests, 'DELETE'),
    throttledAtOnceMax: sandbox.runway.maxThrottledAtOnce(),
    videos: sandbox.storage.objects().filter((object) => object.bucket === 'generated-videos'),
    uploadAttempts: (itemId) => sandbox.storage.uploadAttempts('generated-videos', `videos/${itemId}.mp4`),
    outputSha256: (taskId) => sandbox.runway.outputSha256(taskId),
    htmlPageSha256: createHash('sha256').update(CDN_ERROR_PAGE).digest('hex'),
    settings: {
      regenerations: config.runwayRegenerations,
      concurrencyLimit,
      leaseMs: config.leaseDurationSeconds * 1000,
      generationMs: CHAOS_GENERATION_MS,
      runwayTimeoutMs: config.runwayTimeoutSeconds * 1000,
      stallThresholdMs: stallThresholdMs({
        leaseSeconds: config.leaseDurationSeconds,
        pollMaxSeconds: config.runwayPollMaxSeconds,
        heartbeatIntervalSeconds: config.heartbeatIntervalSeconds,
        timeScale,
        deliveryJitterMs: faults.qstash.reorderJitterMs ?? 0,
      }),
    },
    qstash: { published: stats?.published ?? 0, deliveries: stats?.deliveries ?? 0, duplicatesInjected: stats?.duplicatesInjected ?? 0 },
    logLines: lines.length,
    leaks: scanner.leaks(),
    wallMs: Date.now() - started,
    ...(options.logFile ? { logFile: options.logFile } : {}),
  });
}
