import type { RunwayModel } from '../config.js';
import type { RunwayRatio } from './models.js';
import { chooseRatio, ratioSize, type PixelSize } from './ratio.js';

/**
 * How a photo is shaped before it goes to Runway: which output ratio it gets, whether an
 * extreme panorama or tower is centre-cropped, and the pixel size to send.
 */

// Runway's input limits. Runway documents none of them; third-party docs agree on these, and
// an image outside them fails the task as ASSET.INVALID instead of being refused at create.
export const RUNWAY_INPUT_MIN_ASPECT = 0.5;
export const RUNWAY_INPUT_MAX_ASPECT = 2;
export const RUNWAY_INPUT_MAX_SIDE_PX = 7999;

/** Runway's data URI limit, in characters, prefix included (contract §2.2). */
export const RUNWAY_DATA_URI_MAX_CHARS = 5_242_880;
const JPEG_DATA_URI_PREFIX = 'data:image/jpeg;base64,';
/** The largest JPEG whose data URI fits: base64 turns every 3 bytes into 4 characters. */
export const DATA_URI_MAX_JPEG_BYTES = Math.floor((RUNWAY_DATA_URI_MAX_CHARS - JPEG_DATA_URI_PREFIX.length) / 4) * 3;

/**
 * How much more resolution than the output frame strictly needs the sent photo keeps, per
 * side. Runway resamples the photo to the output frame itself; a little headroom makes that a
 * downscale (sharp detail, nothing interpolated up after its own crop) and survives our JPEG
 * encoding. More buys nothing visible in a 720p video: at 1.25 the largest photo sent today is
 * 1600×1600 (a square photo covering veo's 1280:720), about 2.6 MP.
 */
export const OUTPUT_RESOLUTION_MARGIN = 1.25;

/**
 * Bytes per pixel of the hardest content we could find to compress (random black and white
 * pixels) at JPEG quality 95 with 4:2:0 chroma: 1.17 measured with libjpeg-turbo; 0.98 at
 * quality 90. Photos are 5-10 times smaller than that.
 */
export const WORST_CASE_JPEG_BYTES_PER_PIXEL = 1.2;

/**
 * A cap on the sent pixel count so that even the worst case fits a data URI at the first
 * JPEG quality. The output-based size above stays well below it (2.6 MP against 3.3 MP);
 * the cap only matters if a model with larger outputs joins the table.
 */
export const MAX_SENT_PIXELS = Math.floor(DATA_URI_MAX_JPEG_BYTES / WORST_CASE_JPEG_BYTES_PER_PIXEL);

export interface PhotoFitPlan {
  /** The Runway output ratio, chosen on the displayed (upright) size. */
  readonly ratio: RunwayRatio;
  /** The centre crop in displayed pixels, when the photo's aspect is outside Runway's limits. */
  readonly crop: PixelSize | undefined;
  /** The size of the image to send: after the crop and any downscale. */
  readonly width: number;
  readonly height: number;
}

const clamp = (value: number, low: number, high: number): number => Math.min(high, Math.max(low, value));

/** The widest width a photo `height` pixels tall can have and stay within the aspect limits. */
const maxWidthFor = (height: number): number => Math.floor(height * RUNWAY_INPUT_MAX_ASPECT);
const minWidthFor = (height: number): number => Math.ceil(height * RUNWAY_INPUT_MIN_ASPECT);

/**
 * The centre crop of a photo whose aspect is outside the limits: towards the output ratio's
 * aspect (what Runway would keep of it anyway), clamped into the limits. Only the long side
 * shrinks. Undefined when the photo is within the limits.
 */
function cropFor(display: PixelSize, output: PixelSize): PixelSize | undefined {
  const aspect = display.width / display.height;
  if (aspect >= RUNWAY_INPUT_MIN_ASPECT && aspect <= RUNWAY_INPUT_MAX_ASPECT) return undefined;
  const target = clamp(output.width / output.height, RUNWAY_INPUT_MIN_ASPECT, RUNWAY_INPUT_MAX_ASPECT);
  if (aspect > RUNWAY_INPUT_MAX_ASPECT) {
    const width = clamp(Math.round(display.height * target), minWidthFor(display.height), maxWidthFor(display.height));
    return { width, height: display.height };
  }
  const height = clamp(
    Math.round(display.width / target),
    Math.ceil(display.width / RUNWAY_INPUT_MAX_ASPECT),
    Math.floor(display.width / RUNWAY_INPUT_MIN_ASPECT),
  );
  return { width: display.width, height };
}

/**
 * The factor (at most 1: never upscale) that brings `source` down to what covering the output
 * frame needs, times the margin, and inside the side and pixel caps.
 */
function downscaleFactor(source: PixelSize, output: PixelSize): number {
  const cover = Math.max(output.width / source.width, output.height / source.height);
  const sideCap = RUNWAY_INPUT_MAX_SIDE_PX / Math.max(source.width, source.height);
  // One pixel less per side than the cap leaves room for rounding both sides up.
  const pixelCap = (Math.sqrt(MAX_SENT_PIXELS) - 1) / Math.sqrt(source.width * source.height);
  return Math.min(1, cover * OUTPUT_RESOLUTION_MARGIN, sideCap, pixelCap);
}

/**
 * Scales `source` (within the aspect limits) by `factor` into whole pixels. Rounding each side
 * on its own can push a photo right at an aspect limit a hair past it (2000×1000 at 0.45025
 * rounds to 901×450), so the width is clamped against the rounded height; the clamps never go
 * above the source (no upscale), past 7999 px, or below one pixel.
 */
export function scaleWithinLimits(source: PixelSize, factor: number): PixelSize {
  const height = clamp(Math.round(source.height * factor), 1, Math.min(source.height, RUNWAY_INPUT_MAX_SIDE_PX));
  const width = clamp(
    Math.round(source.width * factor),
    minWidthFor(height),
    Math.min(source.width, RUNWAY_INPUT_MAX_SIDE_PX, maxWidthFor(height)),
  );
  return { width, height };
}

/**
 * Plans how a photo of the given displayed (upright) size is sent to `model`: the output ratio,
 * a centre crop for aspects outside 0.5-2, and the size after cropping and downscaling.
 */
export function planPhotoFit(input: { displayWidth: number; displayHeight: number; model: RunwayModel }): PhotoFitPlan {
  const { displayWidth, displayHeight, model } = input;
  if (!(Number.isSafeInteger(displayWidth) && Number.isSafeInteger(displayHeight) && displayWidth > 0 && displayHeight > 0)) {
    throw new RangeError(`image size must be whole pixels, got ${displayWidth}x${displayHeight}`);
  }
  const ratio = chooseRatio(model, displayWidth, displayHeight);
  const output = ratioSize(ratio);
  const display = { width: displayWidth, height: displayHeight };
  const crop = cropFor(display, output);
  const source = crop ?? display;
  const sent = scaleWithinLimits(source, downscaleFactor(source, output));
  return { ratio, crop, width: sent.width, height: sent.height };
}

/** Whether a JPEG of this many bytes fits in a Runway data URI. */
export function fitsJpegDataUri(byteLength: number): boolean {
  return JPEG_DATA_URI_PREFIX.length + Math.ceil(byteLength / 3) * 4 <= RUNWAY_DATA_URI_MAX_CHARS;
}
