/** A small seeded generator (mulberry32) so fault runs can be replayed from a seed. */
export function createRng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** True with the given probability (0 disables, 1 always). */
export function chance(rng: () => number, rate: number | undefined): boolean {
  return rate !== undefined && rate > 0 && rng() < rate;
}
