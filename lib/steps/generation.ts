import { downloadPhoto } from '../clients/media-transfer.js';
import type { CreateTaskBody } from '../clients/runway.js';
import type { RunwayModel } from '../config.js';
import { MODEL_SPECS } from '../decide/models.js';
import type { Deps } from '../deps.js';
import { PermanentError, UpstreamError } from '../errors.js';
import type { Fact } from '../ledger/ledger.js';
import { preparePhoto } from '../media/prepare-photo.js';

/**
 * Everything between a photo in the app's storage and a Runway create body: the signed
 * download, and the photo made upright, metadata-free and inside Runway's limits, sent as
 * a data URI. Shared by the first generation (cron-poll) and a new one after a transient
 * failure (runway-callback).
 */

export const PHOTO_NOT_FOUND_MESSAGE = 'photo: not found (the app could not sign a download URL)';
/** The same refusal, when it has not been the only failure in a row: an outage, not a missing photo. */
const PHOTO_UNSIGNED_MESSAGE = 'photo: the app could not sign a download URL (answered 500)';

/** The app's "Failed to generate download URL": a missing photo, or a passing storage failure. */
export const isPhotoNotFound = (error: unknown): boolean => error instanceof UpstreamError && error.service === 'photo' && error.code === 'not-found';

export interface GenerationSource {
  readonly itemId: string;
  readonly photoStoragePath: string;
  readonly model: RunwayModel;
  readonly duration: number;
  /** The prompt as Runway gets it (already trimmed and cut), or undefined to send none. */
  readonly promptText: string | undefined;
}

export interface PreparedGeneration {
  readonly body: CreateTaskBody;
  readonly ratio: string;
  /** The photo as stored and as sent, for the log and the ledger. */
  readonly photo: NonNullable<Fact<'task'>['photo']>;
}

/** Signs the photo's download URL. A missing object and a passing outage look the same here. */
async function photoUrl(deps: Deps, storagePath: string): Promise<string> {
  try {
    return (await deps.app.presignDownload(storagePath)).url;
  } catch (error) {
    if (error instanceof UpstreamError && (error.status === 400 || error.status === 404)) {
      throw new PermanentError('photo', PHOTO_NOT_FOUND_MESSAGE, { cause: error });
    }
    // The app answers the same 500 "Failed to generate download URL" for a missing object
    // (contract §1.2) and for a passing failure of its storage call: transient, until the
    // caller has seen it too many times in a row.
    if (error instanceof UpstreamError && error.code === 'not-found') {
      throw new UpstreamError('photo', PHOTO_UNSIGNED_MESSAGE, { status: error.status, retryable: true, code: 'not-found', cause: error });
    }
    throw error;
  }
}

/** The prepared JPEG as a data URI: preparation keeps every photo within Runway's limit for one. */
export function dataUriOf(photo: Uint8Array<ArrayBuffer>, mime: string): string {
  return `data:${mime};base64,${Buffer.from(photo.buffer, photo.byteOffset, photo.byteLength).toString('base64')}`;
}

/** Builds the create body for the model: only the fields that model accepts (contract §2.1). */
export function buildCreateBody(
  model: RunwayModel,
  promptImage: string,
  ratio: string,
  duration: number,
  promptText: string | undefined,
  audio: boolean,
): CreateTaskBody {
  return {
    model,
    promptImage,
    ratio,
    duration,
    ...(promptText === undefined ? {} : { promptText }),
    ...(MODEL_SPECS[model].supportsAudio ? { audio } : {}),
  };
}

/** Fetches and prepares the photo and builds the create body; no Runway task exists yet. */
export async function prepareGeneration(deps: Deps, source: GenerationSource): Promise<PreparedGeneration> {
  const url = await photoUrl(deps, source.photoStoragePath);
  const downloaded = await downloadPhoto(url, { timeoutMs: deps.timeouts.photoMs });
  const prepared = await preparePhoto(downloaded, source.model);
  const photo = { original: prepared.original, sent: prepared.sent };
  deps.log.info(
    { item_id: source.itemId, step: 'photo', original: prepared.original, sent: prepared.sent, cropped: prepared.cropped, resized: prepared.resized },
    'photo prepared',
  );
  const body = buildCreateBody(
    source.model,
    dataUriOf(prepared.bytes, prepared.mime),
    prepared.ratio,
    source.duration,
    source.promptText,
    deps.config.runwayAudio,
  );
  return { body, ratio: prepared.ratio, photo };
}
