import { readFile, stat } from 'node:fs/promises';
import { PHOTO_MAX_BYTES } from '../../lib/clients/media-transfer.js';
import type { RunwayModel } from '../../lib/config.js';
import { humanSize } from '../../lib/decide/failure-message.js';
import { fitsJpegDataUri } from '../../lib/decide/photo-fit.js';
import { PermanentError } from '../../lib/errors.js';
import { preparePhoto, type PreparedPhoto } from '../../lib/media/prepare-photo.js';
import { GenerateError, UsageError } from './errors.js';

const READ_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EISDIR: 'it is a directory',
  EACCES: 'permission denied',
};

/** The photo's bytes, with the worker's size cap for app photos. */
export async function readPhoto(file: string): Promise<Uint8Array> {
  try {
    const size = (await stat(file)).size;
    if (size > PHOTO_MAX_BYTES) {
      throw new UsageError(`photo: ${file} is ${humanSize(size)}, over the ${humanSize(PHOTO_MAX_BYTES)} the worker accepts`);
    }
    return await readFile(file);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? '';
    throw new UsageError(`photo: cannot read ${file} (${READ_ERRORS[code] ?? (code || 'unreadable')})`);
  }
}

export interface PreparedSource {
  readonly prepared: PreparedPhoto;
  /** How the photo reaches Runway (contract §2.2). */
  readonly via: 'data-uri' | 'upload';
}

/**
 * The worker's preparation (upright, no metadata, fitted to the output). It lowers the JPEG
 * quality until a data URI fits, which at the planned sizes the first quality always does;
 * here a photo that still did not fit goes by ephemeral upload instead (design §2).
 */
export async function prepareSource(file: string, photo: Uint8Array, model: RunwayModel, forceUpload: boolean): Promise<PreparedSource> {
  let prepared: PreparedPhoto;
  try {
    prepared = await preparePhoto(photo, model, { maxJpegBytes: Number.MAX_SAFE_INTEGER });
  } catch (error) {
    // The worker's verdict on the photo ("photo: not a JPEG/PNG/WebP image (got text/plain)"), naming the file.
    if (error instanceof PermanentError) throw new GenerateError(`${error.message} — ${file}`);
    throw error;
  }
  const via = forceUpload || !fitsJpegDataUri(prepared.bytes.byteLength) ? 'upload' : 'data-uri';
  return { prepared, via };
}
