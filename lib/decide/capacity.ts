import { RUNWAY_MODELS, type RunwayModel } from '../config.js';
import { MODEL_SPECS } from './models.js';

/**
 * Backpressure (design §2): lease no more than Runway can start now. Runway runs only
 * `maxConcurrentGenerations` tasks per model at once; the rest wait THROTTLED while our
 * timeout runs, so an item left in the app's queue loses less than one submitted early.
 */

/** A model's limits as Runway's `GET /v1/organization` reports them. */
export interface ModelLimits {
  readonly maxConcurrent: number;
  /** Generations still allowed today (`maxDailyGenerations − usage.dailyGenerations`), when known. */
  readonly dailyRemaining: number | undefined;
}

/**
 * When the limits cannot be read and nothing was read before: the lowest tier's limit, so
 * a failing call can slow the worker down but never over-submit.
 */
export const FALLBACK_LIMITS: ModelLimits = { maxConcurrent: 1, dailyRemaining: undefined };

/** A task of ours seen THROTTLED this recently (another client shares the account) pauses leasing. */
export const THROTTLED_PAUSE_SECONDS = 60;

/**
 * Slot markers older than this belong to jobs that died without clearing them: a generation
 * times out after `timeoutSeconds`, and its last poll comes at most one poll delay later.
 */
export function slotMarkerLifetimeMs(timeoutSeconds: number, pollMaxSeconds: number): number {
  return (timeoutSeconds + pollMaxSeconds + 60) * 1000;
}

export interface ModelCapacity {
  readonly limit: number;
  readonly inFlight: number;
  readonly dailyRemaining: number | undefined;
  /** A task of ours was seen THROTTLED within the pause window. */
  readonly paused: boolean;
  /** New generations this worker may start now. */
  readonly free: number;
}

export function modelCapacity(input: {
  readonly limits: ModelLimits;
  readonly inFlight: number;
  readonly throttledAtMs: number | undefined;
  readonly nowMs: number;
}): ModelCapacity {
  const paused = input.throttledAtMs !== undefined && input.nowMs - input.throttledAtMs < THROTTLED_PAUSE_SECONDS * 1000;
  const byConcurrency = Math.max(0, Math.floor(input.limits.maxConcurrent) - input.inFlight);
  const byDay = input.limits.dailyRemaining === undefined ? byConcurrency : Math.max(0, Math.floor(input.limits.dailyRemaining));
  return {
    limit: input.limits.maxConcurrent,
    inFlight: input.inFlight,
    dailyRemaining: input.limits.dailyRemaining,
    paused,
    free: paused ? 0 : Math.min(byConcurrency, byDay),
  };
}

/** Per-model limits from an organization answer; a model it does not list gets the fallback. */
export function limitsFromOrganization(org: {
  readonly tier: { readonly models: Readonly<Record<string, { readonly maxConcurrentGenerations: number; readonly maxDailyGenerations: number }>> };
  readonly usage?: { readonly models: Readonly<Record<string, { readonly dailyGenerations: number }>> } | undefined;
}): Record<RunwayModel, ModelLimits> {
  const out = {} as Record<RunwayModel, ModelLimits>;
  for (const model of RUNWAY_MODELS) {
    const tier = org.tier.models[model];
    const used = org.usage?.models[model]?.dailyGenerations;
    out[model] = tier
      ? { maxConcurrent: tier.maxConcurrentGenerations, dailyRemaining: tier.maxDailyGenerations - (used ?? 0) }
      : FALLBACK_LIMITS;
  }
  return out;
}

/**
 * Seconds until a drain run is worth making after leasing stopped for want of slots: when
 * the earliest generation in flight should be done (its model's typical time from its
 * start), within [minSeconds, maxSeconds]. Nothing in flight (a pause, or another client
 * holding the slots): the longest wait.
 */
export function capacityDrainDelaySeconds(input: {
  readonly inFlight: readonly { readonly model: string; readonly atMs: number }[];
  readonly nowMs: number;
  readonly minSeconds: number;
  readonly maxSeconds: number;
}): number {
  let earliest: number | undefined;
  for (const marker of input.inFlight) {
    const model = RUNWAY_MODELS.find((name) => name === marker.model);
    if (model === undefined) continue;
    const doneAt = marker.atMs + MODEL_SPECS[model].typicalGenerationSeconds * 1000;
    earliest = earliest === undefined ? doneAt : Math.min(earliest, doneAt);
  }
  if (earliest === undefined) return input.maxSeconds;
  const seconds = Math.ceil((earliest - input.nowMs) / 1000);
  return Math.min(input.maxSeconds, Math.max(input.minSeconds, seconds));
}
