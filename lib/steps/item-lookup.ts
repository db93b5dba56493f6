import type { Runway } from '../clients/runway.js';
import { MAX_REGENERATIONS } from '../config.js';
import { failureMessageOf } from '../decide/failure-message.js';
import {
  isItemId,
  itemViewOf,
  tasksToAsk,
  unknownItemMessage,
  type AttemptFacts,
  type ItemView,
  type LiveTask,
  type ReportRounds,
} from '../decide/item-view.js';
import type { Deps } from '../deps.js';
import type { JobKey, JobRecord, Ledger } from '../ledger/ledger.js';
import { reportRoundKey } from './report.js';

/**
 * `GET /api/cron-poll?item=<id>` and `npm run item`: what the ledger knows of one item, with
 * Runway's live word on every task the ledger does not show finished (one task GET each).
 * Reads only; nothing is claimed, published or reported.
 */

export interface LookupSources {
  readonly ledger: Ledger;
  /** Asked for the tasks still open; undefined when it cannot be (say why in `runwayUnavailable`). */
  readonly runway: Pick<Runway, 'getTask'> | undefined;
  readonly runwayUnavailable?: string;
  /** `RUNWAY_AUDIO`, for the model table's price when Runway named none. */
  readonly audio: boolean;
}

export type LookupResult =
  | { readonly kind: 'found'; readonly item: ItemView }
  | { readonly kind: 'unknown'; readonly detail: string }
  | { readonly kind: 'invalid'; readonly detail: string };

export function lookupSourcesOf(deps: Deps): LookupSources {
  return { ledger: deps.ledger, runway: deps.runway, audio: deps.config.runwayAudio };
}

/** The most generations an attempt can have: its first and the new ones after transient failures. */
const MAX_GENERATIONS = MAX_REGENERATIONS + 1;

/**
 * Generations 2 and up of an attempt. The newest attempt's count comes with `latest()`; an
 * older one's is found by reading on until a generation has no facts.
 */
async function laterGenerations(ledger: Ledger, key: JobKey, known: number | undefined): Promise<JobRecord[]> {
  if (known !== undefined) {
    return Promise.all(Array.from({ length: known - 1 }, (_, index) => ledger.read({ ...key, generation: index + 2 })));
  }
  const found: JobRecord[] = [];
  for (let generation = 2; generation <= MAX_GENERATIONS; generation++) {
    const record = await ledger.read({ ...key, generation });
    if (!record.submitting && !record.task) break;
    found.push(record);
  }
  return found;
}

/** The report's send rounds, when any was recorded (a re-send, or a round without an answer). */
async function roundsOf(ledger: Ledger, key: JobKey): Promise<ReportRounds | undefined> {
  const latest = await ledger.latest(reportRoundKey(key, 1).itemId);
  return latest === undefined ? undefined : { round: latest.attempt, unconfirmed: latest.abandoned !== undefined };
}

async function attemptFacts(ledger: Ledger, key: JobKey, own: JobRecord, generations: number | undefined): Promise<AttemptFacts> {
  const [later, rounds] = await Promise.all([
    laterGenerations(ledger, key, generations),
    own.reported ? roundsOf(ledger, key) : Promise.resolve(undefined),
  ]);
  return { generations: [own, ...later], rounds };
}

async function liveTask(runway: Pick<Runway, 'getTask'>, id: string): Promise<LiveTask> {
  try {
    const task = await runway.getTask(id);
    if (task === undefined) return { kind: 'gone' };
    return {
      kind: 'task',
      status: task.status,
      progress: task.progress ?? undefined,
      failureCode: task.failureCode ?? undefined,
      cost: task.cost?.credits,
    };
  } catch (error) {
    return { kind: 'error', message: failureMessageOf(error) };
  }
}

async function liveTasks(sources: LookupSources, ids: readonly string[]): Promise<Map<string, LiveTask>> {
  const { runway } = sources;
  const why = `runway: not asked (${sources.runwayUnavailable ?? 'no Runway client'})`;
  const answers = await Promise.all(
    ids.map(async (id): Promise<[string, LiveTask]> => [id, runway ? await liveTask(runway, id) : { kind: 'error', message: why }]),
  );
  return new Map(answers);
}

export async function lookupItem(sources: LookupSources, itemId: string): Promise<LookupResult> {
  if (!isItemId(itemId)) {
    return { kind: 'invalid', detail: 'item must be an item id: 1-128 letters, digits, "-", "_" or ".", starting with a letter or digit' };
  }
  const { ledger } = sources;
  const latest = await ledger.latest(itemId);
  if (latest === undefined) return { kind: 'unknown', detail: unknownItemMessage(itemId) };
  const attempts = await Promise.all(
    Array.from({ length: latest.attempt }, async (_, index) => {
      const attempt = index + 1;
      const key: JobKey = { itemId, attempt };
      if (attempt === latest.attempt) return attemptFacts(ledger, key, latest, latest.latestGeneration ?? 1);
      return attemptFacts(ledger, key, await ledger.read(key), undefined);
    }),
  );
  const live = await liveTasks(sources, tasksToAsk(attempts));
  return { kind: 'found', item: itemViewOf(itemId, attempts, live, sources.audio) };
}
