import { UpstreamError } from './errors.js';

/** In-process retry policy for idempotent calls only (design §2 "Errors and retries"). */
export interface RetryPolicy {
  /** Extra attempts after the first. */
  readonly retries: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export const IDEMPOTENT_RETRY: RetryPolicy = { retries: 2, baseDelayMs: 300, maxDelayMs: 3_000 };

/**
 * The wait before retry number `attempt + 1`: exponential backoff with up to 50 % jitter
 * (Runway's advice), capped. A Retry-After the service sent is honoured when it fits under
 * the cap; when it asks for longer, the answer is undefined: a sooner try would only be
 * refused again, so the failure goes up and QStash's redelivery tries later.
 */
export function backoffDelayMs(
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
  retryAfterSeconds?: number,
): number | undefined {
  if (retryAfterSeconds !== undefined) {
    const askedMs = retryAfterSeconds * 1000;
    return askedMs <= policy.maxDelayMs ? askedMs : undefined;
  }
  const exponential = Math.min(policy.baseDelayMs * 2 ** attempt, policy.maxDelayMs);
  return Math.round(exponential * (1 - 0.5 * random()));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `call`, retrying only UpstreamErrors marked retryable. */
export async function withRetry<T>(call: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const retryable = error instanceof UpstreamError && error.retryable;
      if (!retryable || attempt >= policy.retries) throw error;
      const delayMs = backoffDelayMs(attempt, policy, Math.random, error.retryAfterSeconds);
      if (delayMs === undefined) throw error;
      await sleep(delayMs);
    }
  }
}
