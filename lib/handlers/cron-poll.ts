import { z } from 'zod';
import { failureMessageOf } from '../decide/failure-message.js';
import type { Deps } from '../deps.js';
import { describeError } from '../log.js';
import { toResponse } from '../outcome.js';
import { runCronPoll } from '../steps/cron-poll.js';
import { lookupItem, lookupSourcesOf } from '../steps/item-lookup.js';
import { drainMessageSchema } from '../steps/messages.js';
import { runPreflight } from '../steps/preflight.js';
import { cronAuthorized, parseJson, readSignedBody } from './auth.js';
import { depsOrError } from './step-handler.js';

const querySchema = z.object({
  limit: z.coerce.number().int().min(0).optional(),
  check: z.enum(['1', 'true']).optional(),
});

async function run(deps: Deps, url: URL, drain?: { limit?: number | undefined }): Promise<Response> {
  const query = querySchema.safeParse(Object.fromEntries(url.searchParams));
  if (!query.success) {
    return Response.json({ outcome: 'invalid', detail: 'limit must be a whole number ≥ 0; check must be 1' }, { status: 400 });
  }
  if (query.data.check) return Response.json(await runPreflight(deps));
  const limit = query.data.limit ?? drain?.limit;
  const summary = await runCronPoll(deps, { ...(limit === undefined ? {} : { limit }), ...(drain ? { drain: true } : {}) });
  return Response.json(summary);
}

/** `?item=<id>`: what the ledger knows of one item (leases nothing). */
async function lookup(deps: Deps, itemId: string): Promise<Response> {
  try {
    const result = await lookupItem(lookupSourcesOf(deps), itemId);
    if (result.kind === 'found') return Response.json(result.item);
    return Response.json({ outcome: result.kind, detail: result.detail }, { status: result.kind === 'unknown' ? 404 : 400 });
  } catch (error) {
    deps.log.error({ item_id: itemId, err: describeError(error) }, 'item lookup failed');
    return Response.json({ outcome: 'error', detail: failureMessageOf(error) }, { status: 503 });
  }
}

/** Vercel Cron (and a person with curl): `Authorization: Bearer $CRON_SECRET`. */
export async function handleCronGet(request: Request, getDeps: () => Deps): Promise<Response> {
  const deps = depsOrError(getDeps);
  if (deps instanceof Response) return deps;
  if (!deps.config.cronSecret) {
    deps.log.error('CRON_SECRET is not set: refusing to run cron-poll');
    return toResponse({ kind: 'unauthorized', detail: 'CRON_SECRET is not set on the server; refusing to run' });
  }
  if (!cronAuthorized(request, deps.config.cronSecret)) {
    return toResponse({ kind: 'unauthorized', detail: 'missing or wrong Authorization: Bearer <CRON_SECRET>' });
  }
  const url = new URL(request.url);
  const item = url.searchParams.get('item');
  if (item !== null) return lookup(deps, item);
  return run(deps, url);
}

/** QStash: the self-chained drain, or a QStash schedule on plans where Vercel cron runs daily. */
export async function handleCronPost(request: Request, getDeps: () => Deps): Promise<Response> {
  const deps = depsOrError(getDeps);
  if (deps instanceof Response) return deps;
  const signed = await readSignedBody(request, deps);
  if (!signed.ok) return toResponse({ kind: 'unauthorized', detail: 'invalid or missing Upstash-Signature' });
  const json = parseJson(signed.body);
  const body = json.ok && json.value !== undefined ? drainMessageSchema.partial().strict().safeParse(json.value) : undefined;
  if (!json.ok || (body && !body.success)) {
    return toResponse({ kind: 'invalid', detail: 'cron-poll takes an empty body or { "reason": "drain" }' });
  }
  const drain = body?.success && body.data.reason === 'drain' ? { limit: body.data.limit } : undefined;
  return run(deps, new URL(request.url), drain);
}
