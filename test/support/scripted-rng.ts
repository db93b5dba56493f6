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

/**
 * A random source that fires on chosen draws by number: the sandbox draws once per Runway
 * API call for its 502 fault, so a test can fire on, say, "the create after this task lookup".
 */
export interface CountedRng {
  readonly rng: () => number;
  /** Draws made so far. */
  draws(): number;
  /** Fire on these draw numbers (1 = the first draw ever). */
  fireOn(...draws: number[]): void;
}

export function countedRng(): CountedRng {
  let draws = 0;
  const firing = new Set<number>();
  return {
    rng: () => (firing.has(++draws) ? 0 : 0.999),
    draws: () => draws,
    fireOn(...numbers) {
      for (const number of numbers) firing.add(number);
    },
  };
}
