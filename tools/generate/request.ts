import path from 'node:path';
import type { CreateTaskBody, Runway } from '../../lib/clients/runway.js';
import type { RunwayModel } from '../../lib/config.js';
import { chooseDuration, FRAMES_PER_SECOND, type DurationChoice } from '../../lib/decide/duration.js';
import { buildCreateBody, dataUriOf } from '../../lib/steps/generation.js';
import { DEFAULT_PROMPT, preparePrompt, type PreparedPrompt } from '../../lib/decide/prompt.js';
import type { PreparedSource } from './photo.js';

export interface RequestChoices {
  readonly model: RunwayModel;
  /** Seconds asked for; undefined gives the worker's default (121 frames). */
  readonly durationSeconds: number | undefined;
  /** Undefined gives the worker's default prompt. */
  readonly prompt: string | undefined;
  readonly audio: boolean;
}

export interface PlannedRequest {
  readonly body: CreateTaskBody;
  readonly duration: DurationChoice;
  readonly prompt: PreparedPrompt;
}

/** The prepared JPEG inline, or uploaded to Runway first and referred to by its `runway://` URI. */
async function promptImageOf(runway: Runway, source: PreparedSource, imageName: string): Promise<string> {
  const { bytes, mime } = source.prepared;
  if (source.via === 'upload') return runway.uploadEphemeral(`${path.parse(imageName).name}.jpg`, bytes, mime);
  return dataUriOf(bytes, mime);
}

/** The create body the worker would send for this photo: only the fields the model accepts (contract §2.1). */
export async function planRequest(runway: Runway, source: PreparedSource, imageName: string, choices: RequestChoices): Promise<PlannedRequest> {
  const { model } = choices;
  // The worker reads durations as frame counts at 24 fps (design §3).
  const duration = chooseDuration(model, choices.durationSeconds === undefined ? undefined : choices.durationSeconds * FRAMES_PER_SECOND);
  const prompt = preparePrompt(model, choices.prompt ?? DEFAULT_PROMPT);
  const promptImage = await promptImageOf(runway, source, imageName);
  const body = buildCreateBody(model, promptImage, source.prepared.ratio, duration.seconds, prompt.text, choices.audio);
  return { body, duration, prompt };
}
