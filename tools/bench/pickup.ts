import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { z } from 'zod';
import type { Env } from '../../lib/config.js';
import { CRON_BUDGET_MS, DRAIN_DELAY_SECONDS, LEASE_CONCURRENCY } from '../../lib/steps/cron-poll.js';
import type { LocalMessage } from '../../server/local-qstash.js';
import { startLocalRuntime, type LocalRuntime } from '../../sandbox/demo/local-runtime.js';
import type { SeedItem } from '../../sandbox/seed.js';
import { percentile, type Print } from './stats.js';

/**
 * Pickup latency of a burst: 50 items sit in the app's queue while the worker is idle; the
 * first cron run starts at t0, and each item's pickup is t0 → the moment the sandbox Runway
 * received its create. The real handlers, the local QStash in real time (drain
 * continuations wait their real 5 s) and the sandbox services; Runway has no concurrency
 * limit, so backpressure never holds a lease back. Vercel Cron is played by calling
 * cron-poll every 60 s from t0 (the local runtime's ticker is off: its 5 s loop would drain
 * faster than production can). The worker's own settings are its defaults.
 */

const ITEM_COUNT = 50;
const GENERATION_MS = 2_000;
/** Vercel Cron's per-minute schedule (vercel.json). */
const CRON_INTERVAL_MS = 60_000;
const SAMPLE_INTERVAL_MS = 50;
/** A run still short of its creates after this long ends with the figures it has. */
const RUN_DEADLINE_MS = 240_000;
/** Longest wait, after the last create, for the drain run still under way to finish and log. */
const SETTLE_MS = 30_000;

const WORKER_ENV = { CRON_SECRET: 'bench', LOG_LEVEL: 'info' } as const satisfies Env;

const runLogSchema = z.object({
  msg: z.literal('cron-poll finished'),
  time: z.number(),
  leased: z.number(),
  submitted: z.number(),
  failed: z.number(),
  stopped: z.string(),
  duration_ms: z.number(),
});
type RunLog = z.infer<typeof runLogSchema>;


export interface Trigger {
  readonly kind: 'cron' | 'drain';
  readonly atMs: number;
}

/**
 * Which call started each run: the latest trigger at or before the run's start not yet
 * taken by an earlier run. Runs in one process take turns, so a run may start a little
 * after the request that asked for it.
 */
export function labelRuns(runStartsMs: readonly number[], triggers: readonly Trigger[]): (Trigger['kind'] | 'unknown')[] {
  const pending = [...triggers].sort((a, b) => a.atMs - b.atMs);
  return runStartsMs.map((startMs) => {
    let index = -1;
    for (let i = 0; i < pending.length; i++) if ((pending[i]?.atMs ?? Number.POSITIVE_INFINITY) <= startMs + 1) index = i;
    if (index === -1) return 'unknown';
    const [taken] = pending.splice(index, 1);
    return taken?.kind ?? 'unknown';
  });
}

function burstItems(): SeedItem[] {
  return Array.from({ length: ITEM_COUNT }, (_, i) => {
    const suffix = String(i).padStart(12, '0');
    const groupId = `40000000-0000-4000-8000-${suffix}`;
    const photoId = `50000000-0000-4000-8000-${suffix}`;
    return {
      item_id: `60000000-0000-4000-8000-${suffix}`,
      group_id: groupId,
      photo_id: photoId,
      // Unique per item: the sandbox Runway's task records are matched back to items by prompt.
      prompt: `The camera slowly pushes in on photo ${i} while leaves drift across the frame.`,
      frame_num: 121,
      photo_storage_path: `${groupId}/${photoId}_original.jpg`,
      photo: 'landscape.jpg',
      expectation: 'completed',
    };
  });
}

/** The earliest Runway create per item, epoch ms (a regeneration's later create does not count). */
function createTimes(runtime: LocalRuntime, itemByPrompt: ReadonlyMap<string, SeedItem>): Map<string, number> {
  const created = new Map<string, number>();
  for (const task of runtime.sandbox?.runway.tasks() ?? []) {
    const item = itemByPrompt.get(task.promptText ?? '');
    if (item === undefined) continue;
    const atMs = Date.parse(task.createdAt);
    created.set(item.item_id, Math.min(atMs, created.get(item.item_id) ?? atMs));
  }
  return created;
}

/** Drain continuations: cron-poll messages the worker published to itself. */
function drainsOf(runtime: LocalRuntime): LocalMessage[] {
  return runtime.qstash?.messages().filter((message) => new URL(message.url).pathname === '/api/cron-poll') ?? [];
}

function runLogsOf(lines: readonly string[]): RunLog[] {
  const runs: RunLog[] = [];
  for (const line of lines) {
    const parsed = runLogSchema.safeParse(JSON.parse(line));
    if (parsed.success) runs.push(parsed.data);
  }
  return runs.sort((a, b) => a.time - a.duration_ms - (b.time - b.duration_ms));
}

const seconds = (ms: number): string => (ms / 1000).toFixed(2);

export async function benchPickup(print: Print): Promise<void> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bench-pickup-'));
  const logLines: string[] = [];
  try {
    const items = burstItems();
    const itemByPrompt = new Map(items.map((item) => [item.prompt, item]));
    const runtime = await startLocalRuntime({
      env: WORKER_ENV,
      port: 0,
      dataDir,
      items,
      log: pino({ level: 'info' }, { write: (line: string) => void logLines.push(line) }),
      qstashTimeScale: 1,
      ticker: false,
      sandbox: { runway: { generationMs: GENERATION_MS } },
    });
    const cronCalls: Trigger[] = [];
    const cronRuns: Promise<unknown>[] = [];
    let t0 = 0;
    try {
      const { config } = runtime.deps;
      print('pickup_items', ITEM_COUNT);
      print('pickup_settings_runway', `no concurrency limit (GET /v1/organization reports 1000 per model), ${GENERATION_MS / 1000} s generations`);
      print('pickup_settings_worker', `MAX_TASKS_PER_RUN ${config.maxTasksPerRun}, LEASE_CONCURRENCY ${LEASE_CONCURRENCY}, DRAIN_DELAY_SECONDS ${DRAIN_DELAY_SECONDS}, CRON_BUDGET_MS ${CRON_BUDGET_MS}, backpressure ${runtime.deps.backpressure ? 'on' : 'off'}`);
      print('pickup_settings_clock', `local QStash in real time (scale 1); cron-poll GET every ${CRON_INTERVAL_MS / 1000} s from t0 (Vercel Cron), local ticker off`);

      const cron = (): void => {
        cronCalls.push({ kind: 'cron', atMs: Date.now() });
        cronRuns.push(runtime.runCron().catch((error: unknown) => String(error)));
      };
      t0 = Date.now();
      cron();
      const timer = setInterval(cron, CRON_INTERVAL_MS);
      try {
        while (createTimes(runtime, itemByPrompt).size < ITEM_COUNT && Date.now() - t0 < RUN_DEADLINE_MS) {
          await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS));
        }
      } finally {
        clearInterval(timer);
      }
      await Promise.all(cronRuns);
      // The run that made the last create logs its summary when it ends.
      const settleBy = Date.now() + SETTLE_MS;
      while (drainsOf(runtime).some((message) => message.state === 'delivering') && Date.now() < settleBy) {
        await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS));
      }

      const created = createTimes(runtime, itemByPrompt);
      const pickups = [...created.values()].map((atMs) => (atMs - t0) / 1000);
      print('pickup_created', `${created.size}/${ITEM_COUNT}`);
      print('pickup_p50_s', percentile(pickups, 0.5), 's');
      print('pickup_p95_s', percentile(pickups, 0.95), 's');
      print('pickup_max_s', percentile(pickups, 1), 's');
      print('pickup_within_15s', `${pickups.filter((s) => s <= 15).length}/${ITEM_COUNT}`);

      const drains = drainsOf(runtime);
      const drainDeliveries: Trigger[] = drains.flatMap((message) => message.attempts.map((attempt) => ({ kind: 'drain' as const, atMs: attempt.at })));
      const runs = runLogsOf(logLines).filter((run) => run.time - run.duration_ms >= t0 - 1);
      const labels = labelRuns(runs.map((run) => run.time - run.duration_ms), [...cronCalls, ...drainDeliveries]);
      print('pickup_cron_runs', cronCalls.length);
      print('pickup_drain_continuations_published', drains.length);
      print('pickup_drain_continuations_delivered', drainDeliveries.length);
      print('pickup_runs_until_last_create', runs.filter((run) => run.time - run.duration_ms <= Math.max(...created.values())).length);
      for (const [index, run] of runs.entries()) {
        const startMs = run.time - run.duration_ms - t0;
        print(
          `pickup_run_${index + 1}`,
          `${labels[index] ?? 'unknown'} +${seconds(startMs)}..+${seconds(startMs + run.duration_ms)} s, leased ${run.leased}, submitted ${run.submitted}, failed ${run.failed}, stopped ${run.stopped}`,
        );
      }
    } finally {
      await runtime.close();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  await benchPickup((name, value, unit = '') => {
    process.stdout.write(`${name}: ${typeof value === 'number' ? Number(value.toFixed(2)) : value}${unit ? ` ${unit}` : ''}\n`);
  });
}
