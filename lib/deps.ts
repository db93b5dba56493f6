import type { AppApi } from './clients/app-api.js';
import type { Queue } from './clients/queue.js';
import type { Runway } from './clients/runway.js';
import type { RunwayLimits } from './clients/runway-limits.js';
import type { Config } from './config.js';
import type { Ledger } from './ledger/ledger.js';
import type { Logger } from './log.js';
import { IDEMPOTENT_RETRY } from './retry.js';

/** Everything a step needs, built once per process from the config (see runtime.ts). */
export interface Deps {
  readonly config: Config;
  readonly log: Logger;
  readonly app: AppApi;
  readonly runway: Runway;
  /** Runway's per-model limits, cached about a minute. */
  readonly runwayLimits: RunwayLimits;
  /** Lease only what Runway can start now (design §2); off only to measure what it saves. */
  readonly backpressure: boolean;
  readonly queue: Queue;
  readonly ledger: Ledger;
  readonly now: () => number;
  readonly timeouts: Timeouts;
}

/** Bounds on single outside calls, all well inside a function's budget. */
export interface Timeouts {
  readonly appMs: number;
  readonly runwayMs: number;
  readonly photoMs: number;
  readonly uploadMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { appMs: 15_000, runwayMs: 30_000, photoMs: 30_000, uploadMs: 240_000 };

/** In-process sends of one claimed report, each checked by a heartbeat before the next. */
export const REPORT_SENDS = 3;

/**
 * How long a report claim may stay unconfirmed before another delivery may re-send it: longer
 * than the claimer can still be sending. Each of its sends is one report call, then a heartbeat
 * of up to `retries + 1` tries with backoff, every call bounded by the app timeout.
 */
export function reportSettleMs(timeouts: Timeouts): number {
  const callsPerSend = 1 + IDEMPOTENT_RETRY.retries + 1;
  const backoffPerSendMs = IDEMPOTENT_RETRY.retries * IDEMPOTENT_RETRY.maxDelayMs;
  return REPORT_SENDS * (callsPerSend * timeouts.appMs + backoffPerSendMs) + 5_000;
}
