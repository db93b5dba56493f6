import { z } from 'zod';
import { storedVideoOf, type JobRecord } from '../ledger/ledger.js';
import { attemptCredits, CREDITS_SOURCES, usdOf, type Credits } from './credits.js';

/**
 * What the ledger knows of one item, shaped for a person: one entry per lease attempt, each
 * with its Runway generations, the report sent and what the attempt cost. Pure: the caller
 * reads the ledger and asks Runway, this only arranges the answers.
 */

/** Item ids come from the app (UUIDs); anything else is refused before the ledger is asked. */
export const ITEM_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function isItemId(value: string): boolean {
  return ITEM_ID_PATTERN.test(value);
}

export function unknownItemMessage(itemId: string): string {
  return `no record of item ${itemId} in the ledger: it was never leased by this worker, or LEDGER_DIR / the Blob store is another one`;
}

/** What Runway says of a task right now. */
export type LiveTask =
  | {
      readonly kind: 'task';
      readonly status: string;
      readonly progress?: number | undefined;
      readonly failureCode?: string | undefined;
      /** Runway's `cost.credits`, once it names one. */
      readonly cost?: number | undefined;
    }
  /** 404: cancelled or deleted. */
  | { readonly kind: 'gone' }
  | { readonly kind: 'error'; readonly message: string };

/** The send rounds of an attempt's report, from their ledger entries (absent: one round, nothing recorded). */
export interface ReportRounds {
  /** The newest round recorded (2 and up are re-sends). */
  readonly round: number;
  /** That round stopped without learning whether the report landed. */
  readonly unconfirmed: boolean;
}

export interface AttemptFacts {
  /** Generation 1 (the attempt's own record) first, then 2, 3, ... */
  readonly generations: readonly JobRecord[];
  readonly rounds?: ReportRounds | undefined;
}

const photoSchema = z.object({
  type: z.string(),
  width: z.number(),
  height: z.number(),
  bytes: z.number(),
  orientation: z.number().optional(),
});

/** Runway's live answer for a task; `error` when it could not be had. */
const runwayViewSchema = z.object({
  status: z.string().optional(),
  progress: z.number().optional(),
  failure_code: z.string().optional(),
  cost_credits: z.number().optional(),
  error: z.string().optional(),
});
export type RunwayView = z.infer<typeof runwayViewSchema>;

const generationViewSchema = z.object({
  generation: z.number(),
  runway_task_id: z.string().optional(),
  model: z.string().optional(),
  duration: z.number().optional(),
  ratio: z.string().optional(),
  /** When the create was claimed, and when Runway accepted it. */
  submitting_at: z.string().optional(),
  submitted_at: z.string().optional(),
  photo: z.object({ original: photoSchema, sent: photoSchema }).optional(),
  /** Runway's `estimatedCost.credits` at create. */
  estimated_credits: z.number().optional(),
  /** What Runway said the generation cost when it ended, when the ledger (or Runway now) knows. */
  final_credits: z.number().optional(),
  /** Set on a generation that failed transiently and was replaced by the next one. */
  replaced: z.object({ failure_code: z.string().optional() }).optional(),
  /** Runway's live answer; absent for a task the ledger already shows finished. */
  runway: runwayViewSchema.optional(),
});
export type GenerationView = z.infer<typeof generationViewSchema>;

export const ATTEMPT_STATES = ['reported', 'abandoned', 'uploaded', 'at-runway', 'submitting', 'no-task'] as const;
export type AttemptState = (typeof ATTEMPT_STATES)[number];

const reportViewSchema = z.object({
  status: z.enum(['completed', 'failed']),
  at: z.string(),
  error_message: z.string().optional(),
  video_storage_path: z.string().optional(),
  veo_operation_id: z.string().optional(),
  /** What became of the report: sent, sent again, not confirmed yet, or refused. */
  outcome: z.string(),
});
export type ReportView = z.infer<typeof reportViewSchema>;

const attemptViewSchema = z.object({
  attempt: z.number(),
  state: z.enum(ATTEMPT_STATES),
  generations: z.array(generationViewSchema),
  uploaded: z.object({ storage_path: z.string(), bytes: z.number(), at: z.string() }).optional(),
  report: reportViewSchema.optional(),
  abandoned: z.object({ reason: z.string(), at: z.string() }).optional(),
  /** All generations together: the figure the report logged, or what the ledger tells so far. */
  credits: z.number().optional(),
  credits_source: z.enum(CREDITS_SOURCES).optional(),
  usd: z.number().optional(),
});
export type AttemptView = z.infer<typeof attemptViewSchema>;

/** The lookup's answer, as `?item=` sends it and `npm run item` reads it back. */
export const itemViewSchema = z.object({ item_id: z.string(), attempts: z.array(attemptViewSchema) });
export type ItemView = z.infer<typeof itemViewSchema>;

/** The attempt's own record, whatever else it holds (generation 1). */
function ownRecord(facts: AttemptFacts): JobRecord {
  const [own] = facts.generations;
  if (own === undefined) throw new RangeError('an attempt has at least its own record');
  return own;
}

/** Whether the ledger already shows this generation's task finished (no need to ask Runway). */
function finishedInLedger(facts: AttemptFacts, index: number): boolean {
  const own = ownRecord(facts);
  if (own.reported || own.abandoned || own.uploaded) return true;
  if (index < facts.generations.length - 1) return true;
  return own.cost?.generation === index + 1;
}

/** The Runway tasks worth a live look: those the ledger does not show finished. */
export function tasksToAsk(attempts: readonly AttemptFacts[]): string[] {
  return attempts.flatMap((facts) =>
    facts.generations.flatMap((record, index) => {
      const id = record.task?.runway_task_id;
      return id !== undefined && !finishedInLedger(facts, index) ? [id] : [];
    }),
  );
}

function stateOf(facts: AttemptFacts): AttemptState {
  const own = ownRecord(facts);
  if (own.reported) return 'reported';
  if (own.abandoned) return 'abandoned';
  if (own.uploaded) return 'uploaded';
  const last = facts.generations.at(-1);
  if (last?.task) return 'at-runway';
  return last?.submitting ? 'submitting' : 'no-task';
}

function reportOutcome(own: JobRecord, rounds: ReportRounds | undefined): string {
  if (own.abandoned) return 'refused: the lease was lost';
  if (rounds?.unconfirmed) return `not confirmed (round ${rounds.round} got no answer; the next delivery sends it again)`;
  if (rounds !== undefined && rounds.round > 1) return `sent again (round ${rounds.round})`;
  return 'sent';
}

function reportView(own: JobRecord, rounds: ReportRounds | undefined): ReportView | undefined {
  const fact = own.reported;
  if (!fact) return undefined;
  return {
    status: fact.status,
    at: fact.at,
    ...(fact.error_message === undefined ? {} : { error_message: fact.error_message }),
    ...(fact.video_storage_path === undefined ? {} : { video_storage_path: fact.video_storage_path }),
    ...(fact.veo_operation_id === undefined ? {} : { veo_operation_id: fact.veo_operation_id }),
    outcome: reportOutcome(own, rounds),
  };
}

function runwayView(live: LiveTask): RunwayView {
  switch (live.kind) {
    case 'task':
      return {
        status: live.status,
        ...(live.progress === undefined ? {} : { progress: live.progress }),
        ...(live.failureCode === undefined ? {} : { failure_code: live.failureCode }),
        ...(live.cost === undefined ? {} : { cost_credits: live.cost }),
      };
    case 'gone':
      return { status: 'NOT_FOUND', error: 'runway: no such task (cancelled or deleted)' };
    case 'error':
      return { error: live.message };
  }
}

/** What Runway said the last generation cost: the `cost` fact, else its live answer. */
function lastFinalCredits(facts: AttemptFacts, live: ReadonlyMap<string, LiveTask>): number | undefined {
  const own = ownRecord(facts);
  const count = facts.generations.length;
  if (own.cost?.generation === count && own.cost.credits !== undefined) return own.cost.credits;
  const id = facts.generations.at(-1)?.task?.runway_task_id;
  const answer = id === undefined ? undefined : live.get(id);
  return answer?.kind === 'task' ? answer.cost : undefined;
}

/** One generation; `next` is the one that replaced it, if any. */
function generationView(
  record: JobRecord,
  index: number,
  next: JobRecord | undefined,
  live: ReadonlyMap<string, LiveTask>,
  lastFinal: number | undefined,
): GenerationView {
  const task = record.task;
  const replaced = next?.submitting?.replaces;
  const finalCredits = next === undefined ? lastFinal : replaced?.credits;
  const answer = task === undefined ? undefined : live.get(task.runway_task_id);
  return {
    generation: index + 1,
    ...(task === undefined
      ? {}
      : {
          runway_task_id: task.runway_task_id,
          model: task.model,
          duration: task.duration,
          ratio: task.ratio,
        }),
    ...(record.submitting === undefined ? {} : { submitting_at: record.submitting.at }),
    ...(task === undefined ? {} : { submitted_at: task.submitted_at }),
    ...(task?.photo === undefined ? {} : { photo: task.photo }),
    ...(task?.estimated_credits === undefined ? {} : { estimated_credits: task.estimated_credits }),
    ...(finalCredits === undefined ? {} : { final_credits: finalCredits }),
    ...(replaced === undefined ? {} : { replaced: replaced.failure_code === undefined ? {} : { failure_code: replaced.failure_code } }),
    ...(answer === undefined ? {} : { runway: runwayView(answer) }),
  };
}

/** The attempt's price: the figure its report logged, or what the ledger (and Runway now) tell. */
function attemptPrice(facts: AttemptFacts, lastFinal: number | undefined, audio: boolean): Credits | undefined {
  const reported = ownRecord(facts).reported;
  if (reported?.credits !== undefined) return { credits: reported.credits, source: reported.credits_source ?? 'runway' };
  return attemptCredits(facts.generations, lastFinal, audio).total;
}

const withUpload = (uploaded: AttemptView['uploaded']): Pick<AttemptView, 'uploaded'> => (uploaded === undefined ? {} : { uploaded });

export function attemptView(attempt: number, facts: AttemptFacts, live: ReadonlyMap<string, LiveTask>, audio: boolean): AttemptView {
  const own = ownRecord(facts);
  const lastFinal = lastFinalCredits(facts, live);
  const price = attemptPrice(facts, lastFinal, audio);
  const report = reportView(own, facts.rounds);
  return {
    attempt,
    state: stateOf(facts),
    generations: facts.generations.map((record, index) => generationView(record, index, facts.generations[index + 1], live, lastFinal)),
    ...withUpload(storedVideoOf(own)),
    ...(report === undefined ? {} : { report }),
    ...(own.abandoned === undefined ? {} : { abandoned: { reason: own.abandoned.reason, at: own.abandoned.at } }),
    ...(price === undefined ? {} : { credits: price.credits, credits_source: price.source, usd: usdOf(price.credits) }),
  };
}

/** The whole item: `attempts[i]` holds attempt i + 1. */
export function itemViewOf(itemId: string, attempts: readonly AttemptFacts[], live: ReadonlyMap<string, LiveTask>, audio: boolean): ItemView {
  return { item_id: itemId, attempts: attempts.map((facts, index) => attemptView(index + 1, facts, live, audio)) };
}
