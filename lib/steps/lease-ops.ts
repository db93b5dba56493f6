import type { Deps } from '../deps.js';
import { describeError } from '../log.js';
import type { JobKey } from '../ledger/ledger.js';

/** Small lease-related moves shared by the steps. */

/** Gives the item back at once (`extend_seconds: 0`): it is not ours to finish now. */
export async function releaseLease(deps: Deps, itemId: string, why: string): Promise<void> {
  try {
    await deps.app.heartbeat(itemId, 0);
    deps.log.info({ item_id: itemId, why }, 'lease released');
  } catch (error) {
    // The lease lapses by itself; nothing is lost if the release does not go through.
    deps.log.warn({ item_id: itemId, why, err: describeError(error) }, 'lease release failed; it will lapse');
  }
}

/** Transient failures before a Runway task, in a row, carried from one attempt to the next. */
export interface FailureStreak {
  readonly failures: number;
  /** Of those, the app's "Failed to generate download URL" answers in a row. */
  readonly photoNotFound: number;
}

/**
 * The lease is gone (another worker or an admin has the item): stop paying Runway and
 * record that this attempt ends without a report.
 */
export async function abandonJob(
  deps: Deps,
  key: JobKey,
  runwayTaskId: string | undefined,
  reason: string,
  streak?: FailureStreak,
): Promise<void> {
  if (runwayTaskId) {
    try {
      await deps.runway.cancelTask(runwayTaskId);
    } catch (error) {
      deps.log.warn({ item_id: key.itemId, runway_task_id: runwayTaskId, err: describeError(error) }, 'cancel failed');
    }
  }
  await deps.ledger.claim(key, 'abandoned', {
    reason,
    at: new Date(deps.now()).toISOString(),
    ...(streak === undefined ? {} : { transient_failures: streak.failures, photo_not_found: streak.photoNotFound }),
  });
  deps.log.warn({ item_id: key.itemId, runway_task_id: runwayTaskId, reason }, 'attempt closed without a report');
}

/**
 * The generation holds one of the model's Runway slots until it ends (backpressure). A
 * marker that cannot be written or removed only makes the count off by one for a while
 * (markers expire), so neither ever fails the step.
 */
export async function markSlot(deps: Deps, key: JobKey, model: string): Promise<void> {
  try {
    await deps.ledger.markSlot(key, model);
  } catch (error) {
    deps.log.warn({ item_id: key.itemId, model, err: describeError(error) }, 'could not mark the Runway slot taken');
  }
}

export async function releaseSlot(deps: Deps, key: JobKey, model: string): Promise<void> {
  try {
    await deps.ledger.releaseSlot(key, model);
  } catch (error) {
    deps.log.warn({ item_id: key.itemId, model, err: describeError(error) }, 'could not mark the Runway slot free');
  }
}
