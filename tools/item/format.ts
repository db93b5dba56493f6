import type { AttemptView, GenerationView, ItemView, RunwayView } from '../../lib/decide/item-view.js';

/** The item lookup as a person reads it: one block per attempt, one line per fact. */

const LABEL_WIDTH = 12;

function line(label: string, value: string, indent = '  '): string {
  return `${indent}${label.padEnd(LABEL_WIDTH)} ${value}`;
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

export function describePrice(credits: number, usd: number | undefined, source: string | undefined): string {
  const dollars = usd === undefined ? '' : `$${usd.toFixed(2)}`;
  const from = source === 'estimate' ? 'estimated from the model table' : source === 'runway' ? 'from Runway' : '';
  const detail = [dollars, from].filter((part) => part !== '').join(', ');
  return `${plural(credits, 'credit')}${detail ? ` (${detail})` : ''}`;
}

function describeRunway(runway: RunwayView): string {
  if (runway.error !== undefined && runway.status === undefined) return runway.error;
  const parts = [runway.status ?? 'unknown'];
  if (runway.progress !== undefined) parts.push(`${Math.round(runway.progress * 100)} %`);
  if (runway.failure_code !== undefined) parts.push(runway.failure_code);
  if (runway.cost_credits !== undefined) parts.push(`cost ${plural(runway.cost_credits, 'credit')}`);
  if (runway.error !== undefined) parts.push(runway.error);
  return parts.join(' · ');
}

function describeBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${(bytes / 1024).toFixed(1)} KB`;
}

function generationLines(generation: GenerationView): string[] {
  const lines = [`  generation ${generation.generation}${generation.runway_task_id ? ` · task ${generation.runway_task_id}` : ' · no task'}`];
  const inner = '    ';
  if (generation.model !== undefined) {
    lines.push(line('model', `${generation.model}, ${generation.duration ?? '?'} s, ${generation.ratio ?? '?'}`, inner));
  }
  if (generation.submitting_at !== undefined) lines.push(line('claimed', generation.submitting_at, inner));
  if (generation.submitted_at !== undefined) lines.push(line('submitted', generation.submitted_at, inner));
  if (generation.photo !== undefined) {
    const { original, sent } = generation.photo;
    lines.push(line('photo', `${original.type} ${original.width}x${original.height} → sent ${sent.type} ${sent.width}x${sent.height}`, inner));
  }
  const credits = [
    generation.estimated_credits === undefined ? undefined : `estimated ${generation.estimated_credits} at create`,
    generation.final_credits === undefined ? undefined : `${generation.final_credits} at the end`,
  ].filter((part): part is string => part !== undefined);
  if (credits.length > 0) lines.push(line('credits', credits.join(', '), inner));
  if (generation.replaced !== undefined) {
    lines.push(line('replaced', `failed transiently${generation.replaced.failure_code ? ` (${generation.replaced.failure_code})` : ''}; a new generation followed`, inner));
  }
  if (generation.runway !== undefined) lines.push(line('runway now', describeRunway(generation.runway), inner));
  return lines;
}

function attemptLines(attempt: AttemptView): string[] {
  const lines = [`attempt ${attempt.attempt} · ${attempt.state}`];
  if (attempt.credits !== undefined) lines.push(line('cost', describePrice(attempt.credits, attempt.usd, attempt.credits_source)));
  for (const generation of attempt.generations) lines.push(...generationLines(generation));
  if (attempt.uploaded !== undefined) {
    lines.push(line('uploaded', `${attempt.uploaded.at} · ${attempt.uploaded.storage_path} · ${describeBytes(attempt.uploaded.bytes)}`));
  }
  if (attempt.report !== undefined) {
    const { report } = attempt;
    const what = report.status === 'completed' ? (report.video_storage_path ?? '') : (report.error_message ?? '');
    lines.push(line('report', `${report.status} at ${report.at}${what ? ` · ${what}` : ''}`));
    lines.push(line('outcome', report.outcome));
  }
  if (attempt.abandoned !== undefined) lines.push(line('abandoned', `${attempt.abandoned.at} · ${attempt.abandoned.reason}`));
  return lines;
}

export function formatItem(item: ItemView): string {
  const blocks = [`item ${item.item_id} · ${plural(item.attempts.length, 'attempt')} in the ledger`, ...item.attempts.map((attempt) => attemptLines(attempt).join('\n'))];
  return `${blocks.join('\n\n')}\n`;
}
