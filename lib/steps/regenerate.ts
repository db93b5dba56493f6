import type { RunwayTask } from '../clients/runway.js';
import { classifyFailureCode, failureMessageOf } from '../decide/failure-message.js';
import type { Deps } from '../deps.js';
import { PermanentError, UpstreamError } from '../errors.js';
import type { FailedGeneration, JobKey, JobRecord } from '../ledger/ledger.js';
import { describeError } from '../log.js';
import type { StepOutcome } from '../outcome.js';
import { firstPollDelay, publishPoll } from './chain.js';
import { prepareGeneration } from './generation.js';
import { abandonJob, markSlot, releaseLease, releaseSlot } from './lease-ops.js';
import type { Job } from './messages.js';
import { reportJobFailed } from './report.js';
import { claimWaitMs, taskFactOf } from './submit-task.js';

/**
 * A new Runway generation after a transient failure (`INTERNAL`, `THIRD_PARTY.UNAVAILABLE`,
 * `INPUT_PREPROCESSING.INTERNAL`; contract §2.3), at most `RUNWAY_REGENERATIONS` per lease
 * attempt. Each generation is claimed in the ledger before its create, so a duplicate or
 * late delivery of an older generation's poll finds the newer one and never creates another.
 * A crash before the claim is simply done again by the next delivery.
 */

/** A job that carries what a new generation needs: the photo's path and the prompt as sent. */
type RegenerableJob = Job & { readonly source: NonNullable<Job['source']> };

/** Whether the failed task earns a new generation at all. */
export function regenerationDue(deps: Deps, job: Job, task: RunwayTask): job is RegenerableJob {
  return (
    task.status === 'FAILED' &&
    classifyFailureCode(task.failureCode) === 'transient' &&
    job.generation <= deps.config.runwayRegenerations &&
    job.source !== undefined
  );
}

function failedGenerationOf(task: RunwayTask): FailedGeneration {
  const credits = task.cost?.credits ?? task.estimatedCost?.credits;
  return {
    runway_task_id: task.id,
    ...(task.failureCode ? { failure_code: task.failureCode } : {}),
    ...(credits === undefined ? {} : { credits }),
  };
}

/** No new generation after all: the failed task's slot is free, and the item is reported failed. */
async function reportFailure(deps: Deps, key: JobKey, job: Job, message: string): Promise<StepOutcome> {
  await releaseSlot(deps, key, job.model);
  return reportJobFailed(deps, key, job, message);
}

/** Generation `next` already claimed: done when it has its task, else wait for (or give up on) its owner. */
async function settleClaimed(deps: Deps, key: JobKey, job: Job, next: number, generation: JobRecord, failure: string): Promise<StepOutcome> {
  if (generation.task) {
    return { kind: 'done', detail: `superseded by generation ${next} (task ${generation.task.runway_task_id})` };
  }
  const waitMs = claimWaitMs(generation.submitting, deps.now());
  if (waitMs > 0) return { kind: 'retry', detail: 'a new generation is being started', retryAfterSeconds: Math.ceil(waitMs / 1000) };
  // Its owner died between the claim and the record: a task may exist and be billed.
  return reportFailure(deps, key, job, `${failure} (a new generation was interrupted; a task may have been created)`);
}

/**
 * Starts the next generation for a transiently failed task. `failure` is the failed task's
 * report wording, used if the item has to be reported failed after all.
 */
export async function regenerate(deps: Deps, key: JobKey, job: RegenerableJob, failed: RunwayTask, failure: string): Promise<StepOutcome> {
  const { source } = job;
  const next = job.generation + 1;
  const nextKey: JobKey = { ...key, generation: next };
  const log = deps.log.child({ item_id: job.item_id, runway_task_id: job.runway_task_id, step: 'regenerate', generation: next });

  const existing = await deps.ledger.read(nextKey);
  if (existing.submitting) return settleClaimed(deps, key, job, next, existing, failure);

  const lease = await deps.app.heartbeat(job.item_id, deps.config.leaseDurationSeconds);
  if (lease.kind === 'lost') {
    await abandonJob(deps, key, undefined, 'lease lost before a new generation');
    await releaseSlot(deps, key, job.model);
    return { kind: 'done', detail: 'lease lost: no new generation' };
  }

  let prepared;
  try {
    prepared = await prepareGeneration(deps, {
      itemId: job.item_id,
      photoStoragePath: source.photo_storage_path,
      model: job.model,
      duration: job.duration,
      promptText: source.prompt_text,
    });
  } catch (error) {
    if (error instanceof PermanentError || (error instanceof UpstreamError && !error.retryable)) {
      log.error({ err: describeError(error) }, 'the photo cannot be prepared again: reporting the Runway failure');
      return reportFailure(deps, key, job, failure);
    }
    // Nothing is claimed yet: the next delivery starts over.
    return { kind: 'retry', detail: failureMessageOf(error) };
  }

  const replaces = failedGenerationOf(failed);
  if (!(await deps.ledger.claim(nextKey, 'submitting', { at: new Date(deps.now()).toISOString(), replaces }))) {
    return settleClaimed(deps, key, job, next, await deps.ledger.read(nextKey), failure);
  }

  let created;
  try {
    created = await deps.runway.createTask(prepared.body);
  } catch (error) {
    return createFailed(deps, key, job, error, failure);
  }
  const now = deps.now();
  // What the polls learnt about the failed task (its last status, a THROTTLED wait) is not the new one's.
  const { last_status: _lastStatus, throttled: _throttled, ...carried } = job;
  const nextJob: Job = {
    ...carried,
    runway_task_id: created.id,
    ratio: prepared.ratio,
    submitted_at: now,
    last_heartbeat_at: now,
    polls: 0,
    generation: next,
  };
  log.warn(
    {
      failed_task_id: replaces.runway_task_id,
      failure_code: replaces.failure_code,
      failed_credits: replaces.credits,
      new_task_id: created.id,
      estimated_credits: created.estimatedCredits,
    },
    'runway generation failed transiently: started a new one',
  );
  try {
    await deps.ledger.claim(nextKey, 'task', taskFactOf({ ...created, model: job.model, duration: job.duration, ratio: prepared.ratio, photo: prepared.photo, source }, now));
    await markSlot(deps, key, job.model);
    await publishPoll(deps, nextJob, firstPollDelay(deps, job.model));
  } catch (error) {
    // The new task exists: the lease lapses and the next lease resumes it from the ledger.
    log.error({ err: describeError(error) }, 'could not record or schedule the new generation; it resumes when the lease lapses');
  }
  return { kind: 'done', detail: `generation ${next} started: task ${created.id}` };
}

/**
 * The new generation's create failed. Runway's daily cap, or a 5xx (no task was made): not
 * the item's fault, and the generation's claim is spent, so the attempt ends and the item
 * goes back to the queue for a fresh one, as a failure before a first task would. No answer
 * at all (a task may exist and be billed) or a refusal: reported failed.
 */
async function createFailed(deps: Deps, key: JobKey, job: Job, error: unknown, failure: string): Promise<StepOutcome> {
  const givenBack = givenBackBecause(error);
  if (givenBack !== undefined) {
    await abandonJob(deps, key, undefined, givenBack, { failures: 1, photoNotFound: 0 });
    await releaseSlot(deps, key, job.model);
    await releaseLease(deps, job.item_id, givenBack);
    return { kind: 'done', detail: `${failureMessageOf(error)}: item given back` };
  }
  const why =
    error instanceof UpstreamError && error.status === undefined
      ? 'the new generation got no answer; a task may exist'
      : `a new generation was refused: ${failureMessageOf(error)}`;
  return reportFailure(deps, key, job, `${failure} (${why})`);
}

/** Why a refused create gives the item back rather than failing it; undefined when it does not. */
function givenBackBecause(error: unknown): string | undefined {
  if (!(error instanceof UpstreamError)) return undefined;
  if (error.code === 'daily-cap') return 'runway daily generation cap (new generation)';
  if (error.status !== undefined && error.retryable) return `runway create answered ${error.status} (new generation)`;
  return undefined;
}
