import type { LeaseAnswer } from '../clients/app-api.js';
import { deduplicationId } from '../clients/queue.js';
import { capacityDrainDelaySeconds } from '../decide/capacity.js';
import type { Deps } from '../deps.js';
import { describeError, type Logger } from '../log.js';
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
  type SlotHold,
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

/** What one run knows while its lessees work in parallel. */
interface Run {
  readonly deps: Deps;
  readonly log: Logger;
  readonly started: number;
  readonly limit: number;
  readonly budgetMs: number;
  readonly items: CronPollItem[];
  /** Items given back are released once leasing is over, so no lease of this run takes one straight back. */
  readonly givenBack: { itemId: string; why: string }[];
  leases: number;
  stopped: StopReason | undefined;
  /** First leases handed back untouched: not ones the run took on. */
  handedBack: number;
  plan: CapacityPlan | undefined;
  gate: SlotGate;
}

type Leased = Exclude<LeaseAnswer, { kind: 'idle' }>;

async function leaseAndSubmit(deps: Deps, options: CronPollOptions): Promise<CronPollSummary> {
  const run: Run = {
    deps,
    log: deps.log.child({ step: 'cron-poll' }),
    started: deps.now(),
    limit: Math.max(0, Math.min(options.limit ?? deps.config.maxTasksPerRun, deps.config.maxTasksPerRun)),
    budgetMs: options.budgetMs ?? CRON_BUDGET_MS,
    items: [],
    givenBack: [],
    leases: 0,
    stopped: undefined,
    handedBack: 0,
    plan: undefined,
    gate: UNLIMITED_GATE,
  };
  const preleased = await openRun(run, options);
  const lessees = Math.max(1, Math.min(options.concurrency ?? LEASE_CONCURRENCY, run.limit));
  await Promise.all(Array.from({ length: lessees }, () => lessee(run, preleased)));

  // Every lessee sets a reason before it returns; `?limit=0` stops at the cap at once.
  const stop: StopReason = run.stopped ?? 'cap';
  rememberFull(deps, stop === 'capacity' ? deps.now() : undefined);
  // A first lease handed back untouched is not one the run took on: it starts no drain chain.
  const delaySeconds = drainDelay(deps, stop, options, run.items.length > run.handedBack ? run.items : [], run.plan);
  await Promise.all(run.givenBack.map(({ itemId, why }) => releaseLease(deps, itemId, why)));
  const drainScheduled = delaySeconds === undefined ? false : await scheduleDrain(run, delaySeconds);
  return summarize(run, stop, drainScheduled);
}

/**
 * Usually the first lease comes first: an idle queue then costs one call to the app and
 * nothing more (no Runway limits, no ledger listing). When Runway is likely full (a drain
 * run, or the last run stopped for want of a slot) the plan comes first, so no item is
 * leased only to be given back. Answers the lease taken before the plan, if any.
 */
async function openRun(run: Run, options: CronPollOptions): Promise<Leased[]> {
  const { deps } = run;
  if (deps.backpressure && run.limit > 0 && (options.drain === true || recentlyFull(deps))) await makePlan(run);
  const first = run.limit > 0 && run.stopped === undefined && run.plan === undefined ? await lease(run) : undefined;
  if (first !== undefined && deps.backpressure && run.plan === undefined) await makePlan(run);
  return first === undefined ? [] : [first];
}

async function makePlan(run: Run): Promise<void> {
  try {
    run.plan = await planCapacity(run.deps);
    run.gate = createSlotGate(run.plan);
  } catch (error) {
    // Without the ledger nothing leased could be claimed: leave every item in the queue.
    run.log.error({ err: describeError(error) }, 'could not count the Runway generations in flight: leasing nothing');
    run.stopped = 'ledger-error';
  }
}

/** One lease; undefined when leasing stops (the queue is idle, or the app failed). */
async function lease(run: Run): Promise<Leased | undefined> {
  run.leases++;
  let answer: LeaseAnswer;
  try {
    answer = await run.deps.app.nextTask(run.deps.config.leaseDurationSeconds);
  } catch (error) {
    run.leases--;
    run.stopped ??= 'app-error';
    run.log.error({ err: describeError(error) }, 'next-task failed: stopping this run');
    return undefined;
  }
  if (answer.kind === 'idle') {
    run.leases--;
    run.stopped ??= 'idle';
    return undefined;
  }
  return answer;
}

const giveBackOf =
  (run: Run): GiveBack =>
  (itemId, why) => {
    run.givenBack.push({ itemId, why });
    return Promise.resolve();
  };

/** A lease taken before the plan, given back untouched when the run cannot take it on. */
async function handBack(run: Run, answer: Leased | undefined, why: string): Promise<void> {
  if (answer?.kind !== 'task') return;
  await giveBackOf(run)(answer.task.item_id, why);
  run.items.push({ item_id: answer.task.item_id, outcome: 'released', detail: why });
  run.handedBack++;
}

/** One of the run's parallel lessees: leases and submits until the run stops. */
async function lessee(run: Run, preleased: Leased[]): Promise<void> {
  const { deps } = run;
  const defaultModel = deps.config.runwayModel;
  for (;;) {
    let answer = preleased.shift();
    if (run.stopped) {
      await handBack(run, answer, `leasing stopped (${run.stopped})`);
      return;
    }
    if (answer === undefined && run.leases >= run.limit) {
      run.stopped = 'cap';
      return;
    }
    if (answer === undefined && deps.now() - run.started > run.budgetMs) {
      run.stopped = 'budget';
      return;
    }
    if (!run.gate.take(defaultModel)) {
      run.stopped = 'capacity';
      await handBack(run, answer, `runway: no free ${defaultModel} slot now`);
      return;
    }
    const slot = slotHolder(run.gate, defaultModel);
    answer ??= await lease(run);
    if (answer === undefined) {
      slot.release();
      return;
    }
    await takeOn(run, answer, slot);
  }
}

/** Submits one leased task (or skips an unusable answer), keeping the slot only for a new Runway task. */
async function takeOn(run: Run, answer: Leased, slot: SlotHold): Promise<void> {
  const { items, log } = run;
  if (answer.kind === 'invalid') {
    slot.release();
    log.error({ item_id: answer.itemId, problem: answer.problem }, 'the app handed out an unusable task: skipped');
    items.push({ item_id: answer.itemId ?? null, outcome: 'skipped', detail: `invalid task: ${answer.problem}` });
    return;
  }
  try {
    const outcome = await submitTask(run.deps, answer.task, { admit: slot.admit, giveBack: giveBackOf(run) });
    if (outcome.kind !== 'submitted') slot.release();
    items.push(itemOf(outcome));
    // Why leasing stopped matters more than the idle answers other leases got meanwhile.
    if (outcome.kind === 'released' && outcome.stopLeasing) run.stopped = outcome.stopLeasing;
  } catch (error) {
    slot.release();
    // The item stays leased; when its lease lapses a later run picks it up and resumes.
    // Whatever failed (the ledger, QStash) would most likely fail the next items too, and
    // each would sit leased until its lease lapses: lease no more in this run.
    run.stopped ??= 'submit-error';
    log.error({ item_id: answer.task.item_id, err: describeError(error) }, 'submit failed unexpectedly: stopping this run');
    items.push({ item_id: answer.task.item_id, outcome: 'error', detail: describeError(error) });
  }
}

/** Publishes the next run; true unless QStash dropped it as a duplicate or refused it. */
async function scheduleDrain(run: Run, delaySeconds: number): Promise<boolean> {
  try {
    const published = await run.deps.queue.publish({
      path: '/api/cron-poll',
      body: { reason: 'drain' },
      delaySeconds,
      deduplicationId: deduplicationId('cron-drain', Math.floor(run.deps.now() / DRAIN_DEDUP_WINDOW_MS)),
    });
    return !published.deduplicated;
  } catch (error) {
    run.log.warn({ err: describeError(error) }, 'could not schedule the next drain run; the cron will pick up the rest');
    return false;
  }
}

function summarize(run: Run, stop: StopReason, drainScheduled: boolean): CronPollSummary {
  const { items, plan } = run;
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
    duration_ms: run.deps.now() - run.started,
    items,
  };
  run.log.info(
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
