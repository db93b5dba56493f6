import type { Cadence } from './cadence.js';

/** contract.md §3: QStash's free tier, every delivery counted (retries too). */
export const QSTASH_FREE_MESSAGES_PER_DAY = 1_000;

/**
 * QStash messages one video costs end to end, at Runway's real generation times: the polls
 * while Runway works (`npm run bench`'s `polls_per_video_mean`, 4.73 over simulated 20-180 s
 * generations), the upload step (1) and its share of drain continuations (1 per
 * `MAX_TASKS_PER_RUN` = 10 items). The drain bench's `qstash_deliveries_per_video` (about 2.1)
 * is lower because its 3 s generations are done by the first poll. Update it from there when
 * the schedule or the flow changes.
 */
export const QSTASH_MESSAGES_PER_VIDEO = 5.83;
export const QSTASH_MESSAGES_PER_VIDEO_SOURCE = 'npm run bench: 4.73 polls (polls_per_video_mean) + 1 upload + 0.1 drain';

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
