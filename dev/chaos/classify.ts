/**
 * Why a chaos item ended `failed`, judged from its `error_message`. A failure is
 * *expected* when an injected fault explains it and the worker reacted as designed:
 *
 * - `moderation`: Runway refused the input or the output (`runway: SAFETY.…`, the
 *   refused fixture photo and the `safetyRate` fault). Never retried (contract §2.3).
 * - `timed-out`: a task that never finishes (`neverFinishRate`) outlived
 *   `RUNWAY_TIMEOUT_SECONDS`, was cancelled and reported (design §2).
 * - `daily-cap`: Runway's 429 on create. The design releases the item instead, so this
 *   shows up only if a report names it.
 * - `transient-exhausted`: injected 5xx, hangs, resets or expired tokens hit the same item
 *   often enough in a row that the bounded retry policy gave up (three transient failures
 *   before a Runway task, or QStash's last delivery of a step). The message names the
 *   stage and the transient cause.
 *
 * Everything else is `unexpected`, notably a message that blames the input for a fault
 * that was only transient (every chaos photo exists in storage, so "photo: not found"
 * is never the truth here).
 */

export type FailureClass = 'moderation' | 'timed-out' | 'daily-cap' | 'transient-exhausted' | 'unexpected';

const RULES: readonly (readonly [FailureClass, RegExp])[] = [
  ['moderation', /^runway: (?:SAFETY|INPUT_PREPROCESSING\.SAFETY)(?:\.[A-Z_]+)* — /],
  ['timed-out', /^runway: timed out after \d+ s\b/],
  ['daily-cap', /^runway: daily generation limit reached\b/],
  [
    'transient-exhausted',
    /^(?:app|runway|storage|photo|output): .*(?:answered (?:5\d\d|429|408)\b|timed out\b|failed \(network error\)|was cut off\b|token expired(?: twice)?\b)/,
  ],
];

export function classifyFailure(errorMessage: string | null | undefined): FailureClass {
  const message = errorMessage ?? '';
  for (const [kind, pattern] of RULES) if (pattern.test(message)) return kind;
  return 'unexpected';
}

export function isExpectedFailure(kind: FailureClass): boolean {
  return kind !== 'unexpected';
}
