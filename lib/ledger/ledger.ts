import { z } from 'zod';
import { PermanentError } from '../errors.js';

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
    duration: z.number().optional(),
    ratio: z.string().optional(),
  }),
  uploaded: z.object({ storage_path: z.string(), bytes: z.number().int().nonnegative(), at: z.string() }),
  /** Claimed right before the report is sent; holds the report so an unconfirmed one can be re-sent. */
  reported: z.object({
    status: z.enum(['completed', 'failed']),
    at: z.string(),
    video_storage_path: z.string().optional(),
    error_message: z.string().optional(),
    veo_operation_id: z.string().optional(),
  }),
  abandoned: z.object({
    reason: z.string(),
    at: z.string(),
    /** Set when the attempt was given back after a transient failure: how many in a row. */
    transient_failures: z.number().int().nonnegative().optional(),
  }),
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

/**
 * Where facts live, in every store: `items/<safeSegment(itemId)>/<attempt>/<fact>.json`.
 * An empty item id or a non-positive attempt would alias another item's facts, so both
 * are refused.
 */
export function itemPrefix(itemId: string): string {
  if (itemId === '') throw new PermanentError('ledger', 'item id must not be empty');
  return `items/${safeSegment(itemId)}/`;
}

export function factPath(key: JobKey, fact: FactName): string {
  if (!Number.isSafeInteger(key.attempt) || key.attempt < 1) {
    throw new PermanentError('ledger', `attempt must be a positive integer, got ${key.attempt}`);
  }
  return `${itemPrefix(key.itemId)}${key.attempt}/${fact}.json`;
}

/** The attempt a path segment names (`10` → 10); anything else (`01`, temp files) → undefined. */
export function parseAttempt(segment: string): number | undefined {
  if (!/^[1-9][0-9]*$/.test(segment)) return undefined;
  const attempt = Number(segment);
  return Number.isSafeInteger(attempt) ? attempt : undefined;
}

/** Reads every fact of one attempt (in parallel) through `readRaw`; corrupt facts count as absent. */
export async function readRecord(
  key: JobKey,
  readRaw: (fact: FactName) => Promise<unknown>,
): Promise<JobRecord> {
  const values = await Promise.all(
    FACT_NAMES.map(async (fact) => [fact, parseFact(fact, await readRaw(fact))] as const),
  );
  const record: { -readonly [N in FactName]?: Fact<N> } = {};
  for (const [fact, value] of values) {
    if (value !== undefined) Object.assign(record, { [fact]: value });
  }
  return { itemId: key.itemId, attempt: key.attempt, ...record };
}
