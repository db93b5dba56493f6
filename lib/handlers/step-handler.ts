import type { z } from 'zod';
import { deduplicationId } from '../clients/queue.js';
import { ConfigError } from '../config.js';
import type { Deps } from '../deps.js';
import { describeError } from '../log.js';
import { toResponse, type StepOutcome } from '../outcome.js';
import type { Delivery } from '../steps/messages.js';
import { deliveryOf, parseJson, readSignedBody } from './auth.js';

/** Answers 500 with the configuration problems (names only, never values). */
export function configErrorResponse(error: ConfigError): Response {
  return Response.json({ outcome: 'error', detail: error.message, problems: error.problems }, { status: 500 });
}

/**
 * The shape every QStash-delivered step shares: verify the signature on the raw body,
 * validate with zod, run one step, map its outcome to QStash's protocol.
 */
export async function handleSignedStep<T>(
  request: Request,
  getDeps: () => Deps,
  schema: z.ZodType<T>,
  step: (deps: Deps, message: T, delivery: Delivery) => Promise<StepOutcome>,
  contextOf: (message: T) => Record<string, unknown> = () => ({}),
): Promise<Response> {
  let deps: Deps;
  try {
    deps = getDeps();
  } catch (error) {
    if (error instanceof ConfigError) return configErrorResponse(error);
    throw error;
  }
  const signed = await readSignedBody(request, deps);
  if (!signed.ok) {
    deps.log.warn({ path: new URL(request.url).pathname }, 'rejected a message with a missing or invalid signature');
    return toResponse({ kind: 'unauthorized', detail: 'invalid or missing Upstash-Signature' });
  }
  const json = parseJson(signed.body);
  const message = json.ok ? schema.safeParse(json.value) : undefined;
  if (!message?.success) {
    const detail = message ? message.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : 'not JSON';
    deps.log.error({ path: new URL(request.url).pathname, problem: detail }, 'signed message failed validation: dropped');
    return toResponse({ kind: 'invalid', detail: `invalid message: ${detail}` });
  }
  const delivery = deliveryOf(request);
  const context = { ...contextOf(message.data), path: new URL(request.url).pathname, retried: delivery.retried };
  let outcome: StepOutcome;
  try {
    outcome = await step(deps, message.data, delivery);
  } catch (error) {
    deps.log.error({ ...context, err: describeError(error) }, 'step failed unexpectedly: QStash will deliver again');
    outcome = { kind: 'retry', detail: 'internal error' };
  }
  if (outcome.kind === 'retry') {
    deps.log.warn({ ...context, detail: outcome.detail }, 'answering retry');
    outcome = { ...outcome, retryAfterSeconds: retryAfterSeconds(deps, delivery, outcome.retryAfterSeconds) };
    if (delivery.last) outcome = await continueAfterLastDelivery(deps, request, json.ok ? json.value : undefined, outcome, context);
  }
  return toResponse(outcome);
}

/**
 * The next delivery comes within one heartbeat interval, so the lease (extended at every
 * heartbeat) cannot lapse between deliveries; QStash's own backoff grows to 30 minutes.
 */
export function retryAfterSeconds(deps: Deps, delivery: Delivery, asked: number | undefined): number {
  const backoff = asked ?? 10 * 2 ** delivery.retried;
  return Math.max(1, Math.min(backoff, deps.config.heartbeatIntervalSeconds));
}

/** Upper bound on fresh messages for one chain after QStash's own retries ran out. */
export const MAX_CONTINUATIONS = 20;
const CONTINUATION_HEADER = 'x-worker-continuation';

/**
 * QStash will not deliver this message again, yet the step still needs another try (a
 * report that must land, a video that is uploaded): publish the same message afresh, a
 * bounded number of times, rather than leave the item leased and forgotten.
 */
async function continueAfterLastDelivery(
  deps: Deps,
  request: Request,
  body: unknown,
  outcome: StepOutcome,
  context: Record<string, unknown>,
): Promise<StepOutcome> {
  const url = new URL(request.url);
  const path = url.pathname;
  if (path !== '/api/runway-callback' && path !== '/api/step-upload') return outcome;
  const count = Number(request.headers.get(CONTINUATION_HEADER) ?? '0');
  const next = Number.isInteger(count) && count >= 0 ? count + 1 : 1;
  if (next > MAX_CONTINUATIONS) {
    deps.log.error({ ...context, continuations: count }, 'giving up after the last continuation: the lease will lapse');
    return { kind: 'stop', detail: `gave up after ${count} continuations` };
  }
  const delaySeconds = Math.min(
    deps.config.runwayPollMaxSeconds,
    Math.max(deps.config.runwayPollMinSeconds, outcome.kind === 'retry' ? (outcome.retryAfterSeconds ?? 0) : 0),
  );
  try {
    await deps.queue.publish({
      path,
      body,
      delaySeconds,
      deduplicationId: deduplicationId('continue', request.headers.get('upstash-message-id') ?? 'unknown', next),
      headers: { [CONTINUATION_HEADER]: String(next) },
    });
  } catch (error) {
    deps.log.error({ ...context, err: describeError(error) }, 'could not publish a continuation');
    return outcome;
  }
  deps.log.warn({ ...context, continuation: next, delay_seconds: delaySeconds }, 'last delivery failed: continuing with a new message');
  return { kind: 'done', detail: `continued as a new message in ${delaySeconds} s` };
}

/** Log context of a step message: which item and Runway task it is about. */
export function jobContext(message: { job: { item_id: string; runway_task_id: string } }): Record<string, unknown> {
  return { item_id: message.job.item_id, runway_task_id: message.job.runway_task_id };
}
