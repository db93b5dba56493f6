/**
 * What a step ended with, as a value; `toResponse` is the one place that maps it onto
 * QStash's protocol: 2xx done, 5xx retry, 489 + Upstash-NonRetryable-Error stop.
 */
export type StepOutcome =
  /** The step did its work (or found it already done: duplicates count as success). */
  | { readonly kind: 'done'; readonly detail: string; readonly data?: Record<string, unknown> }
  /** Something transient failed: QStash should deliver again. */
  | { readonly kind: 'retry'; readonly detail: string; readonly retryAfterSeconds?: number }
  /** A permanent failure, already reported (or nothing to report): do not deliver again. */
  | { readonly kind: 'stop'; readonly detail: string }
  /** The message itself is unusable: nothing happened, do not deliver again. */
  | { readonly kind: 'invalid'; readonly detail: string }
  | { readonly kind: 'unauthorized'; readonly detail: string };

export function toResponse(outcome: StepOutcome): Response {
  const body = { outcome: outcome.kind, detail: outcome.detail, ...(outcome.kind === 'done' ? outcome.data : {}) };
  switch (outcome.kind) {
    case 'done':
      return Response.json(body, { status: 200 });
    case 'retry':
      return Response.json(body, {
        status: 503,
        headers: outcome.retryAfterSeconds ? { 'retry-after': String(Math.ceil(outcome.retryAfterSeconds)) } : {},
      });
    case 'stop':
    case 'invalid':
      return Response.json(body, { status: 489, headers: { 'upstash-nonretryable-error': 'true' } });
    case 'unauthorized':
      return Response.json(body, { status: 401 });
  }
}
