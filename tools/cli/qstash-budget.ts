import type { Cadence } from './cadence.js';

/** contract.md §3: QStash's free tier, every delivery counted (retries too). */
export const QSTASH_FREE_MESSAGES_PER_DAY = 1_000;

/**
 * QStash messages one video costs end to end (the polls while Runway works, the upload
 * step, and its share of drain messages), as measured by `npm run bench`: its
 * `flow_50_qstash_messages_per_item` line (50 items, sandbox generations of 1 s; runs
 * vary between about 2.5 and 2.9). Update it from there when the flow changes.
 */
export const QSTASH_MESSAGES_PER_VIDEO = 2.62;
export const QSTASH_MESSAGES_PER_VIDEO_SOURCE = 'npm run bench, flow_50_qstash_messages_per_item';

export interface DailyBudget {
  readonly quota: number;
  readonly scheduleMessages: number;
  readonly messagesPerVideo: number;
  /** Whole videos a day that fit in what the schedule leaves of the quota (0 when it leaves nothing). */
  readonly videos: number;
}

export function dailyBudget(cadence: Cadence, quota = QSTASH_FREE_MESSAGES_PER_DAY): DailyBudget {
  const left = Math.max(0, quota - cadence.messagesPerDay);
  return {
    quota,
    scheduleMessages: cadence.messagesPerDay,
    messagesPerVideo: QSTASH_MESSAGES_PER_VIDEO,
    videos: Math.floor(left / QSTASH_MESSAGES_PER_VIDEO),
  };
}
