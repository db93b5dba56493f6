import { deduplicationId } from '../clients/queue.js';
import type { Deps } from '../deps.js';
import { describeError } from '../log.js';
import { submitTask, type SubmitOutcome } from './submit-task.js';

/**
 * cron-poll: lease up to N tasks, a few at a time, while the time budget lasts; stop at
 * the first idle answer. When the cap was hit the queue may hold more, so a delayed POST
 * to ourselves keeps draining (design §2).
 */

export const LEASE_CONCURRENCY = 3;
export const DRAIN_DELAY_SECONDS = 5;
/**
 * Stop leasing new tasks after this long. A task already leased can still take a few
 * bounded calls (presign, photo, create: about 100 s at worst), all inside the function's
 * 300 s maxDuration (vercel.json).
 */
export const CRON_BUDGET_MS = 180_000;

export type StopReason = 'idle' | 'cap' | 'budget' | 'not-ours' | 'daily-cap' | 'app-error';

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
  return { item_id: outcome.itemId ?? null, outcome: outcome.kind, detail: outcome.detail };
}

export async function runCronPoll(
  deps: Deps,
  options: { limit?: number; budgetMs?: number; concurrency?: number } = {},
): Promise<CronPollSummary> {
  const started = deps.now();
  const limit = Math.max(0, Math.min(options.limit ?? deps.config.maxTasksPerRun, deps.config.maxTasksPerRun));
  const budgetMs = options.budgetMs ?? CRON_BUDGET_MS;
  const items: CronPollItem[] = [];
  let leases = 0;
  let stopped: StopReason | undefined;
  const log = deps.log.child({ step: 'cron-poll' });

  const worker = async (): Promise<void> => {
    for (;;) {
      if (stopped) return;
      if (leases >= limit) {
        stopped = 'cap';
        return;
      }
      if (deps.now() - started > budgetMs) {
        stopped = 'budget';
        return;
      }
      leases++;
      let answer;
      try {
        answer = await deps.app.nextTask(deps.config.leaseDurationSeconds);
      } catch (error) {
        leases--;
        stopped ??= 'app-error';
        log.error({ err: describeError(error) }, 'next-task failed: stopping this run');
        return;
      }
      if (answer.kind === 'idle') {
        leases--;
        stopped ??= 'idle';
        return;
      }
      if (answer.kind === 'invalid') {
        log.error({ item_id: answer.itemId, problem: answer.problem }, 'the app handed out an unusable task: skipped');
        items.push({ item_id: answer.itemId ?? null, outcome: 'skipped', detail: `invalid task: ${answer.problem}` });
        continue;
      }
      try {
        const outcome = await submitTask(deps, answer.task);
        items.push(itemOf(outcome));
        // Why leasing stopped matters more than the idle answers other leases got meanwhile.
        if (outcome.kind === 'released' && outcome.stopLeasing) stopped = outcome.stopLeasing;
      } catch (error) {
        // The item stays leased; when the lease lapses a later run picks it up and resumes.
        log.error({ item_id: answer.task.item_id, err: describeError(error) }, 'submit failed unexpectedly');
        items.push({ item_id: answer.task.item_id, outcome: 'error', detail: describeError(error) });
      }
    }
  };

  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency ?? LEASE_CONCURRENCY, limit)) }, worker));
  const stop: StopReason = limit === 0 ? 'cap' : (stopped ?? 'cap');

  let drainScheduled = false;
  // A run limited by hand (`?limit=N`) leases at most N: only a run at the configured cap drains on.
  if (stop === 'cap' && limit > 0 && options.limit === undefined) {
    try {
      const published = await deps.queue.publish({
        path: '/api/cron-poll',
        body: { reason: 'drain' },
        delaySeconds: DRAIN_DELAY_SECONDS,
        deduplicationId: deduplicationId('cron-drain', Math.floor(deps.now() / (DRAIN_DELAY_SECONDS * 1000))),
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
    duration_ms: deps.now() - started,
    items,
  };
  log.info(
    { leased: summary.leased, submitted: summary.submitted, failed: summary.failed, stopped: stop, duration_ms: summary.duration_ms },
    'cron-poll finished',
  );
  return summary;
}
