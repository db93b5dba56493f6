import { UsageError } from './errors.js';

/**
 * How often a QStash schedule calls cron-poll. Only intervals that divide an hour or a day
 * evenly: `*\/7` would fire at :56 and again at :00, four minutes apart.
 */

const MINUTES_PER_DAY = 24 * 60;
export const EVERY_MINUTES_CHOICES = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440] as const;

export interface Cadence {
  readonly everyMinutes: number;
  /** Five-field cron, UTC. */
  readonly cron: string;
  readonly messagesPerDay: number;
  /** "every 10 minutes", "every 2 hours", "once a day". */
  readonly label: string;
}

export function cadenceOf(everyMinutes: number): Cadence {
  const hours = everyMinutes / 60;
  let cron: string;
  let label: string;
  if (everyMinutes < 60) {
    cron = everyMinutes === 1 ? '* * * * *' : `*/${everyMinutes} * * * *`;
    label = everyMinutes === 1 ? 'every minute' : `every ${everyMinutes} minutes`;
  } else if (everyMinutes < MINUTES_PER_DAY) {
    cron = hours === 1 ? '0 * * * *' : `0 */${hours} * * *`;
    label = hours === 1 ? 'every hour' : `every ${hours} hours`;
  } else {
    cron = '0 0 * * *';
    label = 'once a day (00:00 UTC)';
  }
  return { everyMinutes, cron, messagesPerDay: MINUTES_PER_DAY / everyMinutes, label };
}

/** Reads `--every <minutes>`; anything outside the choices is a usage error naming them. */
export function parseEvery(text: string): Cadence {
  const minutes = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!(EVERY_MINUTES_CHOICES as readonly number[]).includes(minutes)) {
    throw new UsageError(`--every takes minutes that divide an hour or a day evenly: ${EVERY_MINUTES_CHOICES.join(', ')}; got ${JSON.stringify(text)}`);
  }
  return cadenceOf(minutes);
}
