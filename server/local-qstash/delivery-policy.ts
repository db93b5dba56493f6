/** QStash documents every redelivery delay as capped at one day. */
const MAX_RETRY_DELAY_MS = 86_400_000;
export const NON_RETRYABLE_STATUS = 489;

/** What one delivery attempt came back with. */
export type AttemptOutcome =
  | {
      readonly kind: 'response';
      readonly status: number;
      /** `Upstash-NonRetryable-Error: true` was set on the answer. */
      readonly nonRetryable: boolean;
      /** From `Retry-After`, unscaled ms; undefined when absent or unreadable. */
      readonly retryAfterMs: number | undefined;
    }
  | { readonly kind: 'error'; readonly error: string };

export type NextStep =
  | { readonly kind: 'succeeded' }
  | { readonly kind: 'stopped' }
  /** Redeliver as `Upstash-Retried: retried` after `delayMs` (unscaled). */
  | { readonly kind: 'retry'; readonly retried: number; readonly delayMs: number }
  | { readonly kind: 'failed' };

/**
 * QStash's documented default backoff: `min(1 day, e^(2.5 n))` seconds before the n-th
 * redelivery, about 12 s, 2.5 min, 30 min.
 */
export function defaultRetryDelayMs(retried: number): number {
  return Math.min(MAX_RETRY_DELAY_MS, Math.exp(2.5 * retried) * 1000);
}

/** Decides what follows the attempt numbered `retried` (0 for the first delivery). */
export function decideNextStep(
  outcome: AttemptOutcome,
  retried: number,
  retries: number,
  retryDelayMs: (retried: number) => number,
): NextStep {
  if (outcome.kind === 'response') {
    if (isSuccess(outcome.status)) return { kind: 'succeeded' };
    if (outcome.status === NON_RETRYABLE_STATUS && outcome.nonRetryable) return { kind: 'stopped' };
  }
  if (retried >= retries) return { kind: 'failed' };
  const next = retried + 1;
  const retryAfterMs = outcome.kind === 'response' ? outcome.retryAfterMs : undefined;
  return { kind: 'retry', retried: next, delayMs: retryAfterMs ?? retryDelayMs(next) };
}

/** `Retry-After` as delay-seconds or an HTTP date, in ms from `nowMs`; undefined when unusable. */
export function parseRetryAfterMs(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Math.min(MAX_RETRY_DELAY_MS, Number(trimmed) * 1000);
  const dateMs = Date.parse(trimmed);
  if (Number.isNaN(dateMs)) return undefined;
  return Math.min(MAX_RETRY_DELAY_MS, Math.max(0, dateMs - nowMs));
}

export function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}
