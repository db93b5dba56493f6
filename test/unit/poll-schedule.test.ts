import { describe, expect, it } from 'vitest';
import { RUNWAY_MODELS } from '../../lib/config.js';
import {
  heartbeatDue,
  nextPollDelaySeconds,
  RUNWAY_MIN_POLL_SECONDS,
  timedOut,
  type PollScheduleInput,
} from '../../lib/decide/poll-schedule.js';

const BOUNDS = { minSeconds: 5, maxSeconds: 60 } as const;
const poll = (input: Omit<PollScheduleInput, 'minSeconds' | 'maxSeconds'> & Partial<PollScheduleInput>): number =>
  nextPollDelaySeconds({ ...BOUNDS, ...input });

describe('the first poll of a new task', () => {
  // Typical times 45, 90, 90 and 50 s: a third of each, so the fast tasks are not left waiting.
  it.each([
    ['gen4_turbo', 15],
    ['gen4.5', 30],
    ['veo3.1', 30],
    ['veo3.1_fast', 17],
  ] as const)('on %s comes at a third of the typical time (%i s)', (model, seconds) => {
    expect(poll({ model, status: 'PENDING', elapsedSeconds: 0, polls: 0 })).toBe(seconds);
  });

  it('comes at a third of the typical time even when the maximum allows the whole of it', () => {
    expect(nextPollDelaySeconds({ model: 'gen4.5', status: 'PENDING', elapsedSeconds: 0, polls: 0, minSeconds: 5, maxSeconds: 300 })).toBe(30);
  });

  it('comes no later than a maximum configured below it', () => {
    expect(nextPollDelaySeconds({ model: 'gen4.5', status: 'PENDING', elapsedSeconds: 0, polls: 0, minSeconds: 5, maxSeconds: 20 })).toBe(20);
  });

  it('counts the time already spent since submission', () => {
    expect(poll({ model: 'gen4.5', status: 'PENDING', elapsedSeconds: 10, polls: 0 })).toBe(20);
  });

  it('is resumed at the minimum when the task is already past its typical time', () => {
    expect(poll({ model: 'gen4_turbo', status: 'RUNNING', progress: 0.3, elapsedSeconds: 400, polls: 0 })).toBe(5);
  });
});

describe('a running task that reports progress', () => {
  it('is polled a little before the finish estimated from its rate', () => {
    // 40 s for 80 % of the work: about 10 s left, polled at 0.9 × 10 + 2.
    expect(poll({ model: 'gen4_turbo', status: 'RUNNING', progress: 0.8, elapsedSeconds: 40, polls: 1 })).toBe(11);
  });

  it('is polled within 30 s however far off the estimated finish, since the elapsed time may include a queue', () => {
    // 40 s for half the work would put the finish 38 s out; a wait in THROTTLED first would make it sooner.
    expect(poll({ model: 'gen4_turbo', status: 'RUNNING', progress: 0.5, elapsedSeconds: 40, polls: 1 })).toBe(30);
    expect(nextPollDelaySeconds({ model: 'gen4.5', status: 'RUNNING', progress: 0.1, elapsedSeconds: 50, polls: 1, minSeconds: 5, maxSeconds: 300 })).toBe(30);
  });

  it('is polled at the configured minimum when that is above 30 s', () => {
    expect(nextPollDelaySeconds({ model: 'gen4.5', status: 'RUNNING', progress: 0.1, elapsedSeconds: 50, polls: 1, minSeconds: 40, maxSeconds: 300 })).toBe(40);
  });

  it('is polled soon when nearly done', () => {
    expect(poll({ model: 'veo3.1', status: 'RUNNING', progress: 0.9, elapsedSeconds: 90, polls: 2 })).toBe(11);
  });

  it('is polled at the minimum once progress reaches 1', () => {
    expect(poll({ model: 'veo3.1', status: 'RUNNING', progress: 1, elapsedSeconds: 90, polls: 2 })).toBe(5);
  });

  it('is polled at the minimum once progress reaches 1, even when no time seems to have passed', () => {
    expect(poll({ model: 'veo3.1', status: 'RUNNING', progress: 1, elapsedSeconds: 0, polls: 2 })).toBe(5);
  });

  it('waits for the typical finish, at most 30 s, when no time seems to have passed (clock skew), whatever the progress', () => {
    expect(poll({ model: 'gen4_turbo', status: 'RUNNING', progress: 0.5, elapsedSeconds: 0, polls: 1 })).toBe(30);
  });

  it('is polled at most at a maximum configured below 30 s when progress is slow', () => {
    expect(nextPollDelaySeconds({ model: 'gen4_turbo', status: 'RUNNING', progress: 0.1, elapsedSeconds: 50, polls: 1, minSeconds: 5, maxSeconds: 20 })).toBe(20);
  });

  it('is polled sooner as progress grows, at the same elapsed time', () => {
    const delays = [0.1, 0.3, 0.5, 0.7, 0.9, 0.99].map((progress) =>
      poll({ model: 'gen4.5', status: 'RUNNING', progress, elapsedSeconds: 60, polls: 3 }),
    );
    expect([...delays].sort((a, b) => b - a)).toEqual(delays);
  });
});

describe('a running task without usable progress', () => {
  it.each([undefined, null, 0, 0.05, Number.NaN, -1])('waits for the typical finish (progress %s)', (progress) => {
    expect(poll({ model: 'gen4_turbo', status: 'RUNNING', progress, elapsedSeconds: 20, polls: 1 })).toBe(25);
  });

  it('waits at most 30 s for a typical finish further off', () => {
    expect(poll({ model: 'gen4.5', status: 'RUNNING', elapsedSeconds: 20, polls: 1 })).toBe(30);
  });

  it('checks back at twice the minimum once the typical finish has passed', () => {
    expect(poll({ model: 'gen4_turbo', status: 'RUNNING', elapsedSeconds: 100, polls: 3 })).toBe(10);
  });
});

describe('a queued task (PENDING or THROTTLED)', () => {
  it.each(['PENDING', 'THROTTLED'])('is polled more slowly with every poll while %s, up to the maximum', (status) => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 20].map((polls) => poll({ model: 'gen4_turbo', status, elapsedSeconds: 45 * polls, polls }));
    expect(delays).toEqual([10, 15, 23, 34, 51, 60, 60, 60]);
  });

  it('is polled no faster than a running task close to finishing', () => {
    const queued = poll({ model: 'gen4_turbo', status: 'THROTTLED', elapsedSeconds: 50, polls: 1 });
    const running = poll({ model: 'gen4_turbo', status: 'RUNNING', progress: 0.95, elapsedSeconds: 50, polls: 1 });
    expect(queued).toBeGreaterThanOrEqual(running);
  });

  it('treats a status Runway may add later like a queued one', () => {
    expect(poll({ model: 'gen4_turbo', status: 'WARMING_UP', elapsedSeconds: 50, polls: 2 })).toBe(15);
  });

  it('starts at twice the configured minimum', () => {
    expect(nextPollDelaySeconds({ model: 'veo3.1', status: 'THROTTLED', elapsedSeconds: 60, polls: 1, minSeconds: 12, maxSeconds: 300 })).toBe(24);
  });
});

describe('the bounds', () => {
  it('never go below the 5 s Runway asks for, even when configured lower', () => {
    expect(nextPollDelaySeconds({ model: 'gen4_turbo', status: 'RUNNING', progress: 1, elapsedSeconds: 9, polls: 1, minSeconds: 1, maxSeconds: 60 })).toBe(RUNWAY_MIN_POLL_SECONDS);
  });

  it('use the minimum when the maximum is configured below it', () => {
    expect(nextPollDelaySeconds({ model: 'gen4_turbo', status: 'PENDING', elapsedSeconds: 0, polls: 0, minSeconds: 20, maxSeconds: 10 })).toBe(20);
  });

  it('are rounded to whole seconds inward', () => {
    expect(nextPollDelaySeconds({ model: 'gen4_turbo', status: 'RUNNING', progress: 1, elapsedSeconds: 9, polls: 1, minSeconds: 6.2, maxSeconds: 60 })).toBe(7);
    expect(nextPollDelaySeconds({ model: 'gen4_turbo', status: 'THROTTLED', elapsedSeconds: 100, polls: 10, minSeconds: 5, maxSeconds: 30.8 })).toBe(30);
  });
});

describe('a task close to its timeout', () => {
  it('is polled right when the timeout passes, so the timeout is noticed promptly', () => {
    expect(poll({ model: 'gen4_turbo', status: 'THROTTLED', elapsedSeconds: 590, polls: 12, timeoutSeconds: 600 })).toBe(10);
  });

  it('is still polled no sooner than the minimum', () => {
    expect(poll({ model: 'gen4_turbo', status: 'THROTTLED', elapsedSeconds: 599, polls: 12, timeoutSeconds: 600 })).toBe(5);
    expect(poll({ model: 'gen4_turbo', status: 'THROTTLED', elapsedSeconds: 700, polls: 12, timeoutSeconds: 600 })).toBe(5);
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY])('is unaffected by a timeout of %d', (timeoutSeconds) => {
    expect(poll({ model: 'gen4.5', status: 'PENDING', elapsedSeconds: 10, polls: 0, timeoutSeconds })).toBe(20);
  });

  it('is unaffected while the timeout is far away', () => {
    expect(poll({ model: 'gen4_turbo', status: 'THROTTLED', elapsedSeconds: 100, polls: 12, timeoutSeconds: 600 })).toBe(60);
  });
});

describe('any input', () => {
  const statuses = ['PENDING', 'THROTTLED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'SOMETHING_NEW', ''];
  const progresses = [undefined, null, -1, 0, 0.01, 0.05, 0.06, 0.2, 0.5, 0.8, 0.999, 1, 2, Number.NaN, Number.POSITIVE_INFINITY];
  const elapsed = [0, 0.4, 1, 5, 30, 44.6, 90, 300, 599, 600, 5000, -10, Number.NaN];
  const polls = [0, 1, 2, 5, 10, 50, 1e6, -1, 2.5];
  const bounds = [
    [5, 60],
    [1, 2],
    [10, 10],
    [30, 20],
    [5, 3600],
    [0, 0],
    [Number.NaN, Number.NaN],
    [7, Number.POSITIVE_INFINITY],
  ] as const;
  const timeouts = [undefined, 600, 30, 0];

  it('gives an integer delay within [max(5, min), max(min, max)] over a sweep of every parameter', () => {
    const violations: string[] = [];
    let checked = 0;
    for (const model of RUNWAY_MODELS) {
      for (const status of statuses) {
        for (const progress of progresses) {
          for (const elapsedSeconds of elapsed) {
            for (const pollCount of polls) {
              for (const [minSeconds, maxSeconds] of bounds) {
                for (const timeoutSeconds of timeouts) {
                  const input = { model, status, progress, elapsedSeconds, polls: pollCount, minSeconds, maxSeconds, timeoutSeconds };
                  const delay = nextPollDelaySeconds(input);
                  const floor = Math.max(5, Number.isFinite(minSeconds) ? Math.ceil(minSeconds) : 5);
                  const ceiling = Number.isFinite(maxSeconds) ? Math.max(floor, Math.floor(maxSeconds)) : floor;
                  if (!Number.isInteger(delay) || delay < floor || delay > ceiling) {
                    violations.push(`${JSON.stringify(input)} → ${delay}`);
                  }
                  checked += 1;
                }
              }
            }
          }
        }
      }
    }
    expect(violations.slice(0, 5)).toEqual([]);
    expect(checked).toBeGreaterThan(100_000);
  });

  it('gives the same answer for the same input', () => {
    const input: PollScheduleInput = { model: 'veo3.1', status: 'RUNNING', progress: 0.37, elapsedSeconds: 51, polls: 3, minSeconds: 5, maxSeconds: 60 };
    expect(new Set(Array.from({ length: 20 }, () => nextPollDelaySeconds(input))).size).toBe(1);
  });
});

describe('heartbeats', () => {
  const intervalSeconds = 120;

  it('are due when none was sent yet', () => {
    expect(heartbeatDue({ nowMs: 1_000, lastHeartbeatMs: undefined, intervalSeconds })).toBe(true);
    expect(heartbeatDue({ nowMs: 1_000, lastHeartbeatMs: null, intervalSeconds })).toBe(true);
  });

  it('are due once the interval has passed, not before', () => {
    expect(heartbeatDue({ nowMs: 1_000_000 + 119_999, lastHeartbeatMs: 1_000_000, intervalSeconds })).toBe(false);
    expect(heartbeatDue({ nowMs: 1_000_000 + 120_000, lastHeartbeatMs: 1_000_000, intervalSeconds })).toBe(true);
    expect(heartbeatDue({ nowMs: 1_000_000 + 500_000, lastHeartbeatMs: 1_000_000, intervalSeconds })).toBe(true);
  });

  it('are not due when the last one looks like it came from the future (clock skew)', () => {
    expect(heartbeatDue({ nowMs: 1_000_000, lastHeartbeatMs: 1_060_000, intervalSeconds })).toBe(false);
  });
});

describe('the Runway timeout', () => {
  const submittedAtMs = 1_700_000_000_000;

  it('has not passed one millisecond before the limit', () => {
    expect(timedOut({ nowMs: submittedAtMs + 599_999, submittedAtMs, timeoutSeconds: 600 })).toBe(false);
  });

  it('has passed at the limit and after it', () => {
    expect(timedOut({ nowMs: submittedAtMs + 600_000, submittedAtMs, timeoutSeconds: 600 })).toBe(true);
    expect(timedOut({ nowMs: submittedAtMs + 3_600_000, submittedAtMs, timeoutSeconds: 600 })).toBe(true);
  });

  it('has not passed right after submission', () => {
    expect(timedOut({ nowMs: submittedAtMs, submittedAtMs, timeoutSeconds: 600 })).toBe(false);
  });
});
