import { describe, expect, it } from 'vitest';
import { PermanentError, UpstreamError } from '../../lib/errors.js';
import { backoffDelayMs, IDEMPOTENT_RETRY, withRetry, type RetryPolicy } from '../../lib/retry.js';

/** The in-process retry policy for idempotent calls (design §2 "Errors and retries"). */

const policy: RetryPolicy = { retries: 5, baseDelayMs: 300, maxDelayMs: 3_000 };

describe('the backoff between tries', () => {
  it('doubles from the base delay and stops growing at the cap', () => {
    const delays = [0, 1, 2, 3, 4, 5].map((attempt) => backoffDelayMs(attempt, policy, () => 0));

    expect(delays).toEqual([300, 600, 1_200, 2_400, 3_000, 3_000]);
  });

  it('takes off up to half as jitter, so parallel callers spread out', () => {
    expect(backoffDelayMs(1, policy, () => 0.5)).toBe(450);
    expect(backoffDelayMs(1, policy, () => 0.999_999)).toBe(300);
    expect(backoffDelayMs(9, policy, () => 0.999_999)).toBe(1_500);
  });

  it.each([
    [0, 0],
    [2, 2_000],
    [3, 3_000],
  ])('waits exactly the %s s Retry-After asked when it fits under the cap, without jitter', (seconds, ms) => {
    expect(backoffDelayMs(0, policy, () => 0.5, seconds)).toBe(ms);
  });

  it('has no wait to offer when Retry-After asks for longer than the cap', () => {
    expect(backoffDelayMs(0, policy, () => 0, 4)).toBeUndefined();
    expect(backoffDelayMs(0, IDEMPOTENT_RETRY, () => 0, 3_600)).toBeUndefined();
  });
});

describe('a call run with retries', () => {
  const quick: RetryPolicy = { retries: 2, baseDelayMs: 1, maxDelayMs: 5 };

  /** A call that throws `errors` in turn, then answers how many tries it took. */
  function flaky(errors: readonly Error[]): { run: () => Promise<number>; tries: () => number } {
    let tries = 0;
    return {
      run: () => {
        tries += 1;
        const error = errors[tries - 1];
        return error === undefined ? Promise.resolve(tries) : Promise.reject(error);
      },
      tries: () => tries,
    };
  }

  const transient = (): UpstreamError => new UpstreamError('app', 'app: heartbeat answered 503', { status: 503, retryable: true });

  it('answers with the first success after retryable failures', async () => {
    const call = flaky([transient(), transient()]);

    expect(await withRetry(call.run, quick)).toBe(3);
  });

  it.each([
    ['a final UpstreamError', new UpstreamError('runway', 'runway: task lookup answered 401', { status: 401, retryable: false })],
    ['a PermanentError', new PermanentError('photo', 'photo: not an image')],
    ['any other error', new TypeError('x is undefined')],
  ])('throws %s at once, without another try', async (_name, error) => {
    const call = flaky([error]);

    await expect(withRetry(call.run, quick)).rejects.toBe(error);
    expect(call.tries()).toBe(1);
  });

  it('throws the last failure once its retries are spent', async () => {
    const last = transient();
    const call = flaky([transient(), transient(), last, transient()]);

    await expect(withRetry(call.run, quick)).rejects.toBe(last);
    expect(call.tries()).toBe(3);
  });
});
