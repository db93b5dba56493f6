import { handleStepUpload } from '../lib/handlers/step-upload.js';
import { runtimeDeps } from '../lib/runtime.js';

/** QStash: stream the finished video into storage and report it. */
export function POST(request: Request): Promise<Response> {
  return handleStepUpload(request, () => runtimeDeps());
}
