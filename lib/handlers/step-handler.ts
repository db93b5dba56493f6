import type { z } from 'zod';
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
  try {
    return toResponse(await step(deps, message.data, deliveryOf(request)));
  } catch (error) {
    deps.log.error({ err: describeError(error) }, 'step failed unexpectedly: QStash will deliver again');
    return toResponse({ kind: 'retry', detail: 'internal error' });
  }
}
