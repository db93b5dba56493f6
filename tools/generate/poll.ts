import { setTimeout as sleep } from 'node:timers/promises';
import type { Runway, RunwayTask } from '../../lib/clients/runway.js';
import type { RunwayModel } from '../../lib/config.js';
import { timeoutMessage } from '../../lib/decide/failure-message.js';
import { nextPollDelaySeconds, timedOut } from '../../lib/decide/poll-schedule.js';
import { GenerateError } from './errors.js';

export interface PollOptions {
  readonly model: RunwayModel;
  readonly createdAtMs: number;
  readonly minSeconds: number;
  readonly maxSeconds: number;
  readonly timeoutSeconds: number;
  /** Aborted by Ctrl-C: the wait between polls ends at once. */
  readonly signal: AbortSignal;
  readonly onPoll: (poll: number, elapsedMs: number, task: RunwayTask) => void;
}

const TERMINAL_STATUSES: ReadonlySet<string> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

/**
 * Polls one task until it ends, waiting between polls what the worker's schedule says
 * (lib/decide/poll-schedule.ts). Returns the task in its final state, whatever that state
 * is, or undefined when Runway no longer knows it (deleted or cancelled elsewhere). Past
 * RUNWAY_TIMEOUT_SECONDS it throws; the caller cancels the task, as the worker does.
 */
export async function waitForTask(runway: Runway, taskId: string, options: PollOptions): Promise<RunwayTask | undefined> {
  const elapsedMs = (): number => Date.now() - options.createdAtMs;
  let last: RunwayTask | undefined;
  for (let polls = 0; ; polls += 1) {
    const delaySeconds = nextPollDelaySeconds({
      model: options.model,
      status: last?.status ?? 'PENDING',
      progress: last?.progress,
      elapsedSeconds: elapsedMs() / 1000,
      polls,
      minSeconds: options.minSeconds,
      maxSeconds: options.maxSeconds,
      timeoutSeconds: options.timeoutSeconds,
    });
    await sleep(delaySeconds * 1000, undefined, { signal: options.signal });
    const task = await runway.getTask(taskId);
    if (task === undefined) return undefined;
    options.onPoll(polls + 1, elapsedMs(), task);
    if (TERMINAL_STATUSES.has(task.status)) return task;
    if (timedOut({ nowMs: Date.now(), submittedAtMs: options.createdAtMs, timeoutSeconds: options.timeoutSeconds })) {
      throw new GenerateError(timeoutMessage(options.timeoutSeconds, task.status));
    }
    last = task;
  }
}
