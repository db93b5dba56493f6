import type { WorkItem } from '../../sandbox/app-api.js';
import type { SandboxRunwayTask } from '../../sandbox/runway.js';
import { TRANSIENT_FAILURE_CODES } from '../../sandbox/runway-failures.js';
import { classifyFailure, isExpectedFailure, type FailureClass } from './classify.js';
import type { Attempt } from './generations.js';

/**
 * How each seeded item ended: completed, failed for a reason the injected faults explain,
 * failed unexpectedly, or lost. A failure class that names a fault is only accepted when the
 * sandbox saw that fault happen to the item.
 */

export interface ItemNote {
  readonly item_id: string;
  readonly detail: string;
}

export interface ItemOutcomes {
  readonly completed: number;
  readonly failures: ReadonlyMap<FailureClass, number>;
  readonly unexpectedFailures: readonly ItemNote[];
  readonly lostItems: readonly ItemNote[];
}

/** What the sandbox Runway did for one item, and the times its tasks were held to. */
export interface RunwayEvidence {
  readonly tasks: readonly SandboxRunwayTask[];
  readonly attempts: readonly Attempt[];
  /** RUNWAY_TIMEOUT_SECONDS in ms. */
  readonly timeoutMs: number;
  readonly generationMs: number;
}

const TRANSIENT = new Set<string>(TRANSIENT_FAILURE_CODES);
const GENERATIONS_IN_MESSAGE = /\(after (\d+) generations\)$/;

/** Why the sandbox's record contradicts the class the message claims; undefined when it agrees. */
function contradiction(kind: FailureClass, message: string, runway: RunwayEvidence): string | undefined {
  if (kind === 'timed-out') {
    // Only a task that never finishes explains a timeout. One that waited THROTTLED so long
    // that a normal generation could not end in time was started beyond Runway's limit.
    const last = runway.attempts.at(-1)?.at(-1)?.task;
    if (last === undefined || last.throttledMs + runway.generationMs < runway.timeoutMs) return undefined;
    return `task ${last.id} waited THROTTLED ${Math.round(last.throttledMs / 1000)} s of its ${Math.round(runway.timeoutMs / 1000)} s`;
  }
  if (kind === 'not-a-video') {
    return runway.tasks.some((task) => task.htmlOutputsServed > 0) ? undefined : 'no output of its tasks was ever served as HTML';
  }
  if (kind === 'regenerated-transient') {
    const last = runway.attempts.at(-1) ?? [];
    const claimed = Number(GENERATIONS_IN_MESSAGE.exec(message)?.[1]);
    if (last.length !== claimed) return `the message names ${claimed} generations, Runway made ${last.length} tasks in the attempt`;
    const notTransient = last.find(({ task }) => task.status !== 'FAILED' || !TRANSIENT.has(task.failureCode ?? ''));
    return notTransient === undefined ? undefined : `task ${notTransient.task.id} ended ${notTransient.task.status} ${notTransient.task.failureCode ?? ''}`.trim();
  }
  return undefined;
}

export function itemOutcomesOf(
  itemIds: readonly string[],
  workItems: ReadonlyMap<string, WorkItem>,
  runwayOf: (itemId: string) => RunwayEvidence,
): ItemOutcomes {
  const failures = new Map<FailureClass, number>();
  const unexpectedFailures: ItemNote[] = [];
  const lostItems: ItemNote[] = [];
  let completed = 0;
  for (const itemId of itemIds) {
    const item = workItems.get(itemId);
    if (item?.status === 'completed') {
      completed += 1;
    } else if (item?.status === 'failed') {
      const message = item.error_message ?? '';
      const claimed = classifyFailure(message);
      const problem = contradiction(claimed, message, runwayOf(itemId));
      const kind: FailureClass = problem === undefined ? claimed : 'unexpected';
      failures.set(kind, (failures.get(kind) ?? 0) + 1);
      if (!isExpectedFailure(kind)) {
        unexpectedFailures.push({ item_id: itemId, detail: `${message || '(no message)'}${problem === undefined ? '' : ` [${problem}]`}` });
      }
    } else {
      const lease = item?.leased_until ? `, leased until ${item.leased_until}` : '';
      lostItems.push({ item_id: itemId, detail: item ? `${item.status}${lease}, retry_count ${item.retry_count}` : 'missing from the app' });
    }
  }
  return { completed, failures, unexpectedFailures, lostItems };
}
