import type { CreateTaskBody, RunwayTask } from '../../lib/clients/runway.js';

/** `123456` → `123 456`: digits grouped by thousands with spaces, as the request summary shows sizes. */
export function groupDigits(value: number): string {
  return String(Math.round(value)).replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
}

/** `11.2 s` */
export function secondsText(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

const DATA_URI_HEAD = /^(data:[^,]*;base64,)([A-Za-z0-9+/]*)(=*)$/;

/** A data URI as a person wants to see it: the header and the size of what it carries, not the bytes. */
export function describePromptImage(promptImage: string): string {
  const match = DATA_URI_HEAD.exec(promptImage);
  if (match === null) return promptImage.startsWith('data:') ? `data:… (${groupDigits(promptImage.length)} characters)` : promptImage;
  const [, head = '', payload = '', padding = ''] = match;
  const bytes = ((payload.length + padding.length) / 4) * 3 - padding.length;
  return `${head}… (${groupDigits(bytes)} bytes)`;
}

/** The create body as sent, pretty-printed, with the image bytes left out. */
export function describeRequest(body: CreateTaskBody): string {
  return JSON.stringify({ ...body, promptImage: describePromptImage(body.promptImage) }, null, 2);
}

/** One line per poll: `poll 2 · 10.1 s · RUNNING 58%`. */
export function pollLine(poll: number, elapsedMs: number, task: RunwayTask): string {
  const progress = typeof task.progress === 'number' && task.status === 'RUNNING' ? ` ${Math.round(task.progress * 100)}%` : '';
  const note =
    task.status === 'THROTTLED'
      ? " (waiting for a free slot: the account's concurrency limit)"
      : typeof task.failureCode === 'string'
        ? ` ${task.failureCode.replace(/[^A-Z0-9._-]/gi, '').slice(0, 80)}`
        : '';
  return `poll ${poll} · ${secondsText(elapsedMs)} · ${task.status}${progress}${note}`;
}

/** `25 credits ($0.25)`: 1 credit = $0.01 (contract §2). */
export function creditsText(credits: number): string {
  return `${groupDigits(credits)} credits ($${(credits / 100).toFixed(2)})`;
}

/** What the generation cost: Runway's final `cost` when it reports one, else the estimate from the create. */
export function finalCreditsLine(task: RunwayTask, estimated: number | undefined): string {
  const cost = task.cost?.credits;
  if (cost !== undefined) return `credits:  ${creditsText(cost)} charged${estimated === undefined ? '' : ` (estimated ${groupDigits(estimated)})`}`;
  const known = estimated ?? task.estimatedCost?.credits;
  return known === undefined ? 'credits:  not reported by Runway' : `credits:  ${creditsText(known)} estimated (Runway reported no final cost)`;
}
