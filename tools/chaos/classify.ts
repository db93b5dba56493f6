/**
 * Why a chaos item ended `failed`, judged from its `error_message`. A failure is
 * *expected* when an injected fault explains it and the worker reacted as designed:
 *
 * - `moderation`: Runway refused the input or the output (`runway: SAFETY.…`, the
 *   refused fixture photo and the `safetyRate` fault). Never retried (contract §2.3).
 * - `timed-out`: a task that never finishes (`neverFinishRate`) outlived
 *   `RUNWAY_TIMEOUT_SECONDS`, was cancelled and reported (design §2). Not when the task
 *   only ran out of time waiting THROTTLED (the figures check that against Runway's record).
 * - `regenerated-transient` and `not-a-video` below are likewise checked against what
 *   Runway did for the item.
 * - `daily-cap`: Runway's 429 on create. The design releases the item instead, so this
 *   shows up only if a report names it.
 * - `regenerated-transient`: a generation failed with a temporary code (`INTERNAL`,
 *   `THIRD_PARTY.UNAVAILABLE`, `INPUT_PREPROCESSING.INTERNAL`; `transientFailureRate`), the
 *   worker started its new generation, and that failed transiently too: the message ends
 *   `(after N generations)`. The same codes without it mean the worker gave up early.
 * - `not-a-video`: the output URL answered an HTML page (`htmlOutputRate`, or
 *   `htmlOutputFirstFetchRate` firing on the fresh URL too), and nothing was stored.
 * - `transient-exhausted`: injected 5xx, hangs, resets or expired tokens hit the same item
 *   often enough in a row that the bounded retry policy gave up (three transient failures
 *   before a Runway task, or QStash's last delivery of a step). The message names the
 *   stage and the transient cause.
 *
 * Everything else is `unexpected`, notably a message that blames the input for a fault
 * that was only transient (every chaos photo exists in storage, so "photo: not found"
 * is never the truth here).
 */

export type FailureClass =
  | 'moderation'
  | 'timed-out'
  | 'daily-cap'
  | 'regenerated-transient'
  | 'not-a-video'
  | 'transient-exhausted'
  | 'unexpected';

const TRANSIENT_RUNWAY_CODE = String.raw`runway: (?:INTERNAL|THIRD_PARTY\.UNAVAILABLE|INPUT_PREPROCESSING\.INTERNAL) — `;

/** The first matching rule wins. */
const RULES: readonly (readonly [FailureClass, RegExp])[] = [
  ['moderation', /^runway: (?:SAFETY|INPUT_PREPROCESSING\.SAFETY)(?:\.[A-Z_]+)* — /],
  ['timed-out', /^runway: timed out after \d+ s\b/],
  ['daily-cap', /^runway: daily generation limit reached\b/],
  ['regenerated-transient', new RegExp(`^${TRANSIENT_RUNWAY_CODE}[^(]*\\(after \\d+ generations\\)$`)],
  // Before `transient-exhausted`: what follows the code may quote a 5xx of the new generation's create.
  ['unexpected', new RegExp(`^${TRANSIENT_RUNWAY_CODE}`)],
  ['not-a-video', /^output: Runway's output is not a video \(/],
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
