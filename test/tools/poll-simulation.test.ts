import { describe, expect, it } from 'vitest';
import { percentile } from '../../tools/bench/stats.js';
import { RUNWAY_MODELS } from '../../lib/config.js';
import { nextPollDelaySeconds, type PollScheduleInput } from '../../lib/decide/poll-schedule.js';
import {
  MAX_PROGRESS_BEFORE_FINISH,
  finishSecondsOf,
  generateTasks,
  lookAtTask,
  minPollGapSeconds,
  runTask,
  summarizeRuns,
  type PollSchedule,
  type SimulatedTask,
  type TaskMix,
} from '../../tools/bench/poll-simulation.js';

/**
 * The poll-schedule bench's virtual Runway tasks: what a look at a task answers, how a
 * schedule is called for one task, and the figures drawn from many.
 */

const BOUNDS = { minSeconds: 5, maxSeconds: 60, timeoutSeconds: 600 } as const;
const MIX: TaskMix = {
  count: 2_000,
  seed: 7,
  runningSeconds: [20, 180],
  throttledShare: 0.1,
  throttledSeconds: [0, 120],
  progressNoise: 0.05,
};
const every5Seconds: PollSchedule = () => 5;
const linearTask = (runningSeconds: number, throttledSeconds = 0): SimulatedTask => ({ model: 'gen4_turbo', throttledSeconds, runningSeconds, progressNoise: [] });

/** A schedule that answers `delays` in turn and records every input it was given. */
function scripted(delays: readonly number[]): { schedule: PollSchedule; inputs: PollScheduleInput[] } {
  const inputs: PollScheduleInput[] = [];
  const schedule: PollSchedule = (input) => {
    inputs.push(input);
    return delays[inputs.length - 1] ?? 5;
  };
  return { schedule, inputs };
}

describe('a look at a simulated task', () => {
  const task = linearTask(40, 12);

  it('sees THROTTLED without progress during the queue', () => {
    expect(lookAtTask(task, 0)).toEqual({ status: 'THROTTLED', progress: undefined });
    expect(lookAtTask(task, 11.9)).toEqual({ status: 'THROTTLED', progress: undefined });
  });

  it('sees RUNNING with progress rising from 0 in step with the running time', () => {
    expect(lookAtTask(task, 12)).toEqual({ status: 'RUNNING', progress: 0 });
    expect(lookAtTask(task, 22)).toEqual({ status: 'RUNNING', progress: 0.25 });
    expect(lookAtTask(task, 42)).toEqual({ status: 'RUNNING', progress: 0.75 });
  });

  it('never sees progress 1 before the finish, and SUCCEEDED from the finish on', () => {
    expect(lookAtTask(task, 51.9).progress).toBe(MAX_PROGRESS_BEFORE_FINISH);
    expect(lookAtTask(task, 52)).toEqual({ status: 'SUCCEEDED', progress: undefined });
    expect(finishSecondsOf(task)).toBe(52);
  });

  it('adds the noise between its knots, 10 s apart, and clamps progress at 0', () => {
    const noisy: SimulatedTask = { ...linearTask(100), progressNoise: [-0.1, 0.1, -0.1] };
    expect(lookAtTask(noisy, 0).progress).toBe(0);
    expect(lookAtTask(noisy, 5).progress).toBeCloseTo(0.05);
    expect(lookAtTask(noisy, 10).progress).toBeCloseTo(0.2);
    expect(lookAtTask(noisy, 15).progress).toBeCloseTo(0.15);
    // Past the last knot the noise fades to nothing.
    expect(lookAtTask(noisy, 25).progress).toBeCloseTo(0.2);
    expect(lookAtTask(noisy, 50).progress).toBeCloseTo(0.5);
  });
});

describe('one task polled every 5 s', () => {
  it('counts every look up to and including the one that sees SUCCEEDED', () => {
    const run = runTask(linearTask(23), every5Seconds, BOUNDS);
    expect(run.pollSeconds).toEqual([5, 10, 15, 20, 25]);
    expect(run.detectedSeconds).toBe(25);
    expect(run.finishSeconds).toBe(23);
    expect(run.throttled).toBe(false);
    expect(summarizeRuns([run])).toMatchObject({ pollsPerVideoMean: 5, detectDelayP50Seconds: 2, minGapSeconds: 5, timedOut: 0 });
  });

  it('sees a task that finishes on a look at that very look', () => {
    const run = runTask(linearTask(20), every5Seconds, BOUNDS);
    expect(run.pollSeconds).toEqual([5, 10, 15, 20]);
    expect(run.detectedSeconds).toBe(20);
  });
});

describe('the inputs a schedule is given', () => {
  it('are the worker\'s: first PENDING with no polls and no timeout, then what each look saw, counting that look', () => {
    const { schedule, inputs } = scripted([5, 5, 5, 20]);
    runTask({ ...linearTask(20, 12), model: 'veo3.1' }, schedule, BOUNDS);
    const common = { model: 'veo3.1', minSeconds: 5, maxSeconds: 60 };
    expect(inputs).toEqual([
      { ...common, status: 'PENDING', progress: undefined, elapsedSeconds: 0, polls: 0 },
      { ...common, status: 'THROTTLED', progress: undefined, elapsedSeconds: 5, polls: 1, timeoutSeconds: 600 },
      { ...common, status: 'THROTTLED', progress: undefined, elapsedSeconds: 10, polls: 2, timeoutSeconds: 600 },
      { ...common, status: 'RUNNING', progress: 0.15, elapsedSeconds: 15, polls: 3, timeoutSeconds: 600 },
    ]);
  });
});

describe('a schedule that looks only at the finish', () => {
  it('sees every task with one look and no delay', () => {
    const tasks = [linearTask(37), linearTask(120, 45), { ...linearTask(64), progressNoise: [0.04, -0.03] }];
    const runs = tasks.map((task) => runTask(task, ({ elapsedSeconds }) => finishSecondsOf(task) - elapsedSeconds, BOUNDS));
    expect(runs.map((run) => run.pollSeconds)).toEqual([[37], [165], [64]]);
    expect(summarizeRuns(runs)).toMatchObject({ pollsPerVideoMean: 1, detectDelayP50Seconds: 0, detectDelayP95Seconds: 0, detectDelayMaxSeconds: 0 });
  });
});

describe('a task that outlasts the timeout', () => {
  it('stops at the first look at or past the timeout, counted as timed out and not as a detect delay', () => {
    const run = runTask(linearTask(100), () => 12, { ...BOUNDS, timeoutSeconds: 30 });
    expect(run.pollSeconds).toEqual([12, 24, 36]);
    expect(run.detectedSeconds).toBeUndefined();
    const figures = summarizeRuns([run, runTask(linearTask(20), every5Seconds, BOUNDS)]);
    expect(figures).toMatchObject({ tasks: 2, pollsPerVideoMean: 3.5, detectDelayP50Seconds: 0, timedOut: 1 });
  });
});

describe('a schedule that misbehaves', () => {
  it.each([0, -5, Number.NaN])('stops the run when it answers a delay of %d s', (delay) => {
    expect(() => runTask(linearTask(30), () => delay, BOUNDS)).toThrow(/delay/);
  });
});

describe('generated tasks', () => {
  const tasks = generateTasks(MIX);

  it('are the same for the same seed and differ for another', () => {
    expect(generateTasks(MIX)).toEqual(tasks);
    expect(generateTasks({ ...MIX, seed: 8 })).not.toEqual(tasks);
  });

  it('spread over the models in equal shares', () => {
    for (const model of RUNWAY_MODELS) expect(tasks.filter((task) => task.model === model)).toHaveLength(MIX.count / RUNWAY_MODELS.length);
  });

  it('run 20-180 s, about one in ten after a THROTTLED wait of at most 120 s', () => {
    expect(tasks.every((task) => task.runningSeconds >= 20 && task.runningSeconds <= 180)).toBe(true);
    const throttled = tasks.filter((task) => task.throttledSeconds > 0);
    expect(throttled.length).toBeGreaterThan(0.08 * MIX.count);
    expect(throttled.length).toBeLessThan(0.12 * MIX.count);
    expect(throttled.every((task) => task.throttledSeconds <= 120)).toBe(true);
  });

  it('report progress within 0..0.99 that tracks the running share within the noise', () => {
    for (const task of tasks.slice(0, 200)) {
      for (let at = task.throttledSeconds; at < finishSecondsOf(task); at += 7) {
        const { status, progress = Number.NaN } = lookAtTask(task, at);
        expect(status).toBe('RUNNING');
        expect(progress).toBeGreaterThanOrEqual(0);
        expect(progress).toBeLessThanOrEqual(MAX_PROGRESS_BEFORE_FINISH);
        expect(Math.abs(progress - (at - task.throttledSeconds) / task.runningSeconds)).toBeLessThanOrEqual(MIX.progressNoise + 1e-9);
      }
    }
  });
});

describe('many generated tasks', () => {
  const tasks = generateTasks(MIX);

  it('polled every 5 s are each seen within [0, 5) s of their finish', () => {
    const runs = tasks.map((task) => runTask(task, every5Seconds, BOUNDS));
    const delays = runs.map((run) => (run.detectedSeconds ?? Number.NaN) - run.finishSeconds);
    expect(delays.every((delay) => delay >= 0 && delay < 5)).toBe(true);
    expect(minPollGapSeconds(runs)).toBe(5);
  });

  it('polled by the worker\'s schedule are never looked at twice within RUNWAY_POLL_MIN_SECONDS', () => {
    const runs = tasks.map((task) => runTask(task, nextPollDelaySeconds, BOUNDS));
    expect(minPollGapSeconds(runs)).toBeGreaterThanOrEqual(BOUNDS.minSeconds);
    expect(runs.every((run) => run.detectedSeconds !== undefined && run.detectedSeconds >= run.finishSeconds)).toBe(true);
  });
});

describe('the smallest gap between looks', () => {
  it('is taken between successive looks at one task, never from the create or across tasks', () => {
    const { schedule } = scripted([2, 10, 7, 12, 30]);
    const run = runTask(linearTask(50), schedule, BOUNDS);
    expect(run.pollSeconds).toEqual([2, 12, 19, 31, 61]);
    expect(minPollGapSeconds([run])).toBe(7);
    expect(minPollGapSeconds([run, runTask(linearTask(20), () => 20, BOUNDS)])).toBe(7);
  });

  it('is infinite when no task was looked at twice', () => {
    expect(minPollGapSeconds([runTask(linearTask(20), () => 20, BOUNDS)])).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('percentiles', () => {
  const oneToTwenty = Array.from({ length: 20 }, (_, i) => 20 - i);

  it('are nearest-rank, whatever the order of the values', () => {
    expect(percentile(oneToTwenty, 0.5)).toBe(10);
    expect(percentile(oneToTwenty, 0.95)).toBe(19);
    expect(percentile(oneToTwenty, 1)).toBe(20);
    expect(percentile(oneToTwenty, 0)).toBe(1);
    expect(percentile([3, 1, 2], 0.5)).toBe(2);
  });

  it('are NaN for no values', () => {
    expect(percentile([], 0.5)).toBeNaN();
  });
});
