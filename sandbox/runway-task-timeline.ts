/**
 * Where a sandbox task stands at a given moment. Pure: a task's state is derived from
 * its creation time, the moment it got a concurrency slot and its planned outcome, so no
 * timers run and a paused test clock cannot leave work behind.
 */

export type RunwayTaskStatus = 'THROTTLED' | 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

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

/** Input problems are found while preprocessing, before any frame is generated (contract §2.3). */
const EARLY_FAILURE_PREFIXES = ['INPUT_PREPROCESSING.', 'ASSET.', 'SAFETY.INPUT.'] as const;

/** When a task planned to fail with `failureCode` fails: on leaving PENDING, or at the end of the generation. */
export function failureOutcome(failureCode: string): TaskOutcome {
  return EARLY_FAILURE_PREFIXES.some((prefix) => failureCode.startsWith(prefix))
    ? { kind: 'fail-input', failureCode }
    : { kind: 'fail-output', failureCode };
}

/**
 * How long a task keeps its concurrency slot once it has one: until it fails on leaving
 * PENDING, until the generation ends, or (never finishing) until it is cancelled.
 */
export function slotHoldMs(timeline: TaskTimeline): number {
  switch (timeline.outcome.kind) {
    case 'fail-input':
      return pendingMs(timeline);
    case 'never-finish':
      return Number.POSITIVE_INFINITY;
    case 'succeed':
    case 'fail-output':
      return timeline.generationMs;
  }
}

/**
 * The phase at `nowMs` of a task that got its concurrency slot at `slotAtMs` (undefined:
 * not yet, as far as is known). Its generation clock starts with the slot; before that it
 * waits THROTTLED.
 */
export function taskPhaseAt(timeline: TaskTimeline, slotAtMs: number | undefined, nowMs: number): TaskPhase {
  if (timeline.cancelledAtMs !== undefined) return { status: 'CANCELLED' };
  // A task whose slot came with its creation is never THROTTLED, even for a clock read just before it.
  if (slotAtMs === undefined || (slotAtMs > timeline.createdAtMs && nowMs < slotAtMs)) return { status: 'THROTTLED' };
  const elapsedMs = Math.max(0, nowMs - slotAtMs);
  const queuedMs = pendingMs(timeline);
  const { outcome } = timeline;
  if (elapsedMs < queuedMs) return { status: 'PENDING' };
  if (outcome.kind === 'fail-input') return { status: 'FAILED', failureCode: outcome.failureCode };

  const runningMs = timeline.generationMs - queuedMs;
  const fraction = runningMs > 0 ? (elapsedMs - queuedMs) / runningMs : 1;
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

function pendingMs(timeline: TaskTimeline): number {
  return timeline.generationMs * PENDING_FRACTION;
}

function roundProgress(value: number): number {
  return Math.min(PROGRESS_CEILING, Math.max(0, Math.round(value * 100) / 100));
}
