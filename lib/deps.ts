import type { AppApi } from './clients/app-api.js';
import type { Queue } from './clients/queue.js';
import type { Runway } from './clients/runway.js';
import type { Config } from './config.js';
import type { Ledger } from './ledger/ledger.js';
import type { Logger } from './log.js';

/** Everything a step needs, built once per process from the config (see runtime.ts). */
export interface Deps {
  readonly config: Config;
  readonly log: Logger;
  readonly app: AppApi;
  readonly runway: Runway;
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

/**
 * How long a report claim may stay unconfirmed before another delivery may re-send it: longer
 * than the claimer can still be sending (its in-process attempts, each bounded by the app timeout).
 */
export function reportSettleMs(timeouts: Timeouts): number {
  return 4 * timeouts.appMs + 5_000;
}
