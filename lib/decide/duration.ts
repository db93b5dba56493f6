import type { RunwayModel } from '../config.js';
import { MODEL_SPECS } from './models.js';

/** `frame_num` counts frames at this rate (design §3). */
export const FRAMES_PER_SECOND = 24;
/** Used when `frame_num` is missing or unusable (design §3): about 5 s. */
export const DEFAULT_FRAME_COUNT = 121;

export interface DurationChoice {
  /** Seconds to send to Runway: always one of the model's allowed values. */
  readonly seconds: number;
  /** What the task asked for, `frames / 24`. */
  readonly requestedSeconds: number;
  /** The frame count the request was computed from. */
  readonly frameCount: number;
  /** True when `frame_num` was missing or unusable and DEFAULT_FRAME_COUNT was used. */
  readonly defaulted: boolean;
  /**
   * True when the model's allowed set moved the duration away from the request rounded to
   * whole seconds (3 s asked on veo3.1, 1000 frames on gen4); plain rounding is not counted.
   */
  readonly adjusted: boolean;
}

const DECIMAL_NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;
// Distances closer than this count as a tie, so float noise cannot flip the choice.
const TIE_TOLERANCE_SECONDS = 1e-9;

/**
 * Reads `frame_num` as the app sends it. A JSON number, or a decimal string such as "121"
 * (an app that stringifies numbers should not silently get the default); anything else,
 * and any count that is not a positive finite number, means "not given".
 */
function frameCountOf(frameNum: unknown): number | undefined {
  let count = Number.NaN;
  if (typeof frameNum === 'number') count = frameNum;
  // Number() itself ignores the surrounding whitespace that the pattern is tested without.
  else if (typeof frameNum === 'string' && DECIMAL_NUMBER.test(frameNum.trim())) count = Number(frameNum);
  return Number.isFinite(count) && count > 0 ? count : undefined;
}

/**
 * The nearest allowed value; on a tie the longer one, so the motion the task asked for is
 * never cut short. `allowed` is ascending (models.ts), so of two candidates at the same
 * distance the later one is the longer.
 */
function nearestAllowed(allowed: readonly number[], requested: number): number {
  return allowed.reduce((best, candidate) =>
    Math.abs(candidate - requested) <= Math.abs(best - requested) + TIE_TOLERANCE_SECONDS ? candidate : best,
  );
}

/** Video length for a task: `frame_num / 24`, snapped to the model's allowed durations (design §3). */
export function chooseDuration(model: RunwayModel, frameNum: unknown): DurationChoice {
  const given = frameCountOf(frameNum);
  const frameCount = given ?? DEFAULT_FRAME_COUNT;
  const requestedSeconds = frameCount / FRAMES_PER_SECOND;
  const seconds = nearestAllowed(MODEL_SPECS[model].durationsSeconds, requestedSeconds);
  return {
    seconds,
    requestedSeconds,
    frameCount,
    defaulted: given === undefined,
    adjusted: seconds !== Math.round(requestedSeconds),
  };
}
