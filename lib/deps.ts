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
}

/** Timeouts for single outside calls, all well inside a function's budget. */
export const TIMEOUTS_MS = {
  app: 15_000,
  runway: 30_000,
  photo: 30_000,
  upload: 240_000,
} as const;
