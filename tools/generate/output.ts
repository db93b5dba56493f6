import { createWriteStream } from 'node:fs';
import { access, constants, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openOutput } from '../../lib/clients/media-transfer.js';
import { GenerateError, UsageError } from './errors.js';

/** Bound on the whole download; Runway's outputs are a few MB. */
const DOWNLOAD_TIMEOUT_MS = 5 * 60_000;

/** `--out`, else `<image name>.mp4` in the current directory. */
export function outputPathFor(image: string, out: string | undefined, cwd: string): string {
  return path.resolve(cwd, out ?? `${path.parse(image).name}.mp4`);
}

/** Checked before anything is paid for: a video that cannot be saved is a wasted generation. */
export async function assertWritable(file: string): Promise<void> {
  if ((await stat(file).catch(() => undefined))?.isDirectory() === true) {
    throw new UsageError(`output: ${file} is a directory (give a file name with --out)`);
  }
  try {
    await access(path.dirname(file), constants.W_OK);
  } catch {
    throw new UsageError(`output: cannot write to ${path.dirname(file)} (missing or not writable)`);
  }
}

/**
 * Downloads Runway's output into `file`, refusing anything that is not a video (the worker's
 * check: Content-Type and the MP4 `ftyp` box). Written to a temporary name and renamed, so
 * `file` is never left half-written.
 */
export async function saveOutput(url: string, file: string, signal: AbortSignal): Promise<number> {
  const opened = await openOutput(url, DOWNLOAD_TIMEOUT_MS, signal);
  const partial = `${file}.part`;
  let bytes = 0;
  try {
    opened.body.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    await pipeline(opened.body, createWriteStream(partial), { signal });
    if (opened.length !== undefined && bytes !== opened.length) {
      throw new GenerateError(`output: download ended after ${bytes} of ${opened.length} bytes`);
    }
    await rename(partial, file);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
  return bytes;
}
