import type { Deps } from '../deps.js';
import { pollMessageSchema } from '../steps/messages.js';
import { pollTask } from '../steps/poll-task.js';
import { handleSignedStep } from './step-handler.js';

export function handleRunwayCallback(request: Request, getDeps: () => Deps): Promise<Response> {
  return handleSignedStep(request, getDeps, '/api/runway-callback', pollMessageSchema, pollTask);
}
