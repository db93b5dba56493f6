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
 * Exponential backoff with up to 50 % jitter (Runway's advice), capped, honouring a
 * Retry-After the service sent when it fits under the cap.
 */
export function backoffDelayMs(
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
  retryAfterSeconds?: number,
): number {
  if (retryAfterSeconds !== undefined && retryAfterSeconds >= 0) {
    return Math.min(retryAfterSeconds * 1000, policy.maxDelayMs);
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
      await sleep(backoffDelayMs(attempt, policy, Math.random, error.retryAfterSeconds));
    }
  }
}
