import { routeStoreHost } from '../../sandbox/blob-fake.js';
import { z } from 'zod';
import { startWorkerRuntime, type WorkerRuntime } from '../../server/runtime.js';
import { serveCommands, type CpuSample, type RunRecord, type Settled, type WorkerStarted } from './drain-ipc.js';

/**
 * The drain benchmark's worker process: the self-hosted worker (three handlers on one port,
 * embedded local QStash) talking to the services process over loopback, its ledger in the
 * Blob fake there. Nothing else runs here, so `process.cpuUsage()` (user + system, every
 * thread, sharp's included) is the worker's cost.
 *
 * Cron: the runtime's own ticker fires once at start-up, before the drain's t0 could be
 * taken, so it is off and this process plays it instead: the first cron-poll run at t0,
 * then one every LOCAL_CRON_SECONDS, skipped while the previous one still runs, as the
 * runtime's ticker does.
 */

const startArgsSchema = z.object({
  env: z.record(z.string(), z.string()),
  qstashScale: z.number().positive(),
  blobApiUrl: z.string(),
  blobStoreHost: z.string(),
  blobOrigin: z.string(),
});
const settleArgsSchema = z.object({ timeoutMs: z.number().positive() });

/** The first fields of a cron-poll summary: all the benchmark reads of one. */
const runSummarySchema = z.object({ leased: z.number(), stopped: z.string() });

interface CronTick {
  readonly startMs: number;
  durationMs: number;
  leased: number | null;
  stopped: string | null;
}

interface State {
  readonly runtime: WorkerRuntime;
  t0: number;
  cpuAtStart: NodeJS.CpuUsage | undefined;
  ticker: NodeJS.Timeout | undefined;
  tickInFlight: Promise<void> | undefined;
  readonly ticks: CronTick[];
}

let state: State | undefined;

const current = (): State => {
  if (state === undefined) throw new Error('worker is not started');
  return state;
};


/**
 * Loads what the worker loads lazily on first use (sharp, the Blob SDK, the QStash SDK), so
 * that one-off module loading is not counted as per-video CPU.
 */
async function prewarm(): Promise<void> {
  await import('sharp');
  await import('../../lib/ledger/blob-ledger.js');
  await import('@upstash/qstash');
}

async function start(raw: unknown): Promise<WorkerStarted> {
  if (state !== undefined) throw new Error('worker already started');
  const args = startArgsSchema.parse(raw);
  process.env.VERCEL_BLOB_API_URL = args.blobApiUrl;
  // The Blob SDK reads from `https://<store>.private.blob.vercel-storage.com`, a host that
  // cannot be configured: its requests go to the fake in the services process.
  routeStoreHost(args.blobStoreHost, args.blobOrigin);
  await prewarm();
  const runtime = await startWorkerRuntime({ env: args.env, port: 0, qstashTimeScale: args.qstashScale, ticker: false });
  state = { runtime, t0: 0, cpuAtStart: undefined, ticker: undefined, tickInFlight: undefined, ticks: [] };
  const { config } = runtime.deps;
  return {
    url: runtime.url,
    maxTasksPerRun: config.maxTasksPerRun,
    localCronSeconds: config.localCronSeconds,
    logLevel: config.logLevel,
    runwayPollMinSeconds: config.runwayPollMinSeconds,
    backpressure: runtime.deps.backpressure,
  };
}

/** One cron-poll run through HTTP, as Vercel Cron calls it; skipped while one is still running. */
function tick(s: State): void {
  if (s.tickInFlight !== undefined) return;
  const record: CronTick = { startMs: Date.now(), durationMs: 0, leased: null, stopped: null };
  s.ticks.push(record);
  s.tickInFlight = s.runtime
    .runCron()
    .then((summary) => {
      const parsed = runSummarySchema.safeParse(summary);
      if (parsed.success) {
        record.leased = parsed.data.leased;
        record.stopped = parsed.data.stopped;
      }
    })
    .catch((error: unknown) => {
      record.stopped = `error: ${String(error)}`;
    })
    .finally(() => {
      record.durationMs = Date.now() - record.startMs;
      s.tickInFlight = undefined;
    });
}

/** t0: the CPU baseline, then the first cron run; the ticker and the drain continuations take over. */
function drain(): Promise<{ t0: number }> {
  const s = current();
  if (s.cpuAtStart !== undefined) throw new Error('drain already started');
  s.cpuAtStart = process.cpuUsage();
  s.t0 = Date.now();
  tick(s);
  s.ticker = setInterval(() => tick(s), s.runtime.deps.config.localCronSeconds * 1000);
  return Promise.resolve({ t0: s.t0 });
}

function cpu(): CpuSample {
  const s = current();
  const used = process.cpuUsage(s.cpuAtStart);
  return { atMs: Date.now(), userMs: used.user / 1000, systemMs: used.system / 1000 };
}

/** Stops the ticker and reads the CPU used since t0. */
function finish(): Promise<CpuSample> {
  const s = current();
  const sample = cpu();
  clearInterval(s.ticker);
  s.ticker = undefined;
  return Promise.resolve(sample);
}

/** The fields a drain run's answer starts with; QStash keeps only the first 1 KB of it. */
function parseRunAnswer(body: string): { leased: number | null; stopped: string | null } {
  const leased = /"leased":(\d+)/.exec(body)?.[1];
  const stopped = /"stopped":"([a-z-]+)"/.exec(body)?.[1];
  return { leased: leased === undefined ? null : Number(leased), stopped: stopped ?? null };
}

/** Every cron-poll run since t0, cron ticks and delivered drain continuations, by start time. */
function runsOf(s: State): RunRecord[] {
  const cronRuns: RunRecord[] = s.ticks.map((t) => ({
    kind: 'cron',
    startS: (t.startMs - s.t0) / 1000,
    durationMs: t.durationMs,
    leased: t.leased,
    stopped: t.stopped,
  }));
  const drainRuns: RunRecord[] = (s.runtime.qstash?.messages() ?? [])
    .filter((message) => new URL(message.url).pathname === '/api/cron-poll')
    .flatMap((message) =>
      message.attempts.map((attempt) => ({
        kind: 'drain' as const,
        startS: (attempt.at - s.t0) / 1000,
        durationMs: attempt.durationMs,
        ...parseRunAnswer(attempt.responseBody),
      })),
    );
  return [...cronRuns, ...drainRuns].sort((a, b) => a.startS - b.startS);
}

/** Waits until the embedded QStash has nothing scheduled or in flight (or the timeout), then reports its figures. */
async function settle(raw: unknown): Promise<Settled> {
  const { timeoutMs } = settleArgsSchema.parse(raw);
  const s = current();
  await s.tickInFlight;
  const qstash = s.runtime.qstash;
  if (qstash === undefined) throw new Error('the worker has no embedded QStash');
  let timer: NodeJS.Timeout | undefined;
  const idle = await Promise.race([
    qstash.idle().then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  const publishedByPath: Record<string, number> = {};
  for (const message of qstash.messages()) {
    const path = new URL(message.url).pathname;
    publishedByPath[path] = (publishedByPath[path] ?? 0) + 1;
  }
  const stats = qstash.stats();
  return {
    idle,
    settledAtMs: Date.now(),
    qstash: {
      published: stats.published,
      deduplicated: stats.deduplicated,
      deliveries: stats.deliveries,
      succeeded: stats.succeeded,
      retried: stats.retried,
      failed: stats.failed,
    },
    publishedByPath,
    runs: runsOf(s),
  };
}

/** One more cron-poll run, for what a run costs with the queue empty. */
async function idleCron(): Promise<{ leased: number | null; stopped: string | null; durationMs: number }> {
  const started = Date.now();
  const summary = runSummarySchema.safeParse(await current().runtime.runCron());
  return {
    leased: summary.success ? summary.data.leased : null,
    stopped: summary.success ? summary.data.stopped : null,
    durationMs: Date.now() - started,
  };
}

async function close(): Promise<null> {
  const s = state;
  state = undefined;
  if (s !== undefined) {
    clearInterval(s.ticker);
    await s.runtime.close().catch(() => undefined);
  }
  setImmediate(() => process.exit(0));
  return null;
}

serveCommands({
  start,
  drain,
  cpu: () => Promise.resolve(cpu()),
  finish,
  settle,
  idleCron,
  close,
});
