import { z } from 'zod';
import { RUNWAY_MODELS } from '../config.js';

/**
 * Bodies of the QStash messages between steps. All the state a step needs travels here;
 * the ledger keeps only what must survive crashes and duplicates.
 */

export const jobSchema = z.object({
  item_id: z.string().min(1),
  attempt: z.number().int().positive(),
  runway_task_id: z.string().min(1),
  model: z.enum(RUNWAY_MODELS),
  duration: z.number().int().positive(),
  ratio: z.string().min(1),
  /** Epoch ms of the Runway create. */
  submitted_at: z.number().int().nonnegative(),
  /** Epoch ms of the last successful heartbeat (or the lease). */
  last_heartbeat_at: z.number().int().nonnegative(),
  polls: z.number().int().nonnegative(),
  last_status: z.string().optional(),
  /** A poll has seen the task THROTTLED: it waited for a slot of Runway's concurrency limit. */
  throttled: z.boolean().optional(),
  /** Runway's `estimatedCost.credits` at create: with `model` and `duration`, what the report needs to price a video without a ledger read. */
  estimated_credits: z.number().nonnegative().optional(),
  /** 1 for the attempt's first Runway task; a new generation after a transient failure counts up. */
  generation: z.number().int().positive().default(1),
  /** What a new generation needs: the photo to prepare again and the prompt as sent. */
  source: z
    .object({ photo_storage_path: z.string().min(1), prompt_text: z.string().optional() })
    .optional(),
});
export type Job = z.infer<typeof jobSchema>;

export const pollMessageSchema = z.object({ job: jobSchema });
export type PollMessage = z.infer<typeof pollMessageSchema>;

export const uploadMessageSchema = z.object({
  job: jobSchema,
  /** Runway's signed output URL at the time of SUCCEEDED; fetched again when expired. */
  output_url: z.string().optional(),
  /** Runway's `cost.credits` on the task at SUCCEEDED, for the report (absent: the ledger says). */
  credits: z.number().nonnegative().optional(),
});
export type UploadMessage = z.infer<typeof uploadMessageSchema>;

/** The self-chained "keep draining" POST to cron-poll. */
export const drainMessageSchema = z.object({ reason: z.literal('drain'), limit: z.number().int().positive().optional() });
export type DrainMessage = z.infer<typeof drainMessageSchema>;

/** Delivery facts from QStash's headers. */
export interface Delivery {
  /** `Upstash-Retried`: 0 on the first delivery. */
  readonly retried: number;
  /** True when QStash will not deliver this message again after a failure. */
  readonly last: boolean;
}

/** Retries we ask QStash for on every message (contract §3 default). */
export const QSTASH_RETRIES = 3;
