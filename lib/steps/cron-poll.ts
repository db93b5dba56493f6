import type { LeaseAnswer } from '../clients/app-api.js';
import { deduplicationId } from '../clients/queue.js';
import { capacityDrainDelaySeconds } from '../decide/capacity.js';
import type { Deps } from '../deps.js';
import { describeError } from '../log.js';
import { releaseLease } from './lease-ops.js';
import {
  capacitySummaryOf,
  createSlotGate,
  planCapacity,
  slotHolder,
  UNLIMITED_GATE,
  type CapacityPlan,
  type CapacitySummary,
  type SlotGate,
} from './capacity.js';
import { submitTask, type GiveBack, type SubmitOutcome } from './submit-task.js';

/**
 * cron-poll: lease up to N tasks, a few at a time, while the time budget lasts; stop at
 * the first idle answer. When the cap was hit the queue may hold more, so a delayed POST
 * to ourselves keeps draining (design §2).
 */

export const LEASE_CONCURRENCY = 3;
/**
 * Wait before the next run when this one stopped at its cap: the queue most likely holds
 * more, and nothing is gained by waiting (each run costs one message whatever the delay).
 * One second is QStash's smallest delay. `npm run bench` (pickup): a burst of 50 items was
 * all at Runway within p95 21.3 s with 5 s here, see the README's figures for this value.
 */
export const DRAIN_DELAY_SECONDS = 1;
/**
 * Drain continuations published within one window of this length share a deduplication id,
 * so overlapping runs do not multiply. Never longer than the shortest drain delay: the next
 * run of one chain must fall into a later window.
 */
export const DRAIN_DEDUP_WINDOW_MS = DRAIN_DELAY_SECONDS * 1000;
/** Shortest wait before looking again when leasing stopped for want of Runway slots. */
export const CAPACITY_DRAIN_MIN_SECONDS = 5;
/**
 * Stop leasing new tasks after this long. A task already leased can still take a few
 * bounded calls (presign, photo, create: about 100 s at worst), all inside the function's
 * 300 s maxDuration (vercel.json).
 */
export const CRON_BUDGET_MS = 180_000;
/** Longest wait before the next look when leasing stopped for want of Runway slots. */
export const CAPACITY_DRAIN_MAX_SECONDS = 30;

/**
 * Why leasing stopped: the queue was empty (`idle`), the run's cap, its time budget, a task
 * for another worker, Runway's daily cap, no free Runway slot (`capacity`), an outside
 * failure of the app or of the ledger, or a leased task whose submission failed unexpectedly
 * (`submit-error`).
 */
export type StopReason =
  | 'idle'
  | 'cap'
  | 'budget'
  | 'not-ours'
  | 'daily-cap'
  | 'capacity'
  | 'app-error'
  | 'ledger-error'
  | 'submit-error';

export interface CronPollItem {
  readonly item_id: string | null;
  readonly outcome: SubmitOutcome['kind'] | 'error';
  readonly detail: string;
  readonly runway_task_id?: string;
  readonly model?: string;
  readonly duration?: number;
  readonly ratio?: string;
}

export interface CronPollSummary {
  readonly leased: number;
  readonly submitted: number;
  readonly resumed: number;
  readonly released: number;
  readonly failed: number;
  readonly skipped: number;
  readonly errors: number;
  readonly stopped: StopReason;
  readonly drain_scheduled: boolean;
  /** Per model: Runway's limit, our generations in flight, free slots, paused by THROTTLED. Absent without backpressure. */
  readonly capacity?: CapacitySummary;
  readonly duration_ms: number;
  readonly items: readonly CronPollItem[];
}

function itemOf(outcome: SubmitOutcome): CronPollItem {
  if (outcome.kind === 'submitted') {
    const { job } = outcome;
    return {
      item_id: outcome.itemId,
      outcome: 'submitted',
      detail: `runway task ${job.runway_task_id}`,
      runway_task_id: job.runway_task_id,
      model: job.model,
      duration: job.duration,
      ratio: job.ratio,
    };
  }
  return { item_id: outcome.itemId, outcome: outcome.kind, detail: outcome.detail };
}

export interface CronPollOptions {
  readonly limit?: number;
  readonly budgetMs?: number;
  readonly concurrency?: number;
  /** The run is a drain message (it may keep the drain chain going while Runway is busy). */
  readonly drain?: boolean;
}

/**
 * Runs in one process take turns: each counts the generations in flight before it leases,
 * and two runs counting at the same moment (a cron tick and a drain message) would both see
 * the same free slots. Runs in different processes can still overlap; the extra task then
 * waits THROTTLED for a while, which also pauses leasing for its model.
 */
const turns = new WeakMap<Deps, Promise<unknown>>();

/** How long a run that stopped for want of a Runway slot makes the next runs plan before they lease. */
export const FULL_MEMORY_MS = 120_000;
/** When a run of this process last stopped for want of a Runway slot. */
const fullAt = new WeakMap<Deps, number>();

function recentlyFull(deps: Deps): boolean {
  const at = fullAt.get(deps);
  return at !== undefined && deps.now() - at < FULL_MEMORY_MS;
}

function rememberFull(deps: Deps, atMs: number | undefined): void {
  if (atMs === undefined) fullAt.delete(deps);
  else fullAt.set(deps, atMs);
}

export function runCronPoll(deps: Deps, options: CronPollOptions = {}): Promise<CronPollSummary> {
  const run = (turns.get(deps) ?? Promise.resolve())
    .catch(() => undefined)
    .then(() => leaseAndSubmit(deps, options));
  turns.set(deps, run);
  return run;
}

async function leaseAndSubmit(deps: Deps, options: CronPollOptions): Promise<CronPollSummary> {
  const started = deps.now();
  const limit = Math.max(0, Math.min(options.limit ?? deps.config.maxTasksPerRun, deps.config.maxTasksPerRun));
  const budgetMs = options.budgetMs ?? CRON_BUDGET_MS;
  const items: CronPollItem[] = [];
  let leases = 0;
  let stopped: StopReason | undefined;
  const log = deps.log.child({ step: 'cron-poll' });

  const defaultModel = deps.config.runwayModel;
  // Items given back are released once leasing is over, so no lease of this run takes one straight back.
  const givenBack: { itemId: string; why: string }[] = [];
  const giveBack: GiveBack = (itemId, why) => {
    givenBack.push({ itemId, why });
    return Promise.resolve();
  };

  /** One lease; undefined when leasing stops (the queue is idle, or the app failed). */
  const lease = async (): Promise<Exclude<LeaseAnswer, { kind: 'idle' }> | undefined> => {
    leases++;
    let answer: LeaseAnswer;
    try {
      answer = await deps.app.nextTask(deps.config.leaseDurationSeconds);
    } catch (error) {
      leases--;
      stopped ??= 'app-error';
      log.error({ err: describeError(error) }, 'next-task failed: stopping this run');
      return undefined;
    }
    if (answer.kind === 'idle') {
      leases--;
      stopped ??= 'idle';
      return undefined;
    }
    return answer;
  };

  let plan: CapacityPlan | undefined;
  let gate: SlotGate = UNLIMITED_GATE;
  const makePlan = async (): Promise<void> => {
    try {
      plan = await planCapacity(deps);
      gate = createSlotGate(plan);
    } catch (error) {
      // Without the ledger nothing leased could be claimed: leave every item in the queue.
      log.error({ err: describeError(error) }, 'could not count the Runway generations in flight: leasing nothing');
      stopped = 'ledger-error';
    }
  };
  // Usually the first lease comes first: an idle queue then costs one call to the app and
  // nothing more (no Runway limits, no ledger listing). When Runway is likely full (a drain
  // run, or the last run stopped for want of a slot) the plan comes first, so no item is
  // leased only to be given back.
  if (deps.backpressure && limit > 0 && (options.drain === true || recentlyFull(deps))) await makePlan();
  const first = limit > 0 && stopped === undefined && plan === undefined ? await lease() : undefined;
  if (first !== undefined && deps.backpressure && plan === undefined) await makePlan();
  const preleased = first === undefined ? [] : [first];
  /** The first lease, given back untouched when the run cannot take it on. */
  let handedBack = 0;
  const handBack = async (itemId: string, why: string): Promise<void> => {
    await giveBack(itemId, why);
    items.push({ item_id: itemId, outcome: 'released', detail: why });
    handedBack++;
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      let answer = preleased.shift();
      if (stopped) {
        if (answer?.kind === 'task') await handBack(answer.task.item_id, `leasing stopped (${stopped})`);
        return;
      }
      if (answer === undefined && leases >= limit) {
        stopped = 'cap';
        return;
      }
      if (answer === undefined && deps.now() - started > budgetMs) {
        stopped = 'budget';
        return;
      }
      if (!gate.take(defaultModel)) {
        stopped = 'capacity';
        if (answer?.kind === 'task') await handBack(answer.task.item_id, `runway: no free ${defaultModel} slot now`);
        return;
      }
      const slot = slotHolder(gate, defaultModel);
      answer ??= await lease();
      if (answer === undefined) {
        slot.release();
        return;
      }
      if (answer.kind === 'invalid') {
        slot.release();
        log.error({ item_id: answer.itemId, problem: answer.problem }, 'the app handed out an unusable task: skipped');
        items.push({ item_id: answer.itemId ?? null, outcome: 'skipped', detail: `invalid task: ${answer.problem}` });
        continue;
      }
      try {
        const outcome = await submitTask(deps, answer.task, { admit: slot.admit, giveBack });
        if (outcome.kind !== 'submitted') slot.release();
        items.push(itemOf(outcome));
        // Why leasing stopped matters more than the idle answers other leases got meanwhile.
        if (outcome.kind === 'released' && outcome.stopLeasing) stopped = outcome.stopLeasing;
      } catch (error) {
        slot.release();
        // The item stays leased; when its lease lapses a later run picks it up and resumes.
        // Whatever failed (the ledger, QStash) would most likely fail the next items too, and
        // each would sit leased until its lease lapses: lease no more in this run.
        stopped ??= 'submit-error';
        log.error({ item_id: answer.task.item_id, err: describeError(error) }, 'submit failed unexpectedly: stopping this run');
        items.push({ item_id: answer.task.item_id, outcome: 'error', detail: describeError(error) });
      }
    }
  };

  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency ?? LEASE_CONCURRENCY, limit)) }, worker));
  // Every worker sets a reason before it returns; `?limit=0` stops at the cap at once.
  const stop: StopReason = stopped ?? 'cap';
  rememberFull(deps, stop === 'capacity' ? deps.now() : undefined);
  // A first lease handed back untouched is not one the run took on: it starts no drain chain.
  const delaySeconds = drainDelay(deps, stop, options, items.length > handedBack ? items : [], plan);
  await Promise.all(givenBack.map(({ itemId, why }) => releaseLease(deps, itemId, why)));

  let drainScheduled = false;
  if (delaySeconds !== undefined) {
    try {
      const published = await deps.queue.publish({
        path: '/api/cron-poll',
        body: { reason: 'drain' },
        delaySeconds,
        deduplicationId: deduplicationId('cron-drain', Math.floor(deps.now() / DRAIN_DEDUP_WINDOW_MS)),
      });
      drainScheduled = !published.deduplicated;
    } catch (error) {
      log.warn({ err: describeError(error) }, 'could not schedule the next drain run; the cron will pick up the rest');
    }
  }

  const count = (kind: CronPollItem['outcome']): number => items.filter((item) => item.outcome === kind).length;
  const summary: CronPollSummary = {
    leased: items.length,
    submitted: count('submitted'),
    resumed: count('resumed'),
    released: count('released'),
    failed: count('failed'),
    skipped: count('skipped'),
    errors: count('error'),
    stopped: stop,
    drain_scheduled: drainScheduled,
    ...(plan === undefined ? {} : { capacity: capacitySummaryOf(plan) }),
    duration_ms: deps.now() - started,
    items,
  };
  log.info(
    { leased: summary.leased, submitted: summary.submitted, failed: summary.failed, stopped: stop, duration_ms: summary.duration_ms },
    'cron-poll finished',
  );
  return summary;
}

/**
 * When to look again, or undefined for not before the next cron. At the cap the queue may
 * hold more: soon. Out of Runway slots, when this run leased something (so more may wait) or
 * continues a drain: once the earliest generation in flight should be done. A run limited
 * by hand (`?limit=N`) never drains on.
 */
function drainDelay(
  deps: Deps,
  stop: StopReason,
  options: CronPollOptions,
  items: readonly CronPollItem[],
  plan: CapacityPlan | undefined,
): number | undefined {
  if (options.limit !== undefined) return undefined;
  if (stop === 'cap') return DRAIN_DELAY_SECONDS;
  if (stop !== 'capacity' || !(options.drain === true || items.length > 0)) return undefined;
  const now = deps.now();
  const submitted = items.filter((item) => item.outcome === 'submitted' && item.model !== undefined);
  return capacityDrainDelaySeconds({
    inFlight: [...(plan?.inFlight ?? []), ...submitted.map((item) => ({ model: item.model ?? '', atMs: now }))],
    nowMs: now,
    minSeconds: CAPACITY_DRAIN_MIN_SECONDS,
    maxSeconds: CAPACITY_DRAIN_MAX_SECONDS,
  });
}
