/**
 * What the sandbox Runway makes of a prompt image it received: a record of what arrived
 * (type, size, orientation, metadata left in it) and whether Runway would fail the task.
 *
 * Cheap by design, so a create still answers fast: the size and metadata come from the
 * container headers, and the pixels are decoded once at most 64 px a side (JPEG and WebP
 * decode shrunk on load), which proves the image decodes and gives its mean colour.
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { readExifFacts } from './runway-exif.js';
import { METADATA_KINDS, readImageHeaders, type MetadataKind } from './runway-image-headers.js';
import { findFailureMarker, MARKER_SCAN_BYTES, type ImageFormat } from './runway-prompt-image.js';

export type { MetadataKind } from './runway-image-headers.js';

export interface ReceivedImage {
  readonly format: ImageFormat;
  /** Pixel size as stored, before the orientation is applied; 0 when the headers give none. */
  readonly width: number;
  readonly height: number;
  readonly bytes: number;
  /** The EXIF Orientation value; 1 (upright) when absent. */
  readonly orientation: number;
  /** The metadata still in the image, in the order of {@link METADATA_KINDS}. */
  readonly metadata: readonly MetadataKind[];
  readonly sha256: string;
}

export interface ImageVerdict {
  readonly image: ReceivedImage;
  /** The code Runway would fail a task made from this image with; undefined when it would not. */
  readonly failureCode: string | undefined;
}

/**
 * Runway's input limits, from third-party documentation (Runway publishes none):
 * width/height within 0.5..2 and at most 7999 px a side; outside them the task fails
 * `ASSET.INVALID`.
 */
export const ASPECT_RATIO_MIN = 0.5;
export const ASPECT_RATIO_MAX = 2;
export const SIDE_MAX_PX = 7999;

export const ASSET_INVALID = 'ASSET.INVALID';
export const INPUT_REFUSED = 'SAFETY.INPUT.IMAGE';

/**
 * Input moderation by picture, so it survives the worker's re-encoding (which strips the
 * comment marker): an image whose mean colour is close to pure magenta is refused. The
 * refused fixture averages about (223, 34, 220); JPEG quality 30, a 16×12 shrink or a
 * WebP move that by under 2, centre crops to 1:2, 2:1 or 4:1 raise R and B (the
 * centre is lit), and even its darkest corner averages (211, 33, 208). The thresholds
 * leave a margin of 30 or more on each channel, while real photos need their whole frame
 * saturated magenta to come near them (the other fixtures average G ≥ 129).
 *
 * `fixtures/refused.jpg` is made to pass it whatever is cut away: a magenta ground with
 * darker and lighter soft discs spread over the whole frame, grain and a light vignette
 * (320×240, mozjpeg quality 75), plus the `runway-sandbox:SAFETY.INPUT.IMAGE` comment.
 */
export const MAGENTA_MEAN = { redMin: 180, greenMax: 80, blueMin: 180 } as const;

/** JPEG and WebP decode shrunk on load to about this size: tens of milliseconds for a 12 MP photo, not a full decode. */
const DECODE_EDGE_PX = 64;

/** Whole images: checks them in full. */
export async function checkImage(bytes: Buffer): Promise<ImageVerdict | undefined> {
  return checkImageParts({ head: bytes, bytes: bytes.length, sha256: sha256Hex(bytes), whole: bytes });
}

export interface ImageParts {
  /** The first bytes of the image (at least its headers), or all of it. */
  readonly head: Buffer;
  readonly bytes: number;
  readonly sha256: string;
  /** The whole image when it was kept; without it, the pixels are not decoded. */
  readonly whole: Buffer | undefined;
}

/** Undefined when the bytes are not JPEG, PNG or WebP (Runway rejects those at create). */
export async function checkImageParts(parts: ImageParts): Promise<ImageVerdict | undefined> {
  const headers = readImageHeaders(parts.head);
  if (headers === undefined) return undefined;
  const exif = readExifFacts(headers.exif);
  const found = new Set(headers.metadata);
  if (exif.gps) found.add('gps');
  if (exif.camera) found.add('camera');
  const image: ReceivedImage = {
    format: headers.format,
    width: headers.width,
    height: headers.height,
    bytes: parts.bytes,
    orientation: exif.orientation,
    metadata: METADATA_KINDS.filter((kind) => found.has(kind)),
    sha256: parts.sha256,
  };
  if (!isWithinLimits(image.width, image.height)) return { image, failureCode: ASSET_INVALID };
  const marker = findFailureMarker(parts.head.subarray(0, MARKER_SCAN_BYTES));
  if (parts.whole === undefined) return { image, failureCode: marker };
  const mean = await meanColour(parts.whole);
  if (mean === undefined) return { image, failureCode: ASSET_INVALID };
  return { image, failureCode: marker ?? (isMagenta(mean) ? INPUT_REFUSED : undefined) };
}

export function isWithinLimits(width: number, height: number): boolean {
  if (width <= 0 || height <= 0) return false;
  const aspect = width / height;
  return aspect >= ASPECT_RATIO_MIN && aspect <= ASPECT_RATIO_MAX && width <= SIDE_MAX_PX && height <= SIDE_MAX_PX;
}

export interface MeanColour {
  readonly red: number;
  readonly green: number;
  readonly blue: number;
}

export function isMagenta(mean: MeanColour): boolean {
  return mean.red >= MAGENTA_MEAN.redMin && mean.green <= MAGENTA_MEAN.greenMax && mean.blue >= MAGENTA_MEAN.blueMin;
}

/**
 * Mean sRGB colour of a small decode, transparency flattened onto white; undefined when
 * the image does not decode. A cut-short file counts as undecodable, as it would for a
 * strict image library.
 */
export async function meanColour(bytes: Buffer): Promise<MeanColour | undefined> {
  try {
    const { data, info } = await sharp(bytes, { failOn: 'truncated' })
      .resize(DECODE_EDGE_PX, DECODE_EDGE_PX, { fit: 'inside', withoutEnlargement: true })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    const sums = [0, 0, 0];
    const pixels = info.width * info.height;
    for (let offset = 0; offset + 2 < data.length; offset += info.channels) {
      for (let channel = 0; channel < 3; channel += 1) sums[channel] = (sums[channel] ?? 0) + (data[offset + channel] ?? 0);
    }
    if (pixels === 0) return undefined;
    return { red: (sums[0] ?? 0) / pixels, green: (sums[1] ?? 0) / pixels, blue: (sums[2] ?? 0) / pixels };
  } catch {
    return undefined;
  }
}

export function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
