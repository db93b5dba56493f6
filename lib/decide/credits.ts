import { RUNWAY_MODELS, type RunwayModel } from '../config.js';
import { estimateCredits } from './models.js';

/**
 * What a video cost, in Runway credits (contract §2: 1 credit = $0.01). Runway names a price
 * twice: `estimatedCost` when the task is created and `cost` on the task once it has ended.
 * When it named neither, the model table's credits per second × duration stand in.
 */

export const USD_PER_CREDIT = 0.01;

/** `runway`: every figure counted came from Runway; `estimate`: at least one is the model table's. */
export const CREDITS_SOURCES = ['runway', 'estimate'] as const;
export type CreditsSource = (typeof CREDITS_SOURCES)[number];

export interface Credits {
  readonly credits: number;
  readonly source: CreditsSource;
}

/** What the ledger keeps of one generation that bears on its price (the ledger's facts fit as they are). */
export interface GenerationPriceFacts {
  readonly task?: {
    readonly model: string;
    readonly duration: number;
    /** Runway's `estimatedCost.credits` at create. */
    readonly estimated_credits?: number | undefined;
  };
  /** A generation 2 and up keeps what Runway last said of the one it replaced. */
  readonly submitting?: { readonly replaces?: { readonly credits?: number | undefined } | undefined };
}

export interface AttemptCredits {
  /** All generations together; undefined when none has a price (no task was ever created). */
  readonly total: Credits | undefined;
  /** One entry per generation, in order. */
  readonly generations: readonly (Credits | undefined)[];
}

const isRunwayModel = (model: string): model is RunwayModel => (RUNWAY_MODELS as readonly string[]).includes(model);

/** The model table's price, when the ledger names a model the table knows. */
export function tableCredits(model: string, durationSeconds: number, audio: boolean): number | undefined {
  return isRunwayModel(model) ? estimateCredits(model, durationSeconds, audio) : undefined;
}

/**
 * The price of one generation: Runway's figure at the end, else its estimate at create, else
 * the model table's. Undefined when the generation has no task.
 */
export function generationCredits(facts: GenerationPriceFacts, finalCredits: number | undefined, audio: boolean): Credits | undefined {
  const runway = finalCredits ?? facts.task?.estimated_credits;
  if (runway !== undefined) return { credits: runway, source: 'runway' };
  if (facts.task === undefined) return undefined;
  const table = tableCredits(facts.task.model, facts.task.duration, audio);
  return table === undefined ? undefined : { credits: table, source: 'estimate' };
}

/** Sums prices; the sum is Runway's only when every part is. */
export function totalCredits(parts: readonly (Credits | undefined)[]): Credits | undefined {
  const known = parts.filter((part): part is Credits => part !== undefined);
  if (known.length === 0) return undefined;
  return {
    credits: roundCredits(known.reduce((sum, part) => sum + part.credits, 0)),
    source: known.every((part) => part.source === 'runway') ? 'runway' : 'estimate',
  };
}

/**
 * The price of one lease attempt, all its generations together. `generations` are the facts of
 * generation 1, 2, ... in order; a replaced generation's final figure is what the next one kept
 * of it, the last one's is `lastFinalCredits` (Runway's `cost` when its task ended).
 */
export function attemptCredits(
  generations: readonly GenerationPriceFacts[],
  lastFinalCredits: number | undefined,
  audio: boolean,
): AttemptCredits {
  const each = generations.map((facts, index) => {
    const next = generations[index + 1];
    const finalCredits = next === undefined ? lastFinalCredits : next.submitting?.replaces?.credits;
    return generationCredits(facts, finalCredits, audio);
  });
  return { total: totalCredits(each), generations: each };
}

/** Dollars for a number of credits, to the cent. */
export function usdOf(credits: number): number {
  return Math.round(credits * USD_PER_CREDIT * 100) / 100;
}

/** Credits are whole for every model today; a fractional figure from Runway is kept to 1/1000. */
function roundCredits(credits: number): number {
  return Math.round(credits * 1000) / 1000;
}
