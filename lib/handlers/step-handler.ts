import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { deduplicationId, type StepPath } from '../clients/queue.js';
import { ConfigError } from '../config.js';
import type { Deps } from '../deps.js';
import { describeError } from '../log.js';
import { toResponse, type StepOutcome } from '../outcome.js';
import type { Delivery } from '../steps/messages.js';
import { deliveryOf, parseJson, readSignedBody } from './auth.js';

/**
 * The deps for one request, or the answer when the configuration is incomplete: 500 with
 * the problems (names only, never values). Anything else thrown is a bug and goes up.
 */
export function depsOrError(getDeps: () => Deps): Deps | Response {
  try {
    return getDeps();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return Response.json({ outcome: 'error', detail: error.message, problems: error.problems }, { status: 500 });
  }
}

/** What every step message carries: the job it is about. */
interface StepMessage {
  readonly job: { readonly item_id: string; readonly runway_task_id: string };
}

type RetryOutcome = Extract<StepOutcome, { kind: 'retry' }> & { readonly retryAfterSeconds: number };

/**
 * The shape every QStash-delivered step shares: verify the signature on the raw body,
 * validate with zod, run one step, map its outcome to QStash's protocol. `path` is where
 * QStash delivers the step's messages, and where a continuation goes.
 */
export async function handleSignedStep<T extends StepMessage>(
  request: Request,
  getDeps: () => Deps,
  path: StepPath,
  schema: z.ZodType<T>,
  step: (deps: Deps, message: T, delivery: Delivery) => Promise<StepOutcome>,
): Promise<Response> {
  const deps = depsOrError(getDeps);
  if (deps instanceof Response) return deps;
  const signed = await readSignedBody(request, deps);
  if (!signed.ok) {
    deps.log.warn({ path }, 'rejected a message with a missing or invalid signature');
    return toResponse({ kind: 'unauthorized', detail: 'invalid or missing Upstash-Signature' });
  }
  const json = parseJson(signed.body);
  if (!json.ok) return dropInvalid(deps, path, 'not JSON');
  const message = schema.safeParse(json.value);
  if (!message.success) {
    return dropInvalid(deps, path, message.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  }
  const delivery = deliveryOf(request);
  const { item_id, runway_task_id } = message.data.job;
  const context = { item_id, runway_task_id, path, retried: delivery.retried };
  let outcome: StepOutcome;
  try {
    outcome = await step(deps, message.data, delivery);
  } catch (error) {
    deps.log.error({ ...context, err: describeError(error) }, 'step failed unexpectedly: QStash will deliver again');
    outcome = { kind: 'retry', detail: 'internal error' };
  }
  if (outcome.kind !== 'retry') return toResponse(outcome);
  deps.log.warn({ ...context, detail: outcome.detail }, 'answering retry');
  const retry: RetryOutcome = { ...outcome, retryAfterSeconds: retryAfterSeconds(deps, delivery, outcome.retryAfterSeconds) };
  if (!delivery.last) return toResponse(retry);
  const continuation = { path, body: json.value, rawBody: signed.body };
  return toResponse(await continueAfterLastDelivery(deps, request, continuation, retry, context));
}

function dropInvalid(deps: Deps, path: StepPath, problem: string): Response {
  deps.log.error({ path, problem }, 'signed message failed validation: dropped');
  return toResponse({ kind: 'invalid', detail: `invalid message: ${problem}` });
}

/**
 * The next delivery comes within one heartbeat interval, so the lease (extended at every
 * heartbeat) cannot lapse between deliveries; QStash's own backoff grows to 30 minutes.
 */
function retryAfterSeconds(deps: Deps, delivery: Delivery, asked: number | undefined): number {
  const backoff = asked ?? 10 * 2 ** delivery.retried;
  return Math.max(1, Math.min(backoff, deps.config.heartbeatIntervalSeconds));
}

/** Upper bound on fresh messages for one chain after QStash's own retries ran out. */
export const MAX_CONTINUATIONS = 20;
/** Forwarded with every continuation: how many the chain has had so far. */
export const CONTINUATION_HEADER = 'x-worker-continuation';

interface Continuation {
  readonly path: StepPath;
  /** The validated message, published again as it came. */
  readonly body: unknown;
  readonly rawBody: string;
}

/**
 * QStash will not deliver this message again, yet the step still needs another try (a
 * report that must land, a video that is uploaded): publish the same message afresh, a
 * bounded number of times, rather than leave the item leased and forgotten.
 */
async function continueAfterLastDelivery(
  deps: Deps,
  request: Request,
  continuation: Continuation,
  outcome: RetryOutcome,
  context: Record<string, unknown>,
): Promise<StepOutcome> {
  const count = Number(request.headers.get(CONTINUATION_HEADER) ?? '0');
  const next = Number.isInteger(count) && count >= 0 ? count + 1 : 1;
  if (next > MAX_CONTINUATIONS) {
    deps.log.error({ ...context, continuations: count }, 'giving up after the last continuation: the lease will lapse');
    return { kind: 'stop', detail: `gave up after ${count} continuations` };
  }
  const delaySeconds = Math.min(
    deps.config.runwayPollMaxSeconds,
    Math.max(deps.config.runwayPollMinSeconds, outcome.retryAfterSeconds),
  );
  // Parallel duplicates of this delivery publish one continuation between them. QStash always
  // names the message; the signed body stands in for a name that did not come.
  const messageId = request.headers.get('upstash-message-id') ?? createHash('sha256').update(continuation.rawBody).digest('hex');
  try {
    await deps.queue.publish({
      path: continuation.path,
      body: continuation.body,
      delaySeconds,
      deduplicationId: deduplicationId('continue', messageId, next),
      headers: { [CONTINUATION_HEADER]: String(next) },
    });
  } catch (error) {
    deps.log.error({ ...context, err: describeError(error) }, 'could not publish a continuation');
    return outcome;
  }
  deps.log.warn({ ...context, continuation: next, delay_seconds: delaySeconds }, 'last delivery failed: continuing with a new message');
  return { kind: 'done', detail: `continued as a new message in ${delaySeconds} s` };
}
