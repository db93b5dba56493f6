import { deduplicationId } from '../clients/queue.js';
import type { RunwayModel } from '../config.js';
import { nextPollDelaySeconds } from '../decide/poll-schedule.js';
import type { Deps } from '../deps.js';
import type { Job } from './messages.js';

/**
 * The QStash messages that chain the steps, each with a deduplication id derived from the
 * item, the attempt and the step, so a repeated publish is dropped.
 */

export function pollDedupId(job: Pick<Job, 'item_id' | 'attempt' | 'polls'>): string {
  return deduplicationId(job.item_id, job.attempt, 'poll', job.polls);
}

export async function publishPoll(deps: Deps, job: Job, delaySeconds: number): Promise<void> {
  await deps.queue.publish({
    path: '/api/runway-callback',
    body: { job },
    delaySeconds,
    deduplicationId: pollDedupId(job),
  });
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
