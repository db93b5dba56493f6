import { RUNWAY_MODELS, type RunwayModel } from '../config.js';
import { modelCapacity, slotMarkerLifetimeMs, type ModelCapacity } from '../decide/capacity.js';
import type { Deps } from '../deps.js';
import type { SlotMarker } from '../ledger/ledger.js';

/**
 * What Runway can start now, per model: its limit (cached about a minute) minus this
 * worker's generations in flight (one listing of the ledger's slot markers), paused while a
 * task of ours is seen THROTTLED. Read once per cron-poll run, after its first lease (an
 * idle run reads nothing).
 */

export interface CapacityPlan {
  readonly models: Readonly<Record<RunwayModel, ModelCapacity>>;
  /** Where the limits came from (`fresh`, `cached`, `stale`, `fallback`). */
  readonly limitsSource: string;
  readonly inFlight: readonly SlotMarker[];
}

export async function planCapacity(deps: Deps): Promise<CapacityPlan> {
  const now = deps.now();
  const lifetimeMs = slotMarkerLifetimeMs(deps.config.runwayTimeoutSeconds, deps.config.runwayPollMaxSeconds);
  const [limits, slots] = await Promise.all([deps.runwayLimits.current(), deps.ledger.slots(now - lifetimeMs)]);
  const models = {} as Record<RunwayModel, ModelCapacity>;
  for (const model of RUNWAY_MODELS) {
    models[model] = modelCapacity({
      limits: limits.models[model],
      inFlight: slots.inFlight.filter((marker) => marker.model === model).length,
      throttledAtMs: slots.throttledAtMs[model],
      nowMs: now,
    });
  }
  return { models, limitsSource: limits.source, inFlight: slots.inFlight };
}

/** Hands out one run's free slots; a slot taken for an item that did not become a task is given back. */
export interface SlotGate {
  /** Whether the model has a free slot (now taken). */
  take(model: RunwayModel): boolean;
  giveBack(model: RunwayModel): void;
}

export function createSlotGate(plan: CapacityPlan): SlotGate {
  const free = {} as Record<RunwayModel, number>;
  for (const model of RUNWAY_MODELS) free[model] = plan.models[model].free;
  return {
    take(model) {
      if (free[model] <= 0) return false;
      free[model] -= 1;
      return true;
    },
    giveBack(model) {
      free[model] += 1;
    },
  };
}

/** No backpressure: every model always has room (the benchmark's baseline). */
export const UNLIMITED_GATE: SlotGate = { take: () => true, giveBack: () => undefined };

/** The plan as cron-poll answers it, for a person reading the answer. */
export interface CapacitySummary {
  readonly limits: string;
  /** `daily_remaining` is left out of the JSON when Runway's usage is unknown. */
  readonly models: Readonly<Record<string, { limit: number; in_flight: number; free: number; paused: boolean; daily_remaining: number | undefined }>>;
}

export function capacitySummaryOf(plan: CapacityPlan): CapacitySummary {
  return {
    limits: plan.limitsSource,
    models: Object.fromEntries(
      Object.entries(plan.models).map(([model, c]) => [
        model,
        { limit: c.limit, in_flight: c.inFlight, free: c.free, paused: c.paused, daily_remaining: c.dailyRemaining },
      ]),
    ),
  };
}

/**
 * Holds a slot of the default model while a lease is asked for (the app does not say in
 * advance which model a task wants), then trades it for the task's own model.
 */
/** A slot held for one lease: traded for the task's model by `admit`, given back by `release`. */
export interface SlotHold {
  readonly admit: (model: RunwayModel) => boolean;
  readonly release: () => void;
}

export function slotHolder(gate: SlotGate, reserved: RunwayModel): SlotHold {
  let holding: RunwayModel | undefined = reserved;
  return {
    admit(model) {
      if (model === holding) return true;
      if (holding !== undefined) gate.giveBack(holding);
      holding = gate.take(model) ? model : undefined;
      return holding !== undefined;
    },
    release() {
      if (holding !== undefined) gate.giveBack(holding);
      holding = undefined;
    },
  };
}
