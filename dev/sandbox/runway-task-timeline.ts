/**
 * Where a sandbox task stands at a given moment. Pure: a task's state is derived from
 * its creation time and planned outcome, so no timers run and a paused test clock cannot
 * leave work behind.
 */

export type RunwayTaskStatus = 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

export type TaskOutcome =
  | { readonly kind: 'succeed' }
  /** Rejected while preprocessing its input: fails as soon as it leaves PENDING. */
  | { readonly kind: 'fail-input'; readonly failureCode: string }
  /** Rejected after generation, like output moderation: fails when it would have succeeded. */
  | { readonly kind: 'fail-output'; readonly failureCode: string }
  | { readonly kind: 'never-finish' };

export interface TaskTimeline {
  readonly createdAtMs: number;
  readonly generationMs: number;
  readonly outcome: TaskOutcome;
  /** Set when the task was cancelled before it reached a terminal state. */
  readonly cancelledAtMs?: number;
}

export interface TaskPhase {
  readonly status: RunwayTaskStatus;
  readonly progress?: number;
  readonly failureCode?: string;
}

/** The first tenth of the generation time is spent queued. */
const PENDING_FRACTION = 0.1;
/** RUNNING never reports a finished bar; the final step is SUCCEEDED itself. */
const PROGRESS_CEILING = 0.99;

export function taskPhaseAt(timeline: TaskTimeline, nowMs: number): TaskPhase {
  if (timeline.cancelledAtMs !== undefined) return { status: 'CANCELLED' };
  const elapsedMs = Math.max(0, nowMs - timeline.createdAtMs);
  const pendingMs = timeline.generationMs * PENDING_FRACTION;
  const { outcome } = timeline;
  if (elapsedMs < pendingMs) return { status: 'PENDING' };
  if (outcome.kind === 'fail-input') return { status: 'FAILED', failureCode: outcome.failureCode };

  const runningMs = timeline.generationMs - pendingMs;
  const fraction = runningMs > 0 ? (elapsedMs - pendingMs) / runningMs : 1;
  if (outcome.kind === 'never-finish') {
    return { status: 'RUNNING', progress: roundProgress(PROGRESS_CEILING * (1 - Math.exp(-2 * fraction))) };
  }
  if (fraction < 1) return { status: 'RUNNING', progress: roundProgress(fraction) };
  if (outcome.kind === 'fail-output') return { status: 'FAILED', failureCode: outcome.failureCode };
  return { status: 'SUCCEEDED' };
}

export function isTerminal(status: RunwayTaskStatus): boolean {
  return status === 'SUCCEEDED' || status === 'FAILED' || status === 'CANCELLED';
}

function roundProgress(value: number): number {
  return Math.min(PROGRESS_CEILING, Math.max(0, Math.round(value * 100) / 100));
}
