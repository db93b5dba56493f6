import type { SandboxRunwayTask } from '../../sandbox/runway.js';
import { failureOutcome, taskPhaseAt, type TaskOutcome, type TaskPhase } from '../../sandbox/runway-task-timeline.js';

/**
 * What a sandbox Runway task showed at any moment of a chaos run, rebuilt after the run from
 * its final snapshot with the sandbox's own timeline function: the task's phase depends only
 * on its creation, the moment it got a concurrency slot (creation + time THROTTLED), its
 * planned outcome and its cancellation, all of which the snapshot and the recorded requests
 * give back.
 */

/** A request the sandbox Runway received about one task, at epoch ms `at`. */
export interface TaskRequest {
  readonly taskId: string;
  readonly at: number;
}

/** What a poll could have seen: a phase, or the 404 of a task cancelled or deleted by then. */
export type SeenPhase = TaskPhase | { readonly status: 'GONE' };

const TASK_PATH = /^\/v1\/tasks\/([^/?]+)/;

/** The task id of a recorded `/v1/tasks/{id}` request, or undefined for any other path. */
export function taskIdOfPath(path: string): string | undefined {
  const match = TASK_PATH.exec(path);
  return match?.[1] === undefined ? undefined : decodeURIComponent(match[1]);
}

/**
 * The outcome the sandbox planned, as far as the end state tells: a task that neither
 * succeeded nor failed was cancelled or still running at the end, which in a chaos run is
 * a task that never finishes (the others end within one generation time).
 */
function outcomeOf(task: SandboxRunwayTask): TaskOutcome {
  if (task.status === 'SUCCEEDED') return { kind: 'succeed' };
  if (task.status === 'FAILED' && task.failureCode !== undefined) return failureOutcome(task.failureCode);
  return { kind: 'never-finish' };
}

export interface PhaseClock {
  /** The phase a GET of the task answered at `atMs`. */
  phaseAt(atMs: number): SeenPhase;
}

/**
 * `goneAtMs`: the first DELETE of the task. From then on a GET answers 404 (a DELETE cancels
 * a task in flight and deletes a finished one). A DELETE that met a 502 fault is counted as
 * if it went through: the worker's retry follows within a second.
 */
export function phaseClockOf(task: SandboxRunwayTask, generationMs: number, goneAtMs: number | undefined): PhaseClock {
  const createdAtMs = Date.parse(task.createdAt);
  const timeline = { createdAtMs, generationMs, outcome: outcomeOf(task) };
  // A task still THROTTLED at the end never got its slot; one cancelled while THROTTLED has
  // `throttledMs` up to its cancellation, which is where `goneAtMs` takes over.
  const slotAtMs = task.status === 'THROTTLED' ? undefined : createdAtMs + task.throttledMs;
  return {
    phaseAt(atMs) {
      if (goneAtMs !== undefined && atMs >= goneAtMs) return { status: 'GONE' };
      return taskPhaseAt(timeline, slotAtMs, atMs);
    },
  };
}

export function samePhase(a: SeenPhase, b: SeenPhase): boolean {
  const progressOf = (phase: SeenPhase): number | undefined => ('progress' in phase ? phase.progress : undefined);
  return a.status === b.status && progressOf(a) === progressOf(b);
}

/**
 * The moments a poll of the task saw something new: another status or another progress
 * value than the poll before it (or than the task showed when it was created). `polls` are
 * the task's GETs, in any order. A GET that met a 502 fault saw nothing, yet counts here:
 * the worker retries it within a second, so the moment is early by that much at most.
 */
export function pollsThatSawChange(clock: PhaseClock, createdAtMs: number, polls: readonly number[]): number[] {
  const moments: number[] = [];
  let last = clock.phaseAt(createdAtMs);
  for (const at of [...polls].sort((a, b) => a - b)) {
    const seen = clock.phaseAt(at);
    if (!samePhase(seen, last)) moments.push(at);
    last = seen;
  }
  return moments;
}
