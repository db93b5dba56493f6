import { deduplicationId } from '../clients/queue.js';
import type { RunwayModel } from '../config.js';
import { nextPollDelaySeconds } from '../decide/poll-schedule.js';
import type { Deps } from '../deps.js';
import type { Job } from './messages.js';

/**
 * The QStash messages that chain the steps, each with a deduplication id derived from the
 * item, the attempt and the step, so a repeated publish is dropped.
 */

export function pollDedupId(job: Pick<Job, 'item_id' | 'attempt' | 'polls' | 'generation'>): string {
  // Each generation's polls count from 0 again: its number keeps their ids apart.
  const generation = job.generation > 1 ? [`g${job.generation}`] : [];
  return deduplicationId(job.item_id, job.attempt, 'poll', ...generation, job.polls);
}

export async function publishPoll(deps: Deps, job: Job, delaySeconds: number, dedupId = pollDedupId(job)): Promise<void> {
  await deps.queue.publish({ path: '/api/runway-callback', body: { job }, delaySeconds, deduplicationId: dedupId });
}

/** `credits`: Runway's `cost.credits` on the succeeded task, when the caller saw it. */
export async function publishUpload(deps: Deps, job: Job, outputUrl?: string, dedupId = uploadDedupId(job), credits?: number): Promise<void> {
  await deps.queue.publish({
    path: '/api/step-upload',
    body: { job, ...(outputUrl ? { output_url: outputUrl } : {}), ...(credits === undefined ? {} : { credits }) },
    delaySeconds: 0,
    deduplicationId: dedupId,
  });
}

/**
 * Resuming an attempt after its lease lapsed: bucketed by minute, so a second resume within
 * QStash's 10-minute deduplication window is not dropped.
 */
export function resumeDedupId(job: Pick<Job, 'item_id' | 'attempt'>, step: 'poll' | 'upload', nowMs: number): string {
  return deduplicationId(job.item_id, job.attempt, step, 'resume', Math.floor(nowMs / 60_000));
}

export function firstPollDelay(deps: Deps, model: RunwayModel): number {
  return nextPollDelaySeconds({
    model,
    status: 'PENDING',
    progress: undefined,
    elapsedSeconds: 0,
    polls: 0,
    minSeconds: deps.config.runwayPollMinSeconds,
    maxSeconds: deps.config.runwayPollMaxSeconds,
  });
}

export function uploadDedupId(job: Pick<Job, 'item_id' | 'attempt'>): string {
  return deduplicationId(job.item_id, job.attempt, 'upload');
}
