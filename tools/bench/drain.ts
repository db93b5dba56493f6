import { mkdtempSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { parseConfig, type Config } from '../../lib/config.js';
import { nextPollDelaySeconds } from '../../lib/decide/poll-schedule.js';
import { CRON_BUDGET_MS, DRAIN_DELAY_SECONDS, LEASE_CONCURRENCY } from '../../lib/steps/cron-poll.js';
import { ADVANCED_OPERATIONS, type BlobOperation } from '../../sandbox/blob-fake.js';
import { grainyPixels, phoneJpeg, withCommentPadding } from '../../test/support/photos.js';
import {
  BENCH_KEYS,
  blobCountsSchema,
  cpuSchema,
  drainStartedSchema,
  idleRunSchema,
  killAllChildren,
  prepareCostSchema,
  progressSchema,
  servicesStartedSchema,
  settledSchema,
  startChild,
  timelineSchema,
  workerStartedSchema,
  type BlobCounts,
  type Child,
  type CpuSample,
  type PrepareCost,
  type Progress,
  type RunRecord,
  type Settled,
  type Timeline,
  type WorkerStarted,
} from './drain-ipc.js';
import { QSTASH_FREE_MESSAGES_PER_DAY } from '../cli/qstash-budget.js';
import { median, type Print } from './stats.js';

/**
 * Drain of a burst: N items (default 500) sit in the app's queue with 200 KB photos; the
 * worker starts at t0 and the benchmark ends when the app shows every item reported. Three
 * processes: this one (orchestrates and prints), the services (sandbox app, Runway and
 * storage, and the Vercel Blob fake holding the ledger; drain-services.ts) and the worker
 * (the self-hosted runtime with its embedded local QStash; drain-worker.ts), whose CPU is
 * the measured figure. The sandbox Runway makes every 2 MB video in 3 s, with no
 * concurrency limit. Photo preparation is measured apart in a fresh process
 * (drain-prepare.ts) and subtracted from the worker's CPU; one item alone through a fresh
 * copy of the same setup gives the sequential baseline.
 *
 * Targets (the issue): all reported; drain_wall_s ≤ 60; worker_cpu_ms_per_video ≤ 40
 * without photo preparation; ≥ 25× faster than the sequential baseline.
 *
 * Run: `npx tsx tools/bench/drain.ts [--items 500] [--leases-per-run 10] [--qstash-scale 1]
 * [--cron-seconds 60] [--deadline-s 900] [--worker-cpu-prof <dir>] [--log-level warn]`.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERVICES_CHILD = fileURLToPath(new URL('./drain-services.ts', import.meta.url));
const WORKER_CHILD = fileURLToPath(new URL('./drain-worker.ts', import.meta.url));
const PREPARE_CHILD = fileURLToPath(new URL('./drain-prepare.ts', import.meta.url));

const GENERATION_MS = 3_000;
const OUTPUT_BYTES = 2_000_000;
const PHOTO_BYTES = 200_000;
/** 1280×960 with grain 8 is about 190 KB of image data at quality 90, like a downsized phone photo. */
const PHOTO_SIZE = { width: 1280, height: 960, grain: 8, quality: 90 } as const;
/** Vercel Cron's schedule for cron-poll (vercel.json: `* * * * *`). */
const VERCEL_CRON_SECONDS = 60;
/** The worker's LOG_LEVEL unless `--log-level` says otherwise: production's default (about 5 lines a video). */
const DEFAULT_LOG_LEVEL = 'info';
const PROGRESS_INTERVAL_MS = 100;
const CPU_SAMPLE_INTERVAL_MS = 1_000;
const STATUS_LINE_INTERVAL_MS = 10_000;
/** Longest wait, after the last report, for the worker's QStash to run out of messages. */
const SETTLE_TIMEOUT_MS = 120_000;
const PREPARE_WARMUPS = 10;
const PREPARE_ROUNDS = 200;
/** The old always-on worker: one video at a time, polling Runway every 5 s (the issue's figure for 3 s generations). */
const OLD_WORKER_SECONDS_PER_VIDEO = 8.5;
const TARGETS = { wallS: 60, cpuMsPerVideo: 40, speedup: 25 } as const;

export interface DrainOptions {
  /** Items queued at t0 (default 500). */
  readonly items: number;
  /** MAX_TASKS_PER_RUN (default: lib/config.ts's default). */
  readonly leasesPerRun: number;
  /** The embedded QStash's time scale: its delays are multiplied by this (1 = real time). */
  readonly qstashScale: number;
  /** Seconds between cron-poll runs from t0 (LOCAL_CRON_SECONDS; default Vercel Cron's 60). */
  readonly cronSeconds: number;
  /** A drain still short of its reports after this long ends with the figures it has. */
  readonly deadlineSeconds: number;
  /**
   * Write a V8 CPU profile of the worker during the main drain into this directory (for
   * where its CPU goes; profiling slows the worker, so its figures are not comparable).
   */
  readonly workerCpuProfDir?: string | undefined;
  /** Why `leasesPerRun` differs from the default, printed with the settings. */
  readonly leasesReason?: string | undefined;
  /** The worker's LOG_LEVEL (default info, as in production). */
  readonly logLevel: string;
}

/** What lib/config.ts gives when nothing is set: the production defaults. */
function configDefaults(): Config {
  return parseConfig({
    NEXT_API_URL: 'https://app.invalid/api',
    WORKER_API_KEY: 'x',
    RUNWAY_API_KEY: 'x',
    QSTASH_TOKEN: 'x',
    QSTASH_CURRENT_SIGNING_KEY: 'x',
    QSTASH_NEXT_SIGNING_KEY: 'x',
    WORKER_BASE_URL: 'https://worker.invalid',
  });
}

function defaultOptions(): DrainOptions {
  return {
    items: 500,
    leasesPerRun: configDefaults().maxTasksPerRun,
    logLevel: DEFAULT_LOG_LEVEL,
    qstashScale: 1,
    cronSeconds: VERCEL_CRON_SECONDS,
    deadlineSeconds: 900,
  };
}

/** Seconds from a task's create to its first poll at this time scale (the schedule of lib/steps/chain.ts firstPollDelay). */
function firstPollSeconds(config: Config, qstashScale: number): number {
  const delay = nextPollDelaySeconds({
    model: config.runwayModel,
    status: 'PENDING',
    progress: undefined,
    elapsedSeconds: 0,
    polls: 0,
    minSeconds: config.runwayPollMinSeconds,
    maxSeconds: config.runwayPollMaxSeconds,
  });
  return delay * qstashScale;
}

// --- The photo ---------------------------------------------------------------------------

interface BenchPhoto {
  readonly file: string;
  readonly bytes: number;
  readonly imageBytes: number;
}

/** A real 1280×960 phone JPEG (EXIF and GPS), padded with a COM segment to 200 KB, written to `dir`. */
async function writePhoto(dir: string): Promise<BenchPhoto> {
  const { width, height, grain, quality } = PHOTO_SIZE;
  const jpeg = await phoneJpeg(grainyPixels(width, height, grain), width, height, { quality });
  if (jpeg.length > PHOTO_BYTES) throw new Error(`the bench photo is ${jpeg.length} bytes before padding, over ${PHOTO_BYTES}`);
  const padded = jpeg.length === PHOTO_BYTES ? jpeg : withCommentPadding(jpeg, PHOTO_BYTES - jpeg.length);
  const file = path.join(dir, 'photo.jpg');
  await writeFile(file, padded);
  return { file, bytes: padded.length, imageBytes: jpeg.length };
}

// --- One drain ---------------------------------------------------------------------------

interface IdleRun {
  readonly blobOps: number;
  readonly stopped: string | null;
  readonly durationMs: number;
}

interface DrainRun {
  readonly items: number;
  readonly worker: WorkerStarted;
  readonly t0: number;
  readonly progress: Progress;
  /** t0 → the last applied report, or → the deadline when not all were reported. */
  readonly wallS: number;
  readonly cpu: CpuSample;
  readonly cpuSamples: readonly CpuSample[];
  readonly settled: Settled;
  /** Videos reported once the worker's QStash was idle: what the QStash and Blob counts cover. */
  readonly videosAtSettle: number;
  readonly blobOps: BlobCounts;
  readonly timeline: Timeline;
  readonly idleRun: IdleRun | undefined;
  readonly workerLogLines: number;
  readonly workerLogTail: readonly string[];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function blobDiff(after: BlobCounts, before: BlobCounts): BlobCounts {
  const diff: BlobCounts = {};
  for (const [operation, count] of Object.entries(after)) diff[operation] = count - (before[operation] ?? 0);
  return diff;
}

const totalOps = (counts: BlobCounts): number => Object.values(counts).reduce((sum, count) => sum + count, 0);

/** The worker's environment: the services' URLs and keys, the Blob fake's token, the settings. */
function workerEnv(services: z.infer<typeof servicesStartedSchema>, options: DrainOptions, ledgerDir: string): Record<string, string> {
  return {
    NEXT_API_URL: services.nextApiUrl,
    WORKER_API_KEY: BENCH_KEYS.worker,
    RUNWAY_API_KEY: BENCH_KEYS.runway,
    RUNWAY_API_URL: services.runwayApiUrl,
    BLOB_READ_WRITE_TOKEN: services.blobToken,
    // Unused while the Blob token is set; kept inside the run's temp dir all the same.
    LEDGER_DIR: ledgerDir,
    CRON_SECRET: 'bench',
    LOG_LEVEL: options.logLevel,
    MAX_TASKS_PER_RUN: String(options.leasesPerRun),
    LOCAL_CRON_SECONDS: String(options.cronSeconds),
  };
}

/**
 * Polls the app until every item is reported (or the deadline), sampling the worker's CPU
 * once a second and writing a status line to stderr now and then.
 */
async function waitForReports(services: Child, worker: Child, items: number, t0: number, options: DrainOptions) {
  const deadline = t0 + options.deadlineSeconds * 1000;
  const cpuSamples: CpuSample[] = [];
  let lastSample = t0;
  let lastStatus = t0;
  for (;;) {
    const progress = await services.call('progress', null, progressSchema);
    const now = Date.now();
    if (progress.reported >= items || now > deadline) return { progress, cpuSamples };
    if (now - lastSample >= CPU_SAMPLE_INTERVAL_MS) {
      cpuSamples.push(await worker.call('cpu', null, cpuSchema));
      lastSample = now;
    }
    if (now - lastStatus >= STATUS_LINE_INTERVAL_MS) {
      process.stderr.write(`drain: ${progress.reported}/${items} reported at +${((now - t0) / 1000).toFixed(0)} s\n`);
      lastStatus = now;
    }
    await sleep(PROGRESS_INTERVAL_MS);
  }
}

/** Blob operations of one more cron-poll run with the queue empty. */
async function measureIdleRun(services: Child, worker: Child): Promise<IdleRun> {
  const before = await services.call('blobCounts', null, blobCountsSchema);
  const run = await worker.call('idleCron', null, idleRunSchema);
  const after = await services.call('blobCounts', null, blobCountsSchema);
  return { blobOps: totalOps(blobDiff(after, before)), stopped: run.stopped, durationMs: run.durationMs };
}

/**
 * Fresh services and worker, `items` queued, drained from t0 until all are reported. The
 * main drain also measures an idle cron run, and is the one profiled when asked.
 */
async function drainOnce(tmp: string, photo: BenchPhoto, items: number, options: DrainOptions, main: boolean): Promise<DrainRun> {
  const runDir = path.join(tmp, `run-${items}`);
  const services = startChild(SERVICES_CHILD, ROOT);
  const profile = main && options.workerCpuProfDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(options.workerCpuProfDir)}`] : [];
  const worker = startChild(WORKER_CHILD, ROOT, profile);
  try {
    const started = await services.call(
      'start',
      { dataDir: path.join(runDir, 'sandbox'), photoFile: photo.file, items, generationMs: GENERATION_MS, outputBytes: OUTPUT_BYTES },
      servicesStartedSchema,
    );
    const workerStarted = await worker.call(
      'start',
      {
        env: workerEnv(started, options, path.join(runDir, 'ledger')),
        qstashScale: options.qstashScale,
        blobApiUrl: started.blobApiUrl,
        blobStoreHost: started.blobStoreHost,
        blobOrigin: started.blobOrigin,
      },
      workerStartedSchema,
    );
    const blobBefore = await services.call('blobCounts', null, blobCountsSchema);
    const { t0 } = await worker.call('drain', null, drainStartedSchema);
    const { progress, cpuSamples } = await waitForReports(services, worker, items, t0, options);
    const cpu = await worker.call('finish', null, cpuSchema);
    const complete = progress.reported >= items && progress.lastReportAt !== null;
    const wallS = ((complete ? (progress.lastReportAt ?? cpu.atMs) : cpu.atMs) - t0) / 1000;
    const settled = await worker.call('settle', { timeoutMs: SETTLE_TIMEOUT_MS }, settledSchema);
    const blobOps = blobDiff(await services.call('blobCounts', null, blobCountsSchema), blobBefore);
    const { completed: videosAtSettle } = await services.call('progress', null, progressSchema);
    const timeline = await services.call('timeline', { t0 }, timelineSchema);
    // With items left in the queue the extra run would lease, not idle.
    const idle = main && complete ? await measureIdleRun(services, worker) : undefined;
    const log = worker.output();
    return {
      items,
      worker: workerStarted,
      t0,
      progress,
      wallS,
      cpu,
      cpuSamples,
      settled,
      videosAtSettle,
      blobOps,
      timeline,
      idleRun: idle,
      workerLogLines: log.lines,
      workerLogTail: log.tail,
    };
  } finally {
    await Promise.all([worker.stop(), services.stop()]);
    await rm(runDir, { recursive: true, force: true });
  }
}

async function measurePhotoPreparation(photo: BenchPhoto, model: Config['runwayModel']): Promise<PrepareCost> {
  const child = startChild(PREPARE_CHILD, ROOT);
  try {
    return await child.call('measure', { photoFile: photo.file, model, warmups: PREPARE_WARMUPS, rounds: PREPARE_ROUNDS }, prepareCostSchema);
  } finally {
    await child.stop();
  }
}

// --- Printing ----------------------------------------------------------------------------

const fixed = (value: number | null | undefined, digits = 2): string => (value === null || value === undefined ? 'none' : value.toFixed(digits));

function timeCompressionText(scale: number): string {
  if (scale === 1) return 'none: the local QStash runs in real time (scale 1), every delay as in production';
  return (
    `local QStash delays ×${scale} (drain continuation, poll and retry delays): to show how much of the wall time is ` +
    `waiting on QStash delays rather than work. Not scaled: Runway's ${GENERATION_MS / 1000} s generations, the cron ` +
    `interval, and the 5 s real-clock bucket of the drain continuation's deduplication id (lib/steps/cron-poll.ts), so a ` +
    'continuation published less than 5 s after the previous one may be dropped as a duplicate'
  );
}

function printSettings(print: Print, options: DrainOptions, photo: BenchPhoto, config: Config): void {
  const firstPoll = firstPollSeconds(config, options.qstashScale);
  print('drain_settings_items', options.items);
  print(
    'drain_settings_photo',
    `real ${PHOTO_SIZE.width}x${PHOTO_SIZE.height} phone JPEG (grainy gradient, quality ${PHOTO_SIZE.quality}, EXIF + GPS), ` +
      `${photo.imageBytes} bytes of image data padded with a COM segment to ${photo.bytes} bytes; same bytes, own storage path per item`,
  );
  print(
    'drain_settings_runway',
    `sandbox, ${GENERATION_MS / 1000} s per task, ${OUTPUT_BYTES} byte videos, no concurrency limit (organization reports 1000 per model), model ${config.runwayModel} 5 s`,
  );
  print('drain_settings_storage', 'sandbox storage keeps photos and videos on disk in a temp dir (removed after)');
  print(
    'drain_settings_leases_per_run',
    `${options.leasesPerRun} (MAX_TASKS_PER_RUN; default ${configDefaults().maxTasksPerRun}), ${LEASE_CONCURRENCY} at a time (LEASE_CONCURRENCY)` +
      (options.leasesReason === undefined ? '' : `: ${options.leasesReason}`),
  );
  print('drain_settings_drain_delay', `DRAIN_DELAY_SECONDS ${DRAIN_DELAY_SECONDS} → ${fixed(DRAIN_DELAY_SECONDS * options.qstashScale)} s real`);
  print(
    'drain_settings_cron',
    `a cron-poll run at t0, then every ${options.cronSeconds} s (LOCAL_CRON_SECONDS; Vercel Cron: ${VERCEL_CRON_SECONDS} s), ` +
      `ticked in the worker process (the runtime's own ticker would fire at start-up, before t0); CRON_BUDGET_MS ${CRON_BUDGET_MS}`,
  );
  print('drain_settings_qstash_scale', options.qstashScale);
  print('drain_settings_time_compression', timeCompressionText(options.qstashScale));
  print('drain_settings_first_poll', `${fixed(firstPoll)} s after the create (RUNWAY_POLL_MIN_SECONDS ${config.runwayPollMinSeconds}, a third of ${config.runwayModel}'s typical time, × scale)`);
  print('drain_settings_log_level', `${options.logLevel} (written to a pipe, as on Vercel)`);
  print('drain_settings_ledger', 'Vercel Blob ledger: the Blob fake in the services process, the @vercel/blob SDK in the worker');
  print(
    'drain_settings_processes',
    `orchestrator + services child + worker child on ${cpus().length} CPUs; worker CPU = process.cpuUsage() user+sys from t0 to all reported; sharp, Blob and QStash SDKs loaded before t0`,
  );
  if (options.workerCpuProfDir !== undefined) {
    print('drain_settings_worker_cpu_prof', `${path.resolve(options.workerCpuProfDir)} (V8 profile of the main drain's worker; profiling slows it: its figures are not comparable)`);
  }
}

/** Seconds of the worker's CPU up to `atS` after t0, from the once-a-second samples. */
function cpuMsUntil(samples: readonly CpuSample[], t0: number, atS: number | null): number | undefined {
  if (atS === null) return undefined;
  const sample = samples.find((s) => s.atMs >= t0 + atS * 1000);
  return sample === undefined ? undefined : sample.userMs + sample.systemMs;
}

function printRuns(print: Print, runs: readonly RunRecord[], prefix: string): void {
  const cron = runs.filter((run) => run.kind === 'cron');
  const drains = runs.filter((run) => run.kind === 'drain');
  const stops = new Map<string, number>();
  for (const run of runs) stops.set(run.stopped ?? 'unknown', (stops.get(run.stopped ?? 'unknown') ?? 0) + 1);
  const leasing = runs.filter((run) => (run.leased ?? 0) > 0);
  const gaps = runs.slice(1).map((run, i) => run.startS - (runs[i]?.startS ?? 0) - (runs[i]?.durationMs ?? 0) / 1000);
  print(`${prefix}_cron_runs`, cron.length);
  print(`${prefix}_drain_continuation_runs`, drains.length);
  print(`${prefix}_runs_stopped`, [...stops].map(([reason, count]) => `${reason} ${count}`).join(', '));
  print(`${prefix}_runs_leasing`, leasing.length);
  print(`${prefix}_run_duration_median_ms`, median(runs.map((run) => run.durationMs)), 'ms');
  print(`${prefix}_run_gap_median_s`, median(gaps), 's');
  print(
    `${prefix}_runs_timeline`,
    runs.map((run) => `${run.kind === 'cron' ? 'c' : 'd'}+${run.startS.toFixed(1)}/${(run.durationMs / 1000).toFixed(1)}s/${run.leased ?? '?'}`).join(' '),
  );
}

function printDrain(print: Print, run: DrainRun, prepare: PrepareCost, options: DrainOptions): void {
  const videos = run.progress.completed;
  const perVideo = (value: number): number => (videos > 0 ? value / videos : Number.NaN);
  // QStash and Blob counts run on until the worker's QStash is idle, over the videos reported by then.
  const perSettledVideo = (value: number): number => (run.videosAtSettle > 0 ? value / run.videosAtSettle : Number.NaN);
  const cpuTotalMs = run.cpu.userMs + run.cpu.systemMs;
  const cpuPerVideo = perVideo(cpuTotalMs);
  const ops = (kinds: readonly string[]): number => kinds.reduce((sum, kind) => sum + (run.blobOps[kind] ?? 0), 0);
  const simple: readonly BlobOperation[] = ['get', 'head'];
  const t = run.timeline;

  print('drain_completed', `${run.progress.completed}/${run.items}`);
  print('drain_failed', run.progress.failed);
  print('drain_wall_s', run.wallS, 's');
  print('videos_per_s', videos / run.wallS, 'videos/s');
  print('worker_cpu_ms_per_video_total', cpuPerVideo, 'ms');
  print('photo_prepare_cpu_ms_per_video', prepare.cpuMsPerCall, 'ms');
  print('worker_cpu_ms_per_video', cpuPerVideo - prepare.cpuMsPerCall, 'ms');
  if (run.videosAtSettle !== videos) {
    print('drain_videos_counted', `CPU over the ${videos} videos reported by the deadline; QStash and Blob counts over the ${run.videosAtSettle} reported once the worker's QStash was idle`);
  }
  print('qstash_messages_per_video', perSettledVideo(run.settled.qstash.published), 'published');
  print('qstash_deliveries_per_video', perSettledVideo(run.settled.qstash.deliveries), 'delivered');
  print(
    'qstash_published_by_path',
    Object.entries(run.settled.publishedByPath)
      .map(([route, count]) => `${route} ${count}`)
      .join(', '),
  );
  print('qstash_deduplicated', run.settled.qstash.deduplicated);
  print('qstash_retried', run.settled.qstash.retried);
  print('blob_advanced_ops_per_video', perSettledVideo(ops(ADVANCED_OPERATIONS)), 'put/copy/list');
  print('blob_simple_ops_per_video', perSettledVideo(ops(simple)), 'get/head');
  print('blob_del_per_video', perSettledVideo(ops(['del'])), 'del');
  print(
    'blob_ops_total',
    Object.entries(run.blobOps)
      .filter(([, count]) => count > 0)
      .map(([kind, count]) => `${kind} ${count}`)
      .join(', '),
  );
  if (run.idleRun) print('blob_ops_per_idle_cron_run', run.idleRun.blobOps, `ops (run stopped: ${run.idleRun.stopped ?? '?'}, ${run.idleRun.durationMs} ms)`);
  else print('blob_ops_per_idle_cron_run', 'not measured: the drain did not finish, so the queue is not empty');
  printQuotas(print, {
    advanced: perSettledVideo(ops(ADVANCED_OPERATIONS)),
    simple: perSettledVideo(ops(simple)),
    deliveries: perSettledVideo(run.settled.qstash.deliveries),
    idleBlobOps: run.idleRun?.blobOps,
  });

  // Where the time goes.
  print('drain_runway_creates_first_last_s', `${fixed(t.runwayCreates.firstS)} .. ${fixed(t.runwayCreates.lastS)} (${t.runwayCreates.count} creates)`);
  print('drain_runway_polls_first_last_s', `${fixed(t.runwayPolls.firstS)} .. ${fixed(t.runwayPolls.lastS)} (${t.runwayPolls.count} polls)`);
  print('drain_video_uploads_first_last_s', `${fixed(t.videoUploads.firstS)} .. ${fixed(t.videoUploads.lastS)} (${t.videoUploads.count} uploads)`);
  print('drain_reports_first_last_s', `${fixed(t.reports.firstS)} .. ${fixed(t.reports.lastS)} (${t.reports.count} reports)`);
  print('drain_next_task_calls', t.nextTaskCalls.count);
  print('drain_heartbeats', t.heartbeats.count);
  print('drain_max_runway_tasks_active', t.maxRunwayTasksActive);
  const leasingS = t.runwayCreates.lastS === null || t.runwayCreates.firstS === null ? null : t.runwayCreates.lastS - t.runwayCreates.firstS;
  if (leasingS !== null && leasingS > 0) print('drain_creates_per_s', t.runwayCreates.count / leasingS, 'creates/s (first to last create)');
  printRuns(print, run.settled.runs, 'drain');
  print('drain_settle_s', (run.settled.settledAtMs - run.t0) / 1000 - run.wallS, `s after the last report until the worker's QStash was ${run.settled.idle ? 'idle' : 'still busy (timeout)'}`);

  // CPU split.
  print('worker_cpu_user_ms', run.cpu.userMs, 'ms');
  print('worker_cpu_system_ms', run.cpu.systemMs, 'ms');
  print('worker_cpu_cores_busy', cpuTotalMs / 1000 / run.wallS, 'cores on average');
  print('worker_cpu_photo_prepare_share', (prepare.cpuMsPerCall * videos) / cpuTotalMs, 'of the total (estimate: per-call cost × videos)');
  const untilLastCreate = cpuMsUntil(run.cpuSamples, run.t0, t.runwayCreates.lastS);
  if (untilLastCreate !== undefined) {
    print('worker_cpu_ms_until_last_create', untilLastCreate, 'ms (leasing, photo, create)');
    print('worker_cpu_ms_after_last_create', cpuTotalMs - untilLastCreate, 'ms (polls, uploads, reports left)');
  }
  print('worker_log_lines', run.workerLogLines, `at level ${options.logLevel}`);
  if (run.progress.failed > 0) process.stderr.write(`worker log, last lines:\n${run.workerLogTail.join('\n')}\n`);
}

function printBaselines(print: Print, drain: DrainRun, single: DrainRun): void {
  const latencyS = single.progress.completed === 1 ? single.wallS : Number.NaN;
  const t = single.timeline;
  print('one_item_latency_s', latencyS, `s (create +${fixed(t.runwayCreates.firstS)} s, first poll +${fixed(t.runwayPolls.firstS)} s, upload +${fixed(t.videoUploads.firstS)} s)`);
  const baselineS = drain.items * latencyS;
  print('sequential_baseline_wall_s', baselineS, `s (${drain.items} × one_item_latency_s)`);
  print('drain_speedup_x', baselineS / drain.wallS, '× (sequential_baseline_wall_s ÷ drain_wall_s)');
  print('old_worker_baseline_wall_s', drain.items * OLD_WORKER_SECONDS_PER_VIDEO, `s (for reference: the old always-on worker, one video at a time, ≈ ${OLD_WORKER_SECONDS_PER_VIDEO} s each)`);
  print('drain_speedup_vs_old_worker_x', (drain.items * OLD_WORKER_SECONDS_PER_VIDEO) / drain.wallS, '×');
}

/**
 * The free quotas a video spends (contract §3 and §5): Vercel Blob on Hobby includes about
 * 2,000 advanced and 10,000 simple operations a month; QStash's free plan 1,000 messages a
 * day, every delivery counted. cron-poll itself is driven by Vercel Cron (no QStash message).
 */
const FREE_QUOTAS = { blobAdvancedPerMonth: 2_000, blobSimplePerMonth: 10_000, qstashPerMonth: QSTASH_FREE_MESSAGES_PER_DAY * 30 } as const;
const QUOTA_TARGETS = { advanced: 5, simple: 6, qstash: 2.5, idleBlobOps: 0 } as const;

interface PerVideoRates {
  readonly advanced: number;
  readonly simple: number;
  readonly deliveries: number;
  readonly idleBlobOps: number | undefined;
}

function printQuotas(print: Print, rates: PerVideoRates): void {
  const videos = (quota: number, perVideo: number): string => (perVideo > 0 ? String(Math.floor(quota / perVideo)) : 'unlimited');
  print('videos_per_month_blob_advanced_free', videos(FREE_QUOTAS.blobAdvancedPerMonth, rates.advanced), `(${FREE_QUOTAS.blobAdvancedPerMonth} a month ÷ ${fixed(rates.advanced)})`);
  print('videos_per_month_blob_simple_free', videos(FREE_QUOTAS.blobSimplePerMonth, rates.simple), `(${FREE_QUOTAS.blobSimplePerMonth} a month ÷ ${fixed(rates.simple)})`);
  print('videos_per_month_qstash_free', videos(FREE_QUOTAS.qstashPerMonth, rates.deliveries), `(${QSTASH_FREE_MESSAGES_PER_DAY} a day × 30 ÷ ${fixed(rates.deliveries)})`);
  const verdict = (ok: boolean): string => (ok ? 'met' : 'missed');
  print('quota_target_blob_advanced', `${fixed(rates.advanced)} ≤ ${QUOTA_TARGETS.advanced}: ${verdict(rates.advanced <= QUOTA_TARGETS.advanced)}`);
  print('quota_target_blob_simple', `${fixed(rates.simple)} ≤ ${QUOTA_TARGETS.simple}: ${verdict(rates.simple <= QUOTA_TARGETS.simple)}`);
  print('quota_target_qstash', `${fixed(rates.deliveries)} ≤ ${QUOTA_TARGETS.qstash}: ${verdict(rates.deliveries <= QUOTA_TARGETS.qstash)}`);
  print(
    'quota_target_idle_cron_run',
    rates.idleBlobOps === undefined ? 'not measured' : `${rates.idleBlobOps} = ${QUOTA_TARGETS.idleBlobOps}: ${verdict(rates.idleBlobOps === QUOTA_TARGETS.idleBlobOps)}`,
  );
}

function printTargets(print: Print, drain: DrainRun, single: DrainRun, prepare: PrepareCost): void {
  const verdict = (ok: boolean): string => (ok ? 'met' : 'missed');
  const videos = drain.progress.completed;
  const cpuMs = (drain.cpu.userMs + drain.cpu.systemMs) / videos - prepare.cpuMsPerCall;
  const speedup = (drain.items * single.wallS) / drain.wallS;
  print('drain_target_all_reported', `${drain.progress.reported}/${drain.items}: ${verdict(drain.progress.reported === drain.items)}`);
  print('drain_target_wall', `${fixed(drain.wallS)} s ≤ ${TARGETS.wallS} s: ${verdict(drain.wallS <= TARGETS.wallS)}`);
  print('drain_target_cpu', `${fixed(cpuMs)} ms ≤ ${TARGETS.cpuMsPerVideo} ms: ${verdict(cpuMs <= TARGETS.cpuMsPerVideo)}`);
  print('drain_target_speedup', `${fixed(speedup, 1)}× ≥ ${TARGETS.speedup}×: ${verdict(speedup >= TARGETS.speedup)}`);
}

// --- Entry points ------------------------------------------------------------------------

/** Kills the children and removes the temp dir when the benchmark is interrupted. */
function onSignals(tmp: string): () => void {
  const handler = (signal: NodeJS.Signals): void => {
    killAllChildren();
    rmSync(tmp, { recursive: true, force: true });
    process.stderr.write(`drain benchmark interrupted (${signal})\n`);
    process.exit(130);
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

export async function benchDrain(print: Print, overrides: Partial<DrainOptions> = {}): Promise<void> {
  const options: DrainOptions = { ...defaultOptions(), ...overrides };
  const tmp = mkdtempSync(path.join(tmpdir(), 'bench-drain-'));
  const removeSignalHandlers = onSignals(tmp);
  try {
    const photo = await writePhoto(tmp);
    const config = configDefaults();
    printSettings(print, options, photo, config);
    const drain = await drainOnce(tmp, photo, options.items, options, true);
    checkWorkerSettings(drain.worker, options);
    const single = await drainOnce(tmp, photo, 1, options, false);
    const prepare = await measurePhotoPreparation(photo, config.runwayModel);
    print('photo_prepare_settings', `preparePhoto(photo, '${config.runwayModel}') ×${PREPARE_ROUNDS} after ${PREPARE_WARMUPS} warm-ups in a fresh process: sent ${prepare.sent.width}x${prepare.sent.height} ${prepare.sent.bytes} bytes, ratio ${prepare.ratio}, ${fixed(prepare.wallMsPerCall)} ms wall per call`);
    printDrain(print, drain, prepare, options);
    printBaselines(print, drain, single);
    printTargets(print, drain, single, prepare);
  } catch (error) {
    killAllChildren();
    throw error;
  } finally {
    removeSignalHandlers();
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The worker must have run with the settings printed. */
function checkWorkerSettings(worker: WorkerStarted, options: DrainOptions): void {
  const problems: string[] = [];
  if (worker.maxTasksPerRun !== options.leasesPerRun) problems.push(`MAX_TASKS_PER_RUN ${worker.maxTasksPerRun}`);
  if (worker.localCronSeconds !== options.cronSeconds) problems.push(`LOCAL_CRON_SECONDS ${worker.localCronSeconds}`);
  if (worker.logLevel !== options.logLevel) problems.push(`LOG_LEVEL ${worker.logLevel}`);
  if (!worker.backpressure) problems.push('backpressure off');
  if (problems.length > 0) throw new Error(`the worker ran with other settings than printed: ${problems.join(', ')}`);
}

const cliSchema = z.object({
  items: z.coerce.number().int().positive().optional(),
  'leases-per-run': z.coerce.number().int().positive().optional(),
  'qstash-scale': z.coerce.number().positive().optional(),
  'cron-seconds': z.coerce.number().int().positive().optional(),
  'deadline-s': z.coerce.number().positive().optional(),
  'worker-cpu-prof': z.string().min(1).optional(),
  'log-level': z.enum(['debug', 'info', 'warn', 'error']).optional(),
});

function optionsFromArgv(argv: readonly string[]): Partial<DrainOptions> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      items: { type: 'string' },
      'leases-per-run': { type: 'string' },
      'qstash-scale': { type: 'string' },
      'cron-seconds': { type: 'string' },
      'deadline-s': { type: 'string' },
      'worker-cpu-prof': { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  const parsed = cliSchema.parse(values);
  return {
    ...(parsed.items === undefined ? {} : { items: parsed.items }),
    ...(parsed['leases-per-run'] === undefined ? {} : { leasesPerRun: parsed['leases-per-run'] }),
    ...(parsed['qstash-scale'] === undefined ? {} : { qstashScale: parsed['qstash-scale'] }),
    ...(parsed['cron-seconds'] === undefined ? {} : { cronSeconds: parsed['cron-seconds'] }),
    ...(parsed['deadline-s'] === undefined ? {} : { deadlineSeconds: parsed['deadline-s'] }),
    ...(parsed['worker-cpu-prof'] === undefined ? {} : { workerCpuProfDir: parsed['worker-cpu-prof'] }),
    ...(parsed['log-level'] === undefined ? {} : { logLevel: parsed['log-level'] }),
  };
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  await benchDrain((name, value, unit = '') => {
    process.stdout.write(`${name}: ${typeof value === 'number' ? Number(value.toFixed(2)) : value}${unit ? ` ${unit}` : ''}\n`);
  }, optionsFromArgv(process.argv.slice(2)));
}
