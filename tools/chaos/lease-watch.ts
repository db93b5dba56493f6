import type { WorkItem } from '../../sandbox/app-api.js';

/**
 * Who held an item, and when, as the app's own record shows it. The app keeps no history of
 * leases, so a chaos run samples every item's `leased_until` while it drives them and keeps
 * each new value. The app sets `leased_until` to now + the seconds asked for on a lease and
 * on a heartbeat (the worker asks for its lease duration on both), and to now on a release
 * (`extend_seconds: 0`); so each value tells when it was set, and sampling only has to be
 * fast next to the lease.
 */

/** A new `leased_until` of a processing item, first seen at `seenAtMs`. */
export interface LeaseSample {
  readonly item_id: string;
  readonly seenAtMs: number;
  readonly leasedUntilMs: number;
}

export interface LeaseWatch {
  sample(items: readonly WorkItem[], nowMs: number): void;
  samples(): readonly LeaseSample[];
}

export function createLeaseWatch(): LeaseWatch {
  const last = new Map<string, number>();
  const seen: LeaseSample[] = [];
  return {
    sample(items, nowMs) {
      for (const item of items) {
        if (item.status !== 'processing' || item.leased_until === null) continue;
        const leasedUntilMs = Date.parse(item.leased_until);
        if (last.get(item.item_id) === leasedUntilMs) continue;
        last.set(item.item_id, leasedUntilMs);
        seen.push({ item_id: item.item_id, seenAtMs: nowMs, leasedUntilMs });
      }
    },
    samples: () => [...seen],
  };
}

/** The lease as one value set it: held from `atMs` until `untilMs` unless a later value replaced it. */
export interface LeaseSpan {
  readonly atMs: number;
  readonly untilMs: number;
}

/**
 * One item's samples as lease spans, oldest first. A value still in the future when seen came
 * from a lease or a heartbeat `leaseMs` before it; one already past came from a release.
 */
export function leaseSpansOf(samples: readonly LeaseSample[], leaseMs: number): LeaseSpan[] {
  return samples
    .map((sample) => ({
      atMs: sample.leasedUntilMs > sample.seenAtMs ? sample.leasedUntilMs - leaseMs : sample.leasedUntilMs,
      untilMs: sample.leasedUntilMs,
    }))
    .sort((a, b) => a.atMs - b.atMs);
}

/** Moments the item was leased while nobody held it: its first lease and every lease after a lapse or a release. */
export function leaseStarts(spans: readonly LeaseSpan[]): number[] {
  return spans.filter((span, index) => index === 0 || (spans[index - 1]?.untilMs ?? 0) <= span.atMs).map((span) => span.atMs);
}

/** How long within [fromMs, toMs) the item was held: each value rules until the next one is set. */
export function heldMsBetween(spans: readonly LeaseSpan[], fromMs: number, toMs: number): number {
  let held = 0;
  for (const [index, span] of spans.entries()) {
    const replacedAtMs = spans[index + 1]?.atMs ?? Number.POSITIVE_INFINITY;
    const start = Math.max(span.atMs, fromMs);
    const end = Math.min(span.untilMs, replacedAtMs, toMs);
    if (end > start) held += end - start;
  }
  return held;
}
