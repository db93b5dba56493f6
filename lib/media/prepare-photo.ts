import type { default as SharpDefault, Sharp, SharpOptions } from 'sharp';
import type { RunwayModel } from '../config.js';
import type { RunwayRatio } from '../decide/models.js';
import { DATA_URI_MAX_JPEG_BYTES, planPhotoFit, type PhotoFitPlan } from '../decide/photo-fit.js';
import { PermanentError } from '../errors.js';
import { readImageInfo, type ImageInfo, type ImageType } from './image-info.js';

/**
 * Turns a downloaded photo into the image Runway receives: upright, cropped and downscaled to
 * what the video needs (lib/decide/photo-fit.ts), flattened onto white, sRGB, re-encoded as a
 * JPEG that carries no metadata at all — no GPS position, camera serial, EXIF thumbnail
 * (which still shows the unrotated, uncropped picture), XMP, IPTC, comment or ICC profile.
 */

export interface PhotoFacts {
  readonly type: ImageType;
  /** Stored pixel size (for the original) or the upright sent size. */
  readonly width: number;
  readonly height: number;
  readonly bytes: number;
}

export interface OriginalPhotoFacts extends PhotoFacts {
  /** EXIF orientation 1-8 (1 when absent). */
  readonly orientation: number;
}

export interface PreparedPhoto {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly mime: 'image/jpeg';
  readonly ratio: RunwayRatio;
  readonly original: OriginalPhotoFacts;
  readonly sent: PhotoFacts;
  /** The photo's aspect was outside Runway's limits and it was centre-cropped. */
  readonly cropped: boolean;
  /** The sent image has fewer pixels than the upright (cropped) photo. */
  readonly resized: boolean;
}

/**
 * JPEG qualities tried in turn until the result fits a data URI. 90 first: the image is the
 * only picture a generative model animates, and at the usual web setting of 75-80 smooth
 * skies band and skin shows 8×8 blocks, which the model may then animate as texture; above
 * 90 the file grows fast for nothing visible once Runway has resampled it to 720p. A photo
 * at the planned sizes is 0.2-1 MB at 90; even pure noise at the largest plan (2.6 MP) fits,
 * so the lower steps only guard against a model table with much larger outputs.
 */
const JPEG_QUALITY_STEPS = [90, 80, 70, 60, 50] as const;

/**
 * sharp's own guard against decompression bombs (0x3FFF × 0x3FFF, also the largest WebP),
 * kept explicit so a refusal can say why before anything is decoded.
 */
const MAX_INPUT_PIXELS = 0x3fff * 0x3fff;

const MAX_REASON_LENGTH = 120;

type SharpFactory = typeof SharpDefault;

let loadingSharp: Promise<SharpFactory> | undefined;

/**
 * Loaded on first use, not at import: sharp maps libvips (tens of MB) into the process, and
 * only the function that prepares photos should pay for that in its cold start.
 */
function loadSharp(): Promise<SharpFactory> {
  loadingSharp ??= import('sharp').then(
    ({ default: sharp }) => {
      // The operation cache only helps when one input is processed many times; here it would
      // keep decoded tiles of the last 20 MB photo alive for nothing.
      sharp.cache(false);
      return sharp;
    },
    (error: unknown) => {
      loadingSharp = undefined;
      throw error;
    },
  );
  return loadingSharp;
}

const photoError = (message: string, cause?: unknown): PermanentError =>
  new PermanentError('photo', message, cause === undefined ? undefined : { cause });

/** libvips' first line, printable ASCII only: its messages name the fault, never our data. */
function decodeReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const firstLine = message.split('\n').find((line) => line.trim() !== '') ?? 'unknown error';
  const printable = firstLine.replace(/[^\x20-\x7e]/g, '').trim();
  return printable.length > MAX_REASON_LENGTH ? `${printable.slice(0, MAX_REASON_LENGTH - 3)}...` : printable;
}

const INPUT_OPTIONS: SharpOptions = {
  autoOrient: true,
  // 'error' refuses truncated and corrupt image data but lets through the warnings many
  // phone JPEGs raise (extraneous bytes before a marker) that every viewer shows fine.
  failOn: 'error',
  limitInputPixels: MAX_INPUT_PIXELS,
  // Top-to-bottom reading lets libvips stream a big photo through the shrink instead of
  // holding it decoded whole (sharp's default, kept explicit).
  sequentialRead: true,
};

function pipeline(sharp: SharpFactory, photo: Uint8Array, plan: PhotoFitPlan, quality: number): Sharp {
  return (
    sharp(photo, INPUT_OPTIONS)
      // `cover` scales the upright photo until it fills the planned size and cuts the rest off
      // evenly on both sides: the centre crop and the downscale in one step. JPEG shrink-on-load
      // decodes a 48 MP photo at a quarter of its width and height.
      .resize(plan.width, plan.height, { fit: 'cover', position: 'centre' })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      // No keepMetadata/keepIccProfile/withMetadata: sharp writes none of the input's metadata,
      // converting from the embedded profile to sRGB first. 4:2:0 chroma, sharp's default:
      // colour detail below that is lost in Runway's own resize anyway.
      .jpeg({ quality })
  );
}

function checkDecodable(info: ImageInfo): void {
  const pixels = info.width * info.height;
  if (pixels > MAX_INPUT_PIXELS) {
    const megapixels = (count: number): number => Math.floor(count / 1_000_000);
    throw photoError(
      `photo: the image is too large to prepare (${info.width}x${info.height}, ${megapixels(pixels)} MP; at most ${megapixels(MAX_INPUT_PIXELS)} MP)`,
    );
  }
}

/**
 * Prepares `photo` for `model`. Throws PermanentError('photo', ...) for anything that is not a
 * complete JPEG, PNG or WebP, and when even the lowest JPEG quality does not fit the data URI
 * budget (`maxJpegBytes`, Runway's limit unless a caller needs a smaller one).
 */
export async function preparePhoto(
  photo: Uint8Array,
  model: RunwayModel,
  options: { readonly maxJpegBytes?: number } = {},
): Promise<PreparedPhoto> {
  const info = readImageInfo(photo);
  checkDecodable(info);
  const plan = planPhotoFit({ displayWidth: info.displayWidth, displayHeight: info.displayHeight, model });
  const maxBytes = options.maxJpegBytes ?? DATA_URI_MAX_JPEG_BYTES;
  const sharp = await loadSharp();

  let smallest = Number.POSITIVE_INFINITY;
  for (const quality of JPEG_QUALITY_STEPS) {
    let encoded: { data: Buffer; info: { width: number; height: number } };
    try {
      encoded = await pipeline(sharp, photo, plan, quality).toBuffer({ resolveWithObject: true });
    } catch (error) {
      throw photoError(`photo: the image could not be decoded (${decodeReason(error)})`, error);
    }
    smallest = Math.min(smallest, encoded.data.byteLength);
    // Re-running the whole pipeline from the original (rare) costs a decode but avoids
    // compressing an already compressed image twice.
    if (encoded.data.byteLength > maxBytes) continue;
    const source = plan.crop ?? { width: info.displayWidth, height: info.displayHeight };
    return {
      bytes: new Uint8Array(encoded.data),
      mime: 'image/jpeg',
      ratio: plan.ratio,
      original: { type: info.type, width: info.width, height: info.height, bytes: photo.byteLength, orientation: info.orientation },
      sent: { type: 'jpeg', width: encoded.info.width, height: encoded.info.height, bytes: encoded.data.byteLength },
      cropped: plan.crop !== undefined,
      resized: encoded.info.width * encoded.info.height < source.width * source.height,
    };
  }
  throw photoError(`photo: the prepared image is still too large for Runway (${smallest} bytes, at most ${maxBytes})`);
}
