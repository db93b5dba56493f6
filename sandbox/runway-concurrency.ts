/**
 * Runway's per-model concurrency limit (contract §2.3 THROTTLED, §2.4
 * `maxConcurrentGenerations`), derived from the task records alone: whoever asks, the
 * same records give the same schedule, so no timer hands out slots.
 *
 * Tasks of one model take slots first come first served, in creation order. A task gets
 * a slot at its creation when one is free, else when the earliest held slot frees; it
 * then holds it for `holdMs` (its generation) or until it is cancelled. A task cancelled
 * while still waiting never takes one.
 */

export interface SlotClaim<Group> {
  /** Tasks of different groups (models) never compete for slots. */
  readonly group: Group;
  readonly createdAtMs: number;
  /** When the task was cancelled (a DELETE of a task still in flight). */
  readonly cancelledAtMs: number | undefined;
  /** How long the task keeps a slot once it has one; Infinity for one that never finishes. */
  readonly holdMs: number;
}

/**
 * The moment each claim gets its slot (undefined: cancelled before it got one), in the
 * order given, which must be creation order. `limitOf` undefined means no limit. Times
 * after now are a forecast that only a later cancellation can bring forward, never one
 * that changes what was already reported.
 */
export function grantSlots<Group>(
  claims: readonly SlotClaim<Group>[],
  limitOf: (group: Group) => number | undefined,
): (number | undefined)[] {
  // Per group, the release time of every slot held so far, earliest first.
  const releases = new Map<Group, number[]>();
  return claims.map((claim) => {
    const limit = limitOf(claim.group);
    if (limit === undefined) return claim.createdAtMs;
    let held = releases.get(claim.group);
    if (held === undefined) {
      held = [];
      releases.set(claim.group, held);
    }
    const full = held.length >= limit;
    const slotAtMs = full ? Math.max(claim.createdAtMs, held[0] ?? claim.createdAtMs) : claim.createdAtMs;
    const waited = slotAtMs > claim.createdAtMs;
    if (waited && claim.cancelledAtMs !== undefined && claim.cancelledAtMs <= slotAtMs) return undefined;
    if (full) held.shift();
    insertSorted(held, Math.min(slotAtMs + claim.holdMs, claim.cancelledAtMs ?? Number.POSITIVE_INFINITY));
    return slotAtMs;
  });
}

/** A span of time `[fromMs, untilMs)`; `untilMs` Infinity while it has not ended. */
export interface Span {
  readonly fromMs: number;
  readonly untilMs: number;
}

/** The largest number of spans that overlapped at one moment up to `nowMs`. */
export function maxOverlap(spans: readonly Span[], nowMs: number): number {
  const events: [atMs: number, delta: number][] = [];
  for (const span of spans) {
    if (span.fromMs > nowMs || span.untilMs <= span.fromMs) continue;
    events.push([span.fromMs, 1]);
    if (span.untilMs <= nowMs) events.push([span.untilMs, -1]);
  }
  // An end and a start at the same moment do not overlap: the slot passed from one to the other.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let current = 0;
  let max = 0;
  for (const [, delta] of events) {
    current += delta;
    max = Math.max(max, current);
  }
  return max;
}

function insertSorted(values: number[], value: number): void {
  let index = values.length;
  while (index > 0 && (values[index - 1] ?? 0) > value) index -= 1;
  values.splice(index, 0, value);
}
