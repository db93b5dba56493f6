import type { SandboxRunwayTask } from '../../sandbox/runway.js';
import { TRANSIENT_FAILURE_CODES } from '../../sandbox/runway-failures.js';
import type { PhaseClock } from './runway-phases.js';

/**
 * An item's Runway tasks sorted into lease attempts and generations, from what the sandbox
 * services saw. Design §4: per lease attempt one Runway task per generation, and a new
 * generation only after the one before failed with a transient code (contract §2.3).
 *
 * One worker id and no admin retry means an attempt ends only with a report (the item is
 * then finished) or when the worker gives the item back (`extend_seconds: 0`, which the app
 * records as a heartbeat) — after a transient failure before any task, or after Runway's
 * daily cap refused a new generation's create. So a release between two tasks separates
 * attempts; tasks with none between them belong to one attempt.
 */

export interface TaskInAttempt {
  readonly task: SandboxRunwayTask;
  /** 1 for the attempt's first task; one more after each transient failure. */
  readonly generation: number;
}

export type Attempt = readonly TaskInAttempt[];

const TRANSIENT = new Set<string>(TRANSIENT_FAILURE_CODES);

/** Whether `previous` had failed with a transient code by the moment `next` was created. */
function failedTransientlyBefore(previous: PhaseClock, next: SandboxRunwayTask): boolean {
  const phase = previous.phaseAt(Date.parse(next.createdAt));
  return phase.status === 'FAILED' && 'failureCode' in phase && phase.failureCode !== undefined && TRANSIENT.has(phase.failureCode);
}

/**
 * `tasks` and `releaseTimes` of one item; `clockOf` gives each task's phases. A task created
 * without a transient failure of the task before it keeps that task's generation number, so a
 * second create for one generation shows as two tasks with the same number.
 */
export function attemptsOf(
  tasks: readonly SandboxRunwayTask[],
  releaseTimes: readonly number[],
  clockOf: (task: SandboxRunwayTask) => PhaseClock,
): Attempt[] {
  const ordered = [...tasks].sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt));
  const attempts: TaskInAttempt[][] = [];
  let current: TaskInAttempt[] = [];
  for (const task of ordered) {
    const previous = current.at(-1);
    const createdAtMs = Date.parse(task.createdAt);
    const released = previous !== undefined && releaseTimes.some((at) => at > Date.parse(previous.task.createdAt) && at < createdAtMs);
    if (previous === undefined || released) {
      if (current.length > 0) attempts.push(current);
      current = [{ task, generation: 1 }];
      continue;
    }
    const regenerated = failedTransientlyBefore(clockOf(previous.task), task);
    current.push({ task, generation: previous.generation + (regenerated ? 1 : 0) });
  }
  if (current.length > 0) attempts.push(current);
  return attempts;
}

/** The most tasks created for one generation of one attempt (1 when every create was warranted). */
export function createsPerGenerationMax(attempt: Attempt): number {
  const counts = new Map<number, number>();
  for (const { generation } of attempt) counts.set(generation, (counts.get(generation) ?? 0) + 1);
  return Math.max(0, ...counts.values());
}
