import type { RunwayModel } from '../config.js';
import { limitsFromOrganization, type ModelLimits } from '../decide/capacity.js';
import { describeError, type Logger } from '../log.js';
import type { Runway } from './runway.js';

/**
 * Runway's per-model limits (`GET /v1/organization`), read at most about once a minute per
 * process: limits change only with the account's tier, and usage is only a hint (a create
 * over the daily cap still answers 429, which is handled where it happens).
 */

export const LIMITS_CACHE_MS = 60_000;

export interface LimitsReading {
  readonly models: Readonly<Record<RunwayModel, ModelLimits>>;
  /** `fresh`: read now; `cached`: read within the last minute; `stale`: the call failed, last known values; `fallback`: never read. */
  readonly source: 'fresh' | 'cached' | 'stale' | 'fallback';
}

export interface RunwayLimits {
  current(): Promise<LimitsReading>;
}

export function createRunwayLimits(runway: Runway, options: { now: () => number; log: Logger }): RunwayLimits {
  let known: { models: Record<RunwayModel, ModelLimits>; atMs: number } | undefined;
  let inFlight: Promise<LimitsReading> | undefined;

  async function read(): Promise<LimitsReading> {
    try {
      const models = limitsFromOrganization(await runway.organization());
      known = { models, atMs: options.now() };
      return { models, source: 'fresh' };
    } catch (error) {
      options.log.warn({ err: describeError(error) }, 'could not read Runway limits: using the last known or the lowest tier');
      if (known) return { models: known.models, source: 'stale' };
      // An organization listing no model gives every model the fallback limits.
      return { models: limitsFromOrganization({ tier: { models: {} } }), source: 'fallback' };
    }
  }

  return {
    current() {
      if (known && options.now() - known.atMs < LIMITS_CACHE_MS) return Promise.resolve({ models: known.models, source: 'cached' });
      // Overlapping callers in one process share one call.
      inFlight ??= read().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    },
  };
}
