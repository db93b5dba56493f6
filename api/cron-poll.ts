import { handleCronGet, handleCronPost } from '../lib/handlers/cron-poll.js';
import { runtimeDeps } from '../lib/runtime.js';

/** Vercel Cron, or a person with `Authorization: Bearer $CRON_SECRET`. */
export function GET(request: Request): Promise<Response> {
  return handleCronGet(request, () => runtimeDeps());
}

/** QStash: drain continuation or a QStash schedule. */
export function POST(request: Request): Promise<Response> {
  return handleCronPost(request, () => runtimeDeps());
}
