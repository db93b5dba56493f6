/**
 * The five-field cron expressions QStash schedules take (minute hour day-of-month month
 * day-of-week, UTC): numbers, `*`, ranges `a-b`, steps `*\/n` and `a-b/n`, and lists of
 * those. Month and weekday names, `?`, `L`, `W`, `#` and `CRON_TZ=` are not understood
 * here and are refused, so a schedule is never silently read differently.
 */

interface FieldRange {
  readonly name: string;
  readonly min: number;
  readonly max: number;
}

const FIELDS: readonly FieldRange[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  // 7 is Sunday too, as in most crons.
  { name: 'day of week', min: 0, max: 7 },
];

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
/** Long enough to meet a February 29th. */
const SEARCH_HORIZON_MS = 5 * 366 * DAY_MS;

export interface Cron {
  readonly expression: string;
  /** The first matching minute strictly after `afterMs` (epoch ms, UTC), or undefined within five years. */
  next(afterMs: number): number | undefined;
}

export type CronParseResult = { readonly ok: true; readonly cron: Cron } | { readonly ok: false; readonly error: string };

function parseField(text: string, field: FieldRange): Set<number> | string {
  const values = new Set<number>();
  for (const part of text.split(',')) {
    const match = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!match) return `${field.name} "${part}" is not a number, range, * or step`;
    const [, whole, first, last, stepText] = match;
    const from = whole === '*' ? field.min : Number(first);
    const to = whole === '*' ? field.max : last !== undefined ? Number(last) : stepText !== undefined ? field.max : from;
    const step = stepText === undefined ? 1 : Number(stepText);
    if (from < field.min || to > field.max || from > to) return `${field.name} "${part}" is outside ${field.min}-${field.max}`;
    if (step < 1) return `${field.name} "${part}" has a step below 1`;
    for (let value = from; value <= to; value += step) values.add(value);
  }
  return values;
}

export function parseCron(expression: string): CronParseResult {
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== FIELDS.length) return { ok: false, error: `cron "${expression}" needs 5 fields, has ${parts.length}` };
  const sets: Set<number>[] = [];
  for (const [index, field] of FIELDS.entries()) {
    const parsed = parseField(parts[index] ?? '', field);
    if (typeof parsed === 'string') return { ok: false, error: `cron "${expression}": ${parsed}` };
    sets.push(parsed);
  }
  const [minutes, hours, days, months, weekdays] = sets as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>];
  if (weekdays.has(7)) weekdays.add(0);
  // Classic cron: when both day fields are restricted (do not start with *), a day matching either one runs.
  const anyDay = parts[2]?.startsWith('*') === true;
  const anyWeekday = parts[4]?.startsWith('*') === true;
  const dayMatches = (date: Date): boolean => {
    const byDay = days.has(date.getUTCDate());
    const byWeekday = weekdays.has(date.getUTCDay());
    if (anyDay || anyWeekday) return byDay && byWeekday;
    return byDay || byWeekday;
  };

  const next = (afterMs: number): number | undefined => {
    let at = Math.floor(afterMs / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
    const end = afterMs + SEARCH_HORIZON_MS;
    while (at <= end) {
      const date = new Date(at);
      if (!months.has(date.getUTCMonth() + 1) || !dayMatches(date)) {
        at = Math.floor(at / DAY_MS) * DAY_MS + DAY_MS;
      } else if (!hours.has(date.getUTCHours())) {
        at = Math.floor(at / HOUR_MS) * HOUR_MS + HOUR_MS;
      } else if (!minutes.has(date.getUTCMinutes())) {
        at += MINUTE_MS;
      } else {
        return at;
      }
    }
    return undefined;
  };
  return { ok: true, cron: { expression: parts.join(' '), next } };
}
