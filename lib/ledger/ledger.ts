import { z } from 'zod';

/**
 * The job ledger: the few facts per lease attempt of an item that must survive crashes
 * and duplicate deliveries (design §4). Every fact is written once, create-if-absent,
 * so of two racing writers exactly one wins.
 */

export const factSchemas = {
  /** Claimed right before the Runway create: the winner alone may create the task. */
  submitting: z.object({ at: z.string() }),
  task: z.object({
    runway_task_id: z.string(),
    model: z.string(),
    submitted_at: z.string(),
  }),
  uploaded: z.object({ storage_path: z.string(), bytes: z.number().int().nonnegative(), at: z.string() }),
  reported: z.object({ status: z.enum(['completed', 'failed']), at: z.string() }),
  abandoned: z.object({ reason: z.string(), at: z.string() }),
} as const;

export type FactName = keyof typeof factSchemas;
export type Fact<N extends FactName> = z.infer<(typeof factSchemas)[N]>;
export const FACT_NAMES = Object.keys(factSchemas) as FactName[];

/** What the ledger knows of one lease attempt of one item. */
export type JobRecord = { readonly itemId: string; readonly attempt: number } & {
  readonly [N in FactName]?: Fact<N>;
};

export interface JobKey {
  readonly itemId: string;
  /** 1 for the first lease attempt; an admin retry after a report starts the next. */
  readonly attempt: number;
}

export interface Ledger {
  /** The newest attempt recorded for the item, or undefined when there is none. */
  latest(itemId: string): Promise<JobRecord | undefined>;
  /** All facts of one attempt, read fresh (never from a cache). */
  read(key: JobKey): Promise<JobRecord>;
  /**
   * Writes a fact if it is absent. Resolves true when this call wrote it, false when
   * it was already there (another delivery won); the existing value is left alone.
   */
  claim<N extends FactName>(key: JobKey, fact: N, value: Fact<N>): Promise<boolean>;
  /** A quick check that the store is reachable and writable (for `?check=1`). */
  check(): Promise<void>;
}

/** Item ids come from the app; keep them safe as path segments. */
export function safeSegment(value: string): string {
  return encodeURIComponent(value).replace(/\./g, '%2E');
}

/** Parses one stored fact; a corrupt file is treated as absent for reads, never overwritten. */
export function parseFact<N extends FactName>(fact: N, raw: unknown): Fact<N> | undefined {
  const parsed = factSchemas[fact].safeParse(raw);
  return parsed.success ? (parsed.data as Fact<N>) : undefined;
}
