import type { RunwayModel } from '../config.js';
import { MODEL_SPECS, type RunwayRatio } from './models.js';

/** A size in pixels. */
export interface PixelSize {
  readonly width: number;
  readonly height: number;
}

/**
 * The size a viewer sees. EXIF orientations 5-8 rotate the stored pixels by 90°, so width
 * and height swap; 1-4 (and any invalid value, which viewers ignore) keep them.
 */
export function displayedSize(width: number, height: number, exifOrientation: number): PixelSize {
  const quarterTurn = exifOrientation >= 5 && exifOrientation <= 8 && Number.isInteger(exifOrientation);
  return quarterTurn ? { width: height, height: width } : { width, height };
}

/** A Runway ratio read as the output size it names: `1280:720` is 1280×720 pixels. */
export function ratioSize(ratio: RunwayRatio): PixelSize {
  const [width = 0, height = 0] = ratio.split(':').map(Number);
  if (!(width > 0 && height > 0)) throw new Error(`malformed ratio ${ratio}`);
  return { width, height };
}

// Distances closer than this count as a tie (float noise in the logarithms).
const TIE_TOLERANCE = 1e-9;

/**
 * The model's allowed ratio whose aspect is closest to the displayed photo's, measured as
 * |ln a − ln b| so that 2:1 and 1:2 are equally far from square. On a tie the earlier entry
 * of the model's ratio list wins: on veo3.1 (no square size) a square photo gets 1280:720,
 * and the 720p sizes win over their 1080p twins of the same aspect.
 */
export function chooseRatio(model: RunwayModel, displayWidth: number, displayHeight: number): RunwayRatio {
  if (!(displayWidth > 0 && displayHeight > 0 && Number.isFinite(displayWidth) && Number.isFinite(displayHeight))) {
    throw new RangeError(`image size must be positive, got ${displayWidth}x${displayHeight}`);
  }
  const target = Math.log(displayWidth / displayHeight);
  const distanceOf = (ratio: RunwayRatio): number => {
    const size = ratioSize(ratio);
    return Math.abs(Math.log(size.width / size.height) - target);
  };
  return MODEL_SPECS[model].ratios.reduce((best, ratio) => (distanceOf(ratio) < distanceOf(best) - TIE_TOLERANCE ? ratio : best));
}
