import type { RunwayTask } from '../clients/runway.js';
import { RUNWAY_CANCELLED_MESSAGE, failureMessageOf, runwayFailureMessage, timeoutMessage } from '../decide/failure-message.js';
import { heartbeatDue, nextPollDelaySeconds, timedOut } from '../decide/poll-schedule.js';
import type { Deps } from '../deps.js';
import { isRetryable } from '../errors.js';
import { CLOSING_FACTS, type JobKey } from '../ledger/ledger.js';
import { describeError } from '../log.js';
import type { StepOutcome } from '../outcome.js';
import { abandonJob, releaseSlot } from './lease-ops.js';
import type { Delivery, Job, PollMessage } from './messages.js';
import { regenerate, regenerationDue } from './regenerate.js';
import { answerIfClosed, reportJobFailed } from './report.js';
import { publishPoll, publishUpload } from './chain.js';

/**
 * runway-callback: one look at one Runway task (design §2). Still running → heartbeat
 * when due and schedule the next look; succeeded → hand over to step-upload; failed,
 * cancelled or timed out → report failed.
 */

const RUNWAY_GONE_MESSAGE = 'runway: the task was cancelled or deleted';

async function handOverToUpload(deps: Deps, job: Job, task: RunwayTask): Promise<StepOutcome> {
  await publishUpload(deps, { ...job, last_status: task.status }, task.output?.[0], undefined, task.cost?.credits);
  return { kind: 'done', detail: 'succeeded: upload scheduled' };
}

/**
 * Keeps what Runway charged for a task that made its video, for the report the upload step
 * sends. Written only when the attempt's own facts cannot tell it (the ledger's `cost` fact):
 * the usual first generation priced as estimated at create costs no write. A figure is never
 * worth holding a video back: a write that fails is logged and skipped.
 */
async function recordCost(deps: Deps, key: JobKey, job: Job, task: RunwayTask): Promise<void> {
  const credits = task.cost?.credits;
  if (job.generation === 1 && (credits === undefined || credits === job.estimated_credits)) return;
  try {
    await deps.ledger.claim(key, 'cost', {
      runway_task_id: task.id,
      generation: job.generation,
      ...(credits === undefined ? {} : { credits }),
      at: new Date(deps.now()).toISOString(),
    });
  } catch (error) {
    deps.log.warn({ item_id: job.item_id, runway_task_id: task.id, err: describeError(error) }, 'could not record what the task cost');
  }
}

/** The generation no longer holds a Runway slot: the next cron-poll may start another. */
const slotFreed = (deps: Deps, key: JobKey, job: Job): Promise<void> => releaseSlot(deps, key, job.model);

/**
 * A task of ours waiting THROTTLED means another client of the account holds slots: leasing
 * for the model pauses until our task runs (design §2, backpressure).
 */
async function noteThrottling(deps: Deps, job: Job, status: string): Promise<void> {
  try {
    if (status === 'THROTTLED') await deps.ledger.markThrottled(job.model);
    else if (job.last_status === 'THROTTLED') await deps.ledger.clearThrottled(job.model);
  } catch (error) {
    deps.log.warn({ item_id: job.item_id, err: describeError(error) }, 'could not note the THROTTLED state');
  }
}

/** `error_message` of a failed task, naming how many generations were tried when more than one. */
function failedTaskMessage(task: RunwayTask, job: Job): string {
  const message = runwayFailureMessage(task.failureCode, task.failure);
  return job.generation > 1 ? `${message} (after ${job.generation} generations)` : message;
}

export async function pollTask(deps: Deps, message: PollMessage, delivery: Delivery): Promise<StepOutcome> {
  const { job } = message;
  const key: JobKey = { itemId: job.item_id, attempt: job.attempt };
  const log = deps.log.child({ item_id: job.item_id, runway_task_id: job.runway_task_id, step: 'poll' });

  // Whether to go on is all this step asks the ledger: the rest travels in the message.
  const record = await deps.ledger.read(key, CLOSING_FACTS);
  const closed = await answerIfClosed(deps, key, record);
  if (closed) return closed;

  try {
    const task = await deps.runway.getTask(job.runway_task_id);
    const now = deps.now();
    const late = timedOut({ nowMs: now, submittedAtMs: job.submitted_at, timeoutSeconds: deps.config.runwayTimeoutSeconds });
    if (!task) {
      await slotFreed(deps, key, job);
      // Past its timeout, the task was most likely cancelled by a delivery that timed it out.
      const message = late ? timeoutMessage(deps.config.runwayTimeoutSeconds, job.last_status, job.throttled === true) : RUNWAY_GONE_MESSAGE;
      return await reportJobFailed(deps, key, job, message, record, {});
    }
    log.info({ status: task.status, progress: task.progress ?? undefined, polls: job.polls }, 'runway task polled');
    await noteThrottling(deps, job, task.status);
    if (task.status === 'SUCCEEDED') {
      await slotFreed(deps, key, job);
      await recordCost(deps, key, job, task);
      return await handOverToUpload(deps, job, task);
    }
    if (task.status === 'FAILED' || task.status === 'CANCELLED') {
      const message = task.status === 'CANCELLED' ? RUNWAY_CANCELLED_MESSAGE : failedTaskMessage(task, job);
      const credits = task.cost?.credits ?? task.estimatedCost?.credits;
      log.warn({ status: task.status, failure_code: task.failureCode ?? undefined, credits, generation: job.generation }, 'runway task ended without a video');
      if (regenerationDue(deps, job, task)) return await regenerate(deps, key, job, task, message);
      await slotFreed(deps, key, job);
      return await reportJobFailed(deps, key, job, message, record, { credits: task.cost?.credits });
    }

    if (late) {
      await deps.runway.cancelTask(job.runway_task_id);
      await slotFreed(deps, key, job);
      const message = timeoutMessage(deps.config.runwayTimeoutSeconds, task.status, job.throttled === true);
      log.warn({ status: task.status }, 'runway task timed out: cancelled');
      return await reportJobFailed(deps, key, job, message, record, {});
    }

    let lastHeartbeat = job.last_heartbeat_at;
    if (heartbeatDue({ nowMs: now, lastHeartbeatMs: job.last_heartbeat_at, intervalSeconds: deps.config.heartbeatIntervalSeconds })) {
      const lease = await deps.app.heartbeat(job.item_id, deps.config.leaseDurationSeconds);
      if (lease.kind === 'lost') {
        await abandonJob(deps, key, job.runway_task_id, 'lease lost (heartbeat 404)');
        await slotFreed(deps, key, job);
        return { kind: 'done', detail: 'lease lost: Runway task cancelled' };
      }
      lastHeartbeat = now;
    }
    const next: Job = {
      ...job,
      polls: job.polls + 1,
      last_heartbeat_at: lastHeartbeat,
      last_status: task.status,
      ...(task.status === 'THROTTLED' || job.throttled === true ? { throttled: true } : {}),
    };
    const delay = nextPollDelaySeconds({
      model: job.model,
      status: task.status,
      progress: task.progress ?? undefined,
      elapsedSeconds: Math.max(0, (now - job.submitted_at) / 1000),
      polls: next.polls,
      minSeconds: deps.config.runwayPollMinSeconds,
      maxSeconds: deps.config.runwayPollMaxSeconds,
      timeoutSeconds: deps.config.runwayTimeoutSeconds,
    });
    await publishPoll(deps, next, delay);
    return { kind: 'done', detail: `${task.status}: next look in ${delay} s`, data: { status: task.status, next_poll_seconds: delay } };
  } catch (error) {
    if (isRetryable(error) && !delivery.last) {
      log.warn({ err: describeError(error), retried: delivery.retried }, 'poll failed: QStash will deliver again');
      return { kind: 'retry', detail: failureMessageOf(error) };
    }
    // Permanent, or QStash's last try: stop paying Runway and say why.
    const message = failureMessageOf(error);
    log.error({ err: describeError(error), last_delivery: delivery.last }, 'poll failed for good');
    try {
      await deps.runway.cancelTask(job.runway_task_id);
    } catch (cancelError) {
      log.warn({ err: describeError(cancelError) }, 'cancel after failure did not go through');
    }
    await slotFreed(deps, key, job);
    return reportJobFailed(deps, key, job, message);
  }
}
