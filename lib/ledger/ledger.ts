import { z } from 'zod';
import { CREDITS_SOURCES } from '../decide/credits.js';
import { PermanentError } from '../errors.js';

/**
 * The job ledger: the few facts per lease attempt of an item that must survive crashes
 * and duplicate deliveries (design §4). Every fact is written once, create-if-absent,
 * so of two racing writers exactly one wins.
 */

const photoFactsSchema = z.object({
  type: z.string(),
  width: z.number().int().nonnegative(),
  height: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  orientation: z.number().int().optional(),
});

/** A Runway generation that failed transiently and was replaced by a new one. */
const failedGenerationSchema = z.object({
  runway_task_id: z.string(),
  failure_code: z.string().optional(),
  credits: z.number().optional(),
});
export type FailedGeneration = z.infer<typeof failedGenerationSchema>;

const factSchemas = {
  /**
   * Claimed right before the Runway create: the winner alone may create the task. A new
   * generation's claim also keeps the failed generation it replaces.
   */
  submitting: z.object({ at: z.string(), replaces: failedGenerationSchema.optional() }),
  task: z.object({
    runway_task_id: z.string(),
    model: z.string(),
    submitted_at: z.string(),
    duration: z.number().int().positive(),
    ratio: z.string().min(1),
    /** Runway's `estimatedCost.credits` at create. */
    estimated_credits: z.number().optional(),
    /** The photo as the app stored it and as Runway received it. */
    photo: z.object({ original: photoFactsSchema, sent: photoFactsSchema }).optional(),
  }),
  uploaded: z.object({ storage_path: z.string(), bytes: z.number().int().nonnegative(), at: z.string() }),
  /** Claimed right before the report is sent; holds the report so an unconfirmed one can be re-sent. */
  reported: z.object({
    status: z.enum(['completed', 'failed']),
    at: z.string(),
    video_storage_path: z.string().optional(),
    error_message: z.string().optional(),
    veo_operation_id: z.string().optional(),
    /**
     * Size of the video, on a completed report claimed right after its upload: that claim is
     * also the upload's record (`uploaded` facts are only in ledgers written before).
     */
    video_bytes: z.number().int().nonnegative().optional(),
    /** What the attempt cost, all its generations together (absent in ledgers written before). */
    credits: z.number().nonnegative().optional(),
    credits_source: z.enum(CREDITS_SOURCES).optional(),
  }),
  /**
   * Runway's figure for the attempt's last generation, claimed when a poll sees its task
   * succeed, only when the other facts cannot tell it: a generation 2 and up (the report has to
   * know how many there were), or a `cost` other than the `estimated_credits` at create. So the
   * usual video costs no write for it. A failed task's figure goes straight into `reported`.
   */
  cost: z.object({
    runway_task_id: z.string(),
    generation: z.number().int().positive(),
    /** Runway's `cost.credits`; absent when the task came back without one. */
    credits: z.number().nonnegative().optional(),
    at: z.string(),
  }),
  abandoned: z.object({
    reason: z.string(),
    at: z.string(),
    /** Set when the attempt was given back after a transient failure: how many in a row. */
    transient_failures: z.number().int().nonnegative().optional(),
    /** Of those, how many in a row were the app's "Failed to generate download URL". */
    photo_not_found: z.number().int().nonnegative().optional(),
  }),
} as const;

export type FactName = keyof typeof factSchemas;
export type Fact<N extends FactName> = z.infer<(typeof factSchemas)[N]>;
const FACT_NAMES = Object.keys(factSchemas) as FactName[];

/**
 * The facts that close an attempt: a step that finds either does nothing more (but make sure a
 * claimed report lands). Steps that only need to know whether to go on read just these.
 */
export const CLOSING_FACTS: readonly FactName[] = ['reported', 'abandoned'];

/** What the ledger knows of one lease attempt of one item (or of one generation of it). */
export type JobRecord = {
  readonly itemId: string;
  readonly attempt: number;
  /** Set on a generation's record (2 and up); the attempt's own record is generation 1. */
  readonly generation?: number;
  /** From `latest()` only: the newest generation (2 and up) the attempt has facts for. */
  readonly latestGeneration?: number;
} & {
  readonly [N in FactName]?: Fact<N>;
};

export interface JobKey {
  readonly itemId: string;
  /** 1 for the first lease attempt; an admin retry after a report starts the next. */
  readonly attempt: number;
  /**
   * A new Runway generation within the attempt (2 and up), after a transient failure.
   * Absent or 1: the attempt's first generation, whose facts are the attempt's own.
   */
  readonly generation?: number;
}

/** A job holding one of a model's Runway concurrency slots, from the ledger's slot markers. */
export interface SlotMarker {
  readonly model: string;
  /** Epoch ms the marker was written (the generation's submission). */
  readonly atMs: number;
}

/** What the slot markers say: jobs in flight per model, and when each model was last seen THROTTLED. */
export interface SlotsView {
  readonly inFlight: readonly SlotMarker[];
  readonly throttledAtMs: Readonly<Record<string, number>>;
}

export interface Ledger {
  /** The newest attempt recorded for the item, or undefined when there is none. */
  latest(itemId: string): Promise<JobRecord | undefined>;
  /**
   * Facts of one attempt, read fresh (never from a cache): all of them, or only `facts`
   * (each fact is one read; with Vercel Blob, one metered operation).
   */
  read(key: JobKey, facts?: readonly FactName[]): Promise<JobRecord>;
  /**
   * Writes a fact if it is absent. Resolves true when this call wrote it, false when
   * it was already there (another delivery won); the existing value is left alone.
   */
  claim<N extends FactName>(key: JobKey, fact: N, value: Fact<N>): Promise<boolean>;
  /** A quick check that the store is reachable and writable (for `?check=1`). */
  check(): Promise<void>;
  /**
   * Marks the job as holding one of the model's Runway concurrency slots (overwriting an
   * older mark of the same job). Markers are the one place that knows what is in flight.
   */
  markSlot(key: JobKey, model: string): Promise<void>;
  /** Removes the job's marker (absent is fine). */
  releaseSlot(key: JobKey, model: string): Promise<void>;
  /** Notes that a task of ours was seen THROTTLED for the model just now. */
  markThrottled(model: string): Promise<void>;
  clearThrottled(model: string): Promise<void>;
  /**
   * Every slot marker and throttle note written since `sinceMs` — one listing, whatever the
   * number of items. Older markers (their job died without clearing them) are dropped.
   */
  slots(sinceMs: number): Promise<SlotsView>;
}

/**
 * Where the attempt's video is stored, when the ledger knows one is: its `uploaded` fact, or
 * the claim of a completed report (claimed right after the upload, before it is sent).
 */
export function storedVideoOf(record: JobRecord): Fact<'uploaded'> | undefined {
  if (record.uploaded) return record.uploaded;
  const report = record.reported;
  if (report?.status !== 'completed' || report.video_storage_path === undefined) return undefined;
  return { storage_path: report.video_storage_path, bytes: report.video_bytes ?? 0, at: report.at };
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
  const generation = key.generation ?? 1;
  if (!Number.isSafeInteger(generation) || generation < 1) {
    throw new PermanentError('ledger', `generation must be a positive integer, got ${generation}`);
  }
  const folder = generation === 1 ? '' : `${GENERATION_PREFIX}${generation}/`;
  return `${itemPrefix(key.itemId)}${key.attempt}/${folder}${fact}.json`;
}

/** Generations 2 and up of an attempt live in `<attempt>/gen-<n>/`. */
const GENERATION_PREFIX = 'gen-';

/** The generation a path segment names (`gen-2` → 2); anything else → undefined. */
export function parseGeneration(segment: string): number | undefined {
  if (!segment.startsWith(GENERATION_PREFIX)) return undefined;
  return parseAttempt(segment.slice(GENERATION_PREFIX.length));
}

/** Slot markers: `slots/<model>/<item>~<attempt>.json`; throttle notes: `slots/<model>/throttled.json`. */
export const SLOTS_PREFIX = 'slots/';
const THROTTLED_NAME = 'throttled.json';

export function slotPath(key: JobKey, model: string): string {
  return `${SLOTS_PREFIX}${safeSegment(model)}/${safeSegment(key.itemId)}~${key.attempt}.json`;
}

export function throttledPath(model: string): string {
  return `${SLOTS_PREFIX}${safeSegment(model)}/${THROTTLED_NAME}`;
}

/**
 * Reads one listing of the slots folder (pathname and write time of each entry) into a
 * view; entries older than `sinceMs` are returned apart, for the store to delete.
 */
export function slotsViewOf(
  entries: readonly { readonly pathname: string; readonly atMs: number }[],
  sinceMs: number,
): { view: SlotsView; stale: string[] } {
  const inFlight: SlotMarker[] = [];
  const throttledAtMs: Record<string, number> = {};
  const stale: string[] = [];
  for (const entry of entries) {
    const [folder, name] = entry.pathname.slice(SLOTS_PREFIX.length).split('/');
    if (folder === undefined || name === undefined || !entry.pathname.startsWith(SLOTS_PREFIX)) continue;
    const model = decodeURIComponent(folder);
    if (name === THROTTLED_NAME) {
      throttledAtMs[model] = Math.max(throttledAtMs[model] ?? 0, entry.atMs);
    } else if (entry.atMs < sinceMs) {
      stale.push(entry.pathname);
    } else {
      inFlight.push({ model, atMs: entry.atMs });
    }
  }
  return { view: { inFlight, throttledAtMs }, stale };
}

/** The attempt a path segment names (`10` → 10); anything else (`01`, temp files) → undefined. */
export function parseAttempt(segment: string): number | undefined {
  if (!/^[1-9][0-9]*$/.test(segment)) return undefined;
  const attempt = Number(segment);
  return Number.isSafeInteger(attempt) ? attempt : undefined;
}

/** Reads the facts of one attempt (all, or `facts`) in parallel through `readRaw`; corrupt facts count as absent. */
export async function readRecord(
  key: JobKey,
  readRaw: (fact: FactName) => Promise<unknown>,
  facts: readonly FactName[] = FACT_NAMES,
): Promise<JobRecord> {
  const values = await Promise.all(
    facts.map(async (fact) => [fact, parseFact(fact, await readRaw(fact))] as const),
  );
  const record: { -readonly [N in FactName]?: Fact<N> } = {};
  for (const [fact, value] of values) {
    if (value !== undefined) Object.assign(record, { [fact]: value });
  }
  const generation = key.generation !== undefined && key.generation > 1 ? { generation: key.generation } : {};
  return { itemId: key.itemId, attempt: key.attempt, ...generation, ...record };
}
