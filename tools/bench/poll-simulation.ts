import { RUNWAY_MODELS, type RunwayModel } from '../../lib/config.js';
import { timedOut, type PollScheduleInput } from '../../lib/decide/poll-schedule.js';
import { createRng } from '../../sandbox/random.js';
import { percentile } from './stats.js';

/**
 * Runway tasks polled in virtual time (pure, no clock, no I/O): each task is a fixed
 * timeline, and a schedule is called with exactly the inputs the worker gives
 * `nextPollDelaySeconds` — the first delay as lib/steps/chain.ts `firstPollDelay` asks for it
 * right after the create, every later one as lib/steps/poll-task.ts asks for it after a look
 * at a task still going. QStash is taken to deliver exactly on time.
 */

/** A poll schedule: the signature of `nextPollDelaySeconds`, so a stand-in can be compared with it. */
export type PollSchedule = (input: PollScheduleInput) => number;

export interface SimulatedTask {
  readonly model: RunwayModel;
  /** Seconds THROTTLED after the create before it starts running (0: runs at once). */
  readonly throttledSeconds: number;
  /** Seconds RUNNING, from the end of the queue to SUCCEEDED. */
  readonly runningSeconds: number;
  /**
   * Added to the linear progress at knots `PROGRESS_KNOT_SECONDS` apart, straight lines in
   * between; missing knots add nothing, so `[]` is a perfectly linear task.
   */
  readonly progressNoise: readonly number[];
}

export type SimulatedStatus = 'THROTTLED' | 'RUNNING' | 'SUCCEEDED';

export interface TaskLook {
  readonly status: SimulatedStatus;
  /** Only a RUNNING task reports `progress`. */
  readonly progress: number | undefined;
}

export interface PollBounds {
  readonly minSeconds: number;
  readonly maxSeconds: number;
  readonly timeoutSeconds: number;
}

export interface TaskRun {
  readonly throttled: boolean;
  readonly finishSeconds: number;
  /** Seconds after the create of every look at the task, in order. */
  readonly pollSeconds: readonly number[];
  /** The look that saw SUCCEEDED; undefined when the worker timed the task out first. */
  readonly detectedSeconds: number | undefined;
}

export const PROGRESS_KNOT_SECONDS = 10;
/** Runway's progress never claims the work is done before the task says SUCCEEDED. */
export const MAX_PROGRESS_BEFORE_FINISH = 0.99;
/** A schedule that never lets a task finish would loop for ever: stop it loudly instead. */
const MAX_POLLS_PER_TASK = 10_000;

export const finishSecondsOf = (task: SimulatedTask): number => task.throttledSeconds + task.runningSeconds;

function noiseAt(noise: readonly number[], runningSeconds: number): number {
  const knot = Math.floor(runningSeconds / PROGRESS_KNOT_SECONDS);
  const fraction = runningSeconds / PROGRESS_KNOT_SECONDS - knot;
  const before = noise[knot] ?? 0;
  const after = noise[knot + 1] ?? 0;
  return before + (after - before) * fraction;
}

/** What `GET /v1/tasks/{id}` would answer `atSeconds` after the create. */
export function lookAtTask(task: SimulatedTask, atSeconds: number): TaskLook {
  if (atSeconds < task.throttledSeconds) return { status: 'THROTTLED', progress: undefined };
  const running = atSeconds - task.throttledSeconds;
  if (running >= task.runningSeconds) return { status: 'SUCCEEDED', progress: undefined };
  const linear = running / task.runningSeconds + noiseAt(task.progressNoise, running);
  return { status: 'RUNNING', progress: Math.min(MAX_PROGRESS_BEFORE_FINISH, Math.max(0, linear)) };
}

function checkedDelay(delay: number, polls: number): number {
  if (!Number.isFinite(delay) || delay <= 0) throw new Error(`schedule gave a delay of ${delay} s after ${polls} polls`);
  return delay;
}

/** Polls one task from its create until a look sees SUCCEEDED or the worker's timeout check fires. */
export function runTask(task: SimulatedTask, schedule: PollSchedule, bounds: PollBounds): TaskRun {
  const { minSeconds, maxSeconds, timeoutSeconds } = bounds;
  const pollSeconds: number[] = [];
  const finished = (detectedSeconds: number | undefined): TaskRun => ({
    throttled: task.throttledSeconds > 0,
    finishSeconds: finishSecondsOf(task),
    pollSeconds,
    detectedSeconds,
  });
  // firstPollDelay: always PENDING, no progress, no timeout.
  let at = checkedDelay(schedule({ model: task.model, status: 'PENDING', progress: undefined, elapsedSeconds: 0, polls: 0, minSeconds, maxSeconds }), 0);
  while (pollSeconds.length < MAX_POLLS_PER_TASK) {
    pollSeconds.push(at);
    const look = lookAtTask(task, at);
    if (look.status === 'SUCCEEDED') return finished(at);
    if (timedOut({ nowMs: at * 1000, submittedAtMs: 0, timeoutSeconds })) return finished(undefined);
    const delay = schedule({
      model: task.model,
      status: look.status,
      progress: look.progress,
      elapsedSeconds: at,
      polls: pollSeconds.length,
      minSeconds,
      maxSeconds,
      timeoutSeconds,
    });
    at += checkedDelay(delay, pollSeconds.length);
  }
  throw new Error(`schedule polled one task ${MAX_POLLS_PER_TASK} times without an end`);
}

export interface TaskMix {
  readonly count: number;
  readonly seed: number;
  readonly runningSeconds: readonly [min: number, max: number];
  readonly throttledShare: number;
  readonly throttledSeconds: readonly [min: number, max: number];
  /** Each knot of progress noise is uniform in ±this. */
  readonly progressNoise: number;
}

const uniform = (rng: () => number, [min, max]: readonly [number, number]): number => min + (max - min) * rng();

/** Tasks spread over the models in turn (equal shares), every other figure drawn from a seeded generator. */
export function generateTasks(mix: TaskMix): SimulatedTask[] {
  const rng = createRng(mix.seed);
  return Array.from({ length: mix.count }, (_, index) => {
    const model = RUNWAY_MODELS[index % RUNWAY_MODELS.length] ?? 'gen4_turbo';
    const throttledSeconds = rng() < mix.throttledShare ? uniform(rng, mix.throttledSeconds) : 0;
    const runningSeconds = uniform(rng, mix.runningSeconds);
    const knots = Math.ceil(runningSeconds / PROGRESS_KNOT_SECONDS) + 1;
    const progressNoise = Array.from({ length: knots }, () => uniform(rng, [-mix.progressNoise, mix.progressNoise]));
    return { model, throttledSeconds, runningSeconds, progressNoise };
  });
}

/** Smallest time between two successive looks at one task; Infinity when no task was looked at twice. */
export function minPollGapSeconds(runs: readonly TaskRun[]): number {
  let smallest = Number.POSITIVE_INFINITY;
  for (const run of runs) {
    for (let i = 1; i < run.pollSeconds.length; i++) {
      smallest = Math.min(smallest, (run.pollSeconds[i] ?? 0) - (run.pollSeconds[i - 1] ?? 0));
    }
  }
  return smallest;
}

export interface PollFigures {
  readonly tasks: number;
  readonly pollsPerVideoMean: number;
  readonly detectDelayP50Seconds: number;
  readonly detectDelayP95Seconds: number;
  readonly detectDelayMaxSeconds: number;
  readonly minGapSeconds: number;
  readonly timedOut: number;
}

/** Polls count every look, the one that saw SUCCEEDED included; detect delays only tasks seen finished. */
export function summarizeRuns(runs: readonly TaskRun[]): PollFigures {
  const delays = runs.flatMap((run) => (run.detectedSeconds === undefined ? [] : [run.detectedSeconds - run.finishSeconds]));
  const polls = runs.reduce((sum, run) => sum + run.pollSeconds.length, 0);
  return {
    tasks: runs.length,
    pollsPerVideoMean: runs.length === 0 ? Number.NaN : polls / runs.length,
    detectDelayP50Seconds: percentile(delays, 0.5),
    detectDelayP95Seconds: percentile(delays, 0.95),
    detectDelayMaxSeconds: percentile(delays, 1),
    minGapSeconds: minPollGapSeconds(runs),
    timedOut: runs.length - delays.length,
  };
}
