/**
 * A random source for the sandbox's fault injection that fires only when told to. Give a
 * fault a rate of 0.5: by default every draw is 0.999 (never fires); `fireNext(n)` makes
 * the next n draws 0 (fires). The sandbox draws only for faults whose rate is above 0,
 * so with a single fault configured, each draw is one decision of that fault.
 */
export const SCRIPTED_FAULT_RATE = 0.5;

export interface ScriptedRng {
  readonly rng: () => number;
  fireNext(times?: number): void;
}

export function scriptedRng(): ScriptedRng {
  let pending = 0;
  return {
    rng: () => {
      if (pending > 0) {
        pending -= 1;
        return 0;
      }
      return 0.999;
    },
    fireNext(times = 1) {
      pending += times;
    },
  };
}
