import { handleRunwayCallback } from '../lib/handlers/runway-callback.js';
import { runtimeDeps } from '../lib/runtime.js';

/** QStash: one look at one Runway task. */
export function POST(request: Request): Promise<Response> {
  return handleRunwayCallback(request, () => runtimeDeps());
}
