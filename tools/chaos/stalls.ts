import { heldMsBetween, leaseStarts, type LeaseSpan } from './lease-watch.js';

/**
 * The stall check: no item the worker holds goes longer than a few poll intervals without
 * progress. Progress is what the services saw move an item forward:
 *
 * - the app leased it while nobody held it (first lease, or again after a lapse or release);
 * - Runway created a task for it;
 * - a poll of one of its tasks saw a new status or progress value;
 * - storage stored its video;
 * - the app applied a report for it (the item is then finished).
 *
 * Only time the item was *held* counts (a lease was live): an item given back waits in the
 * app's queue like any item never leased, and a deep queue is not a stall. A heartbeat keeps
 * the item held but is not progress, so a worker that heartbeats an item it no longer moves
 * forward (a report that keeps failing while every delivery only heartbeats) shows here.
 *
 * Time. Gaps are measured in real time, because a chaos run's worker lives on two clocks:
 * what it measures itself (lease, heartbeat interval, Runway timeout, cron tick) runs in real
 * seconds with compressed settings, while every delay that goes through QStash (the poll
 * schedule, Retry-After, redelivery backoff) is multiplied by the QStash time scale — and the
 * reorder fault adds up to `deliveryJitterMs` of unscaled delay to every delivery. A gap mixes
 * both clocks, so no single divisor turns it into "worker seconds"; instead the threshold is
 * built from the settings as this run lets them elapse.
 */

export interface StallSettings {
  readonly leaseSeconds: number;
  readonly pollMaxSeconds: number;
  readonly heartbeatIntervalSeconds: number;
  /** QStash delays are multiplied by this. */
  readonly timeScale: number;
  /** Unscaled delay the local QStash may add to any delivery (its reorder fault). */
  readonly deliveryJitterMs: number;
}

/**
 * The longest a held item may go without progress, in real ms:
 *
 *   lease + one poll interval + one heartbeat interval, both as QStash delivers them.
 *
 * - The lease is the longest quiet stretch the design allows: an item whose lease answer was
 *   lost (or whose holder died) sits held, untouched, until the lease lapses; after that it is
 *   back in the queue and no longer counts.
 * - While the worker moves an item, the next look comes within one poll interval: the poll
 *   schedule never waits longer than RUNWAY_POLL_MAX_SECONDS, a THROTTLED task is cancelled at
 *   RUNWAY_TIMEOUT_SECONDS (shorter than the lease here), and the upload and the report follow a
 *   finished task at once.
 * - A delivery that failed comes again within one heartbeat interval: the worker's Retry-After
 *   never exceeds HEARTBEAT_INTERVAL_SECONDS, so the lease it heartbeats cannot lapse between
 *   deliveries.
 *
 * Anything longer means the worker holds the item without moving it forward.
 */
export function stallThresholdMs(settings: StallSettings): number {
  const delivered = (seconds: number): number => seconds * 1000 * settings.timeScale + settings.deliveryJitterMs;
  return settings.leaseSeconds * 1000 + delivered(settings.pollMaxSeconds) + delivered(settings.heartbeatIntervalSeconds);
}

/** Everything the services saw happen to one item, epoch ms. */
export interface ItemHistory {
  /** Empty when the run never saw the item processing: then it counts as held throughout. */
  readonly leaseSpans: readonly LeaseSpan[];
  readonly tasksCreatedAtMs: readonly number[];
  readonly pollsThatSawChangeAtMs: readonly number[];
  readonly videosStoredAtMs: readonly number[];
  readonly reportsAppliedAtMs: readonly number[];
}

/** The longest held stretch without progress, and where it lay. */
export interface Quiet {
  readonly ms: number;
  readonly fromMs: number;
  readonly toMs: number;
  /** The item was not finished when the run ended. */
  readonly unfinished: boolean;
}

/** Moments the item moved forward, up to and including its first applied report. */
export function progressMoments(history: ItemHistory): { readonly moments: number[]; readonly finishedAtMs: number | undefined } {
  const finishedAtMs = history.reportsAppliedAtMs.length > 0 ? Math.min(...history.reportsAppliedAtMs) : undefined;
  const all = [
    ...leaseStarts(history.leaseSpans),
    ...history.tasksCreatedAtMs,
    ...history.pollsThatSawChangeAtMs,
    ...history.videosStoredAtMs,
    ...(finishedAtMs === undefined ? [] : [finishedAtMs]),
  ];
  const moments = all.filter((at) => finishedAtMs === undefined || at <= finishedAtMs).sort((a, b) => a - b);
  return { moments, finishedAtMs };
}

/** `endMs`: when the run stopped watching; an unfinished item's last quiet stretch runs until then. */
export function longestQuiet(history: ItemHistory, endMs: number): Quiet {
  const { moments, finishedAtMs } = progressMoments(history);
  const bounds = finishedAtMs === undefined && moments.length > 0 ? [...moments, Math.max(endMs, moments.at(-1) ?? endMs)] : moments;
  const heldMs = (fromMs: number, toMs: number): number =>
    history.leaseSpans.length === 0 ? toMs - fromMs : heldMsBetween(history.leaseSpans, fromMs, toMs);
  let longest: Quiet = { ms: 0, fromMs: bounds[0] ?? endMs, toMs: bounds[0] ?? endMs, unfinished: false };
  for (let index = 1; index < bounds.length; index++) {
    const fromMs = bounds[index - 1] ?? 0;
    const toMs = bounds[index] ?? 0;
    const ms = heldMs(fromMs, toMs);
    if (ms > longest.ms) longest = { ms, fromMs, toMs, unfinished: finishedAtMs === undefined && index === bounds.length - 1 };
  }
  return longest;
}
