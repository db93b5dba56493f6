import type { Deps } from '../deps.js';
import { uploadMessageSchema } from '../steps/messages.js';
import { uploadVideo } from '../steps/upload-video.js';
import { handleSignedStep } from './step-handler.js';

export function handleStepUpload(request: Request, getDeps: () => Deps): Promise<Response> {
  return handleSignedStep(request, getDeps, '/api/step-upload', uploadMessageSchema, uploadVideo);
}
