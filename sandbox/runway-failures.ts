/** Failures the sandbox Runway plans for a task at its creation: drawn at a rate, or scripted by a test. */

/** Codes Runway documents as temporary (contract §2.3): a new generation may well succeed. */
export const TRANSIENT_FAILURE_CODES = ['INTERNAL', 'THIRD_PARTY.UNAVAILABLE', 'INPUT_PREPROCESSING.INTERNAL'] as const;

/**
 * A transient failure code with probability `rate`, else undefined. One draw decides both
 * whether and which, so a scripted random source still makes one decision per draw.
 */
export function drawTransientFailure(rng: () => number, rate: number | undefined): string | undefined {
  if (rate === undefined || rate <= 0) return undefined;
  const draw = rng();
  if (draw >= rate) return undefined;
  const index = Math.min(TRANSIENT_FAILURE_CODES.length - 1, Math.floor((draw / rate) * TRANSIENT_FAILURE_CODES.length));
  return TRANSIENT_FAILURE_CODES[index];
}

export interface ScriptedFailure {
  readonly code: string;
  /** How many of the next matching tasks fail; default 1. */
  readonly count?: number;
  /** Only tasks whose promptText contains this text match. */
  readonly promptIncludes?: string;
}

export interface ScriptedFailures {
  add(failure: ScriptedFailure): void;
  /** The code the task being created must fail with, using up one scripted failure; undefined when none applies. */
  take(promptText: string | undefined): string | undefined;
}

export function createScriptedFailures(): ScriptedFailures {
  const pending: { code: string; left: number; promptIncludes: string | undefined }[] = [];
  return {
    add(failure) {
      const count = failure.count ?? 1;
      if (!Number.isSafeInteger(count) || count < 1) throw new Error('sandbox Runway: failNextTasks count must be a positive integer');
      pending.push({ code: failure.code, left: count, promptIncludes: failure.promptIncludes });
    },
    take(promptText) {
      const index = pending.findIndex((entry) => entry.promptIncludes === undefined || (promptText ?? '').includes(entry.promptIncludes));
      const entry = pending[index];
      if (entry === undefined) return undefined;
      entry.left -= 1;
      if (entry.left === 0) pending.splice(index, 1);
      return entry.code;
    },
  };
}
