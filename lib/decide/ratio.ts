import type { RunwayModel } from '../config.js';
import { MODEL_SPECS, type RunwayRatio } from './models.js';

export interface DisplayedSize {
  readonly width: number;
  readonly height: number;
}

/**
 * The size a viewer sees. EXIF orientations 5-8 rotate the stored pixels by 90°, so width
 * and height swap; 1-4 (and any invalid value, which viewers ignore) keep them.
 */
export function displayedSize(width: number, height: number, exifOrientation: number): DisplayedSize {
  const quarterTurn = exifOrientation >= 5 && exifOrientation <= 8 && Number.isInteger(exifOrientation);
  return quarterTurn ? { width: height, height: width } : { width, height };
}

// Distances closer than this count as a tie (float noise in the logarithms).
const TIE_TOLERANCE = 1e-9;

function aspectOf(ratio: RunwayRatio): number {
  const [width, height] = ratio.split(':').map(Number);
  if (width === undefined || height === undefined) throw new Error(`malformed ratio ${ratio}`);
  return width / height;
}

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
  let best: RunwayRatio | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const ratio of MODEL_SPECS[model].ratios) {
    const distance = Math.abs(Math.log(aspectOf(ratio)) - target);
    if (distance < bestDistance - TIE_TOLERANCE) {
      best = ratio;
      bestDistance = distance;
    }
  }
  if (best === undefined) throw new Error(`model ${model} allows no ratio`);
  return best;
}
