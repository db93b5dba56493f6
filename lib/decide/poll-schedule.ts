import type { RunwayModel } from '../config.js';
import { MODEL_SPECS } from './models.js';

/** Runway asks not to poll one task more often than every 5 s (contract §2.3). */
export const RUNWAY_MIN_POLL_SECONDS = 5;

/**
 * The first look comes at this share of the model's typical time: Runway's times spread
 * widely around it (documented only as "30-120 s"), so a look at the typical time leaves
 * the fast tasks finished and waiting, and the early look's `progress` steers the rest.
 * Bench (`npx tsx tools/bench/poll-schedule.ts`): p95 detect delay 27 s at the full typical
 * time, 11 s at a third, for 0.7 more polls per video.
 */
const FIRST_POLL_SHARE_OF_TYPICAL = 1 / 3;
/**
 * `elapsedSeconds` counts any time the task sat THROTTLED or PENDING before it ran, which the
 * schedule cannot see, so after a queue the rate estimate runs long. A cap keeps a wrong
 * estimate from costing more than this (bench: THROTTLED tasks' p95 detect delay 36 s → 16 s,
 * all tasks' 11 s → 8 s, for 1.1 more polls per video).
 */
const RUNNING_MAX_DELAY_SECONDS = 30;
/** Below this, `progress` says too little about the rate to extrapolate from. */
const MIN_PROGRESS_FOR_ESTIMATE = 0.05;
/** Poll a little before the estimated finish: estimates from early progress run long. */
const ESTIMATE_FACTOR = 0.9;
const ESTIMATE_MARGIN_SECONDS = 2;
/** Queued tasks (PENDING, THROTTLED, unknown statuses) back off by this factor per poll. */
const QUEUED_BACKOFF_FACTOR = 1.5;

export interface PollScheduleInput {
  readonly model: RunwayModel;
  /** Runway task status; unknown values are treated like a queued task. */
  readonly status: string;
  /** Runway `progress`, 0..1, when the task reports one. */
  readonly progress?: number | null | undefined;
  /** Seconds since the task was created. */
  readonly elapsedSeconds: number;
  /** Polls already made for this task (0 when scheduling the first). */
  readonly polls: number;
  readonly minSeconds: number;
  readonly maxSeconds: number;
  /**
   * When given, the delay never runs past the moment the task times out (though never
   * below the minimum), so a timeout is noticed promptly.
   */
  readonly timeoutSeconds?: number | undefined;
}

const finiteOr = (value: number | null | undefined, fallback: number): number =>
  typeof value === 'number' && Number.isFinite(value) ? value : fallback;

function runningDelaySeconds(input: PollScheduleInput, typical: number, elapsed: number, floor: number): number {
  const progress = finiteOr(input.progress, 0);
  if (progress >= 1) return floor;
  if (progress > MIN_PROGRESS_FOR_ESTIMATE && elapsed > 0) {
    const remaining = (elapsed * (1 - progress)) / progress;
    return remaining * ESTIMATE_FACTOR + ESTIMATE_MARGIN_SECONDS;
  }
  // Running, but no usable progress yet: expect the typical finish, or check back soon if it is overdue.
  return Math.max(typical - elapsed, 2 * floor);
}

function desiredDelaySeconds(input: PollScheduleInput, floor: number): number {
  const typical = MODEL_SPECS[input.model].typicalGenerationSeconds;
  const elapsed = Math.max(0, finiteOr(input.elapsedSeconds, 0));
  const polls = Math.max(0, Math.floor(finiteOr(input.polls, 0)));
  if (polls === 0) return typical * FIRST_POLL_SHARE_OF_TYPICAL - elapsed;
  if (input.status === 'RUNNING') return Math.min(RUNNING_MAX_DELAY_SECONDS, runningDelaySeconds(input, typical, elapsed, floor));
  return 2 * floor * QUEUED_BACKOFF_FACTOR ** (polls - 1);
}

/**
 * Seconds until the next poll of a Runway task (design §2, runway-callback). Pure: the same
 * input always gives the same delay, an integer within [max(minSeconds, 5), maxSeconds].
 */
export function nextPollDelaySeconds(input: PollScheduleInput): number {
  const floor = Math.ceil(Math.max(RUNWAY_MIN_POLL_SECONDS, finiteOr(input.minSeconds, RUNWAY_MIN_POLL_SECONDS)));
  const ceiling = Math.max(floor, Math.floor(finiteOr(input.maxSeconds, floor)));
  const untilTimeout = finiteOr(input.timeoutSeconds, Number.POSITIVE_INFINITY) - finiteOr(input.elapsedSeconds, 0);
  const delay = Math.min(desiredDelaySeconds(input, floor), untilTimeout);
  return Math.min(ceiling, Math.max(floor, Math.round(finiteOr(delay, ceiling))));
}

/** A heartbeat is due when none was sent yet or the interval has passed since the last one. */
export function heartbeatDue(input: {
  readonly nowMs: number;
  readonly lastHeartbeatMs: number | null | undefined;
  readonly intervalSeconds: number;
}): boolean {
  if (input.lastHeartbeatMs === null || input.lastHeartbeatMs === undefined) return true;
  return input.nowMs - input.lastHeartbeatMs >= input.intervalSeconds * 1000;
}

/** True once `timeoutSeconds` have passed since the Runway task was submitted. */
export function timedOut(input: {
  readonly nowMs: number;
  readonly submittedAtMs: number;
  readonly timeoutSeconds: number;
}): boolean {
  return input.nowMs - input.submittedAtMs >= input.timeoutSeconds * 1000;
}
