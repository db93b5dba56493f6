/**
 * The account tier the sandbox Runway plays: per-model concurrency and daily generation
 * limits, as `GET /v1/organization` reports them (contract §2.4).
 */
import { RUNWAY_MODELS, type RunwayModel } from './runway-models.js';

/** One limit for every model, or a limit per model (models left out are not limited). */
export type ConcurrencyOption = number | Partial<Record<RunwayModel, number>>;

/** What the organization reports for a model without a concurrency limit. */
export const UNLIMITED_CONCURRENCY_REPORTED = 1000;
export const DEFAULT_DAILY_LIMIT = 1000;

export interface Tier {
  /** Undefined: tasks of the model are never throttled. */
  concurrencyOf(model: RunwayModel): number | undefined;
  readonly dailyLimit: number;
}

export function createTier(concurrency: ConcurrencyOption | undefined, dailyLimit: number | undefined): Tier {
  const limits = new Map<RunwayModel, number>();
  for (const model of RUNWAY_MODELS) {
    const limit = typeof concurrency === 'number' ? concurrency : concurrency?.[model];
    if (limit === undefined) continue;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`sandbox Runway: concurrency for ${model} must be a positive integer`);
    limits.set(model, limit);
  }
  const daily = dailyLimit ?? DEFAULT_DAILY_LIMIT;
  if (!Number.isSafeInteger(daily) || daily < 0) throw new Error('sandbox Runway: dailyLimit must be a whole number');
  return { concurrencyOf: (model) => limits.get(model), dailyLimit: daily };
}

export const DAY_MS = 24 * 60 * 60 * 1000;

/** Daily counts restart at midnight UTC. */
export function utcDayStartMs(nowMs: number): number {
  return nowMs - (nowMs % DAY_MS);
}

/** The body of `GET /v1/organization`. */
export function organizationBody(
  tier: Tier,
  creditBalance: number,
  dailyGenerations: (model: RunwayModel) => number,
): unknown {
  return {
    creditBalance,
    tier: {
      models: Object.fromEntries(
        RUNWAY_MODELS.map((model) => [
          model,
          {
            maxConcurrentGenerations: tier.concurrencyOf(model) ?? UNLIMITED_CONCURRENCY_REPORTED,
            maxDailyGenerations: tier.dailyLimit,
          },
        ]),
      ),
    },
    usage: { models: Object.fromEntries(RUNWAY_MODELS.map((model) => [model, { dailyGenerations: dailyGenerations(model) }])) },
  };
}
