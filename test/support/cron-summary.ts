import { z } from 'zod';

/**
 * The JSON cron-poll answers (`CronPollSummary`), as the tests read it. Files that look at
 * the capacity plan or at a submitted item's task extend it with what they read there.
 */

export const cronItemSchema = z.object({ item_id: z.string().nullable(), outcome: z.string(), detail: z.string() });

export const cronSummarySchema = z.object({
  leased: z.number(),
  submitted: z.number(),
  resumed: z.number(),
  released: z.number(),
  failed: z.number(),
  skipped: z.number(),
  errors: z.number(),
  stopped: z.string(),
  drain_scheduled: z.boolean(),
  duration_ms: z.number(),
  items: z.array(cronItemSchema),
});
