import type { Report } from '../clients/app-api.js';
import { attemptCredits, type Credits, type GenerationPriceFacts } from '../decide/credits.js';
import { sanitizeMessage } from '../decide/failure-message.js';
import { REPORT_SENDS, reportSettleMs, type Deps } from '../deps.js';
import { UpstreamError } from '../errors.js';
import { storedVideoOf, type Fact, type JobKey, type JobRecord } from '../ledger/ledger.js';
import type { Job } from './messages.js';
import { describeError, redactText } from '../log.js';
import { abandonJob } from './lease-ops.js';
import { secretsOf } from '../config.js';
import type { StepOutcome } from '../outcome.js';

/**
 * Reports go out at most once per lease attempt (the app's report is not idempotent,
 * contract §1.4): the ledger's `reported` fact is claimed first, then the report is sent.
 * When an answer is lost, a heartbeat tells whether the report took effect: 404 once the
 * item has left `processing`, 200 while it is still ours to report.
 */

export type ReportResult =
  | { readonly kind: 'reported' }
  /** Reported earlier, by this or another delivery (or the item has left processing). */
  | { readonly kind: 'already-reported' }
  /** Claimed by a delivery that may still be sending it: look again after the delay. */
  | { readonly kind: 'unconfirmed'; readonly retryAfterSeconds: number }
  /** 403/404: the item is no longer ours. */
  | { readonly kind: 'lease-lost' }
  /** `failed` refused because a video was uploaded: report completed instead. */
  | { readonly kind: 'refused-after-upload' }
  /** `completed` refused by the app: the video is not in storage. */
  | { readonly kind: 'video-missing' };

type ReportedFact = Fact<'reported'>;

/** How the attempt's last Runway task ended, as the step that saw it knows. */
export interface TaskEnding {
  /** The attempt's last generation (1 for its first task). */
  readonly generation: number;
  /** Runway's `cost.credits`, when the task came back with one. */
  readonly credits?: number | undefined;
  /**
   * The first generation's price facts as its job message carries them, given only by a step
   * that saw the task end (so `credits` is all Runway said). For a first generation they are
   * the whole price: no ledger read.
   */
  readonly firstTask?: GenerationPriceFacts['task'];
}

/** The price facts of a job's first generation, from its message. */
export function firstTaskOf(job: Pick<Job, 'model' | 'duration' | 'estimated_credits'>): NonNullable<GenerationPriceFacts['task']> {
  return { model: job.model, duration: job.duration, estimated_credits: job.estimated_credits };
}

function factOf(report: Report, at: string, credits: Credits | undefined, videoBytes?: number): ReportedFact {
  return {
    status: report.status,
    at,
    ...(report.video_storage_path === undefined ? {} : { video_storage_path: report.video_storage_path }),
    ...(report.error_message === undefined ? {} : { error_message: report.error_message }),
    ...(report.veo_operation_id === undefined ? {} : { veo_operation_id: report.veo_operation_id }),
    ...(videoBytes === undefined ? {} : { video_bytes: videoBytes }),
    ...(credits === undefined ? {} : { credits: credits.credits, credits_source: credits.source }),
  };
}

function creditsOfFact(fact: ReportedFact): Credits | undefined {
  return fact.credits === undefined ? undefined : { credits: fact.credits, source: fact.credits_source ?? 'runway' };
}

/**
 * What the attempt cost, every generation together, for its report and its final log line:
 * generation 1's facts are the attempt's own, later ones are read (there are later ones only
 * after a transient Runway failure). The last task's figure is the one its poll saw, or the one
 * it recorded as the `cost` fact. A ledger that cannot be read leaves the figure out: it is
 * never worth holding a report back.
 */
export async function creditsOfAttempt(deps: Deps, key: JobKey, record?: JobRecord, ending?: TaskEnding): Promise<Credits | undefined> {
  try {
    if (ending?.generation === 1 && ending.firstTask !== undefined) {
      return attemptCredits([{ task: ending.firstTask }], ending.credits, deps.config.runwayAudio).total;
    }
    // Every attempt's first fact is `submitting`: a record without it was read in part.
    const own = record?.submitting !== undefined ? record : await deps.ledger.read(key);
    const count = ending?.generation ?? own.cost?.generation ?? 1;
    const lastCredits = ending?.credits ?? (own.cost?.generation === count ? own.cost.credits : undefined);
    const later = await Promise.all(
      Array.from({ length: count - 1 }, (_, index) => deps.ledger.read({ ...key, generation: index + 2 })),
    );
    return attemptCredits([own, ...later], lastCredits, deps.config.runwayAudio).total;
  } catch (error) {
    deps.log.warn({ item_id: key.itemId, err: describeError(error) }, 'could not work out what the attempt cost');
    return undefined;
  }
}

function reportOf(itemId: string, fact: ReportedFact): Report {
  return {
    item_id: itemId,
    status: fact.status,
    ...(fact.video_storage_path === undefined ? {} : { video_storage_path: fact.video_storage_path }),
    ...(fact.error_message === undefined ? {} : { error_message: fact.error_message }),
    ...(fact.veo_operation_id === undefined ? {} : { veo_operation_id: fact.veo_operation_id }),
  };
}

/**
 * Sends a claimed report. A lost answer is resolved by a heartbeat, never by sending blind:
 * 404 means it landed (or the item was taken away), 200 means it did not and may be sent again.
 */
async function send(deps: Deps, report: Report, credits?: Credits): Promise<ReportResult> {
  const log = deps.log.child({ item_id: report.item_id, step: 'report' });
  let lastError: unknown;
  for (let attempt = 1; attempt <= REPORT_SENDS; attempt++) {
    try {
      const answer = await deps.app.report(report);
      if (answer.kind === 'lost') {
        log.warn({ status: answer.status }, 'report refused: the lease is lost');
        return { kind: 'lease-lost' };
      }
      if (answer.kind === 'video-missing') {
        log.warn('completed report refused: the app finds no video in storage');
        return { kind: 'video-missing' };
      }
      log.info(
        { status: report.status, error_message: report.error_message, credits: credits?.credits, credits_source: credits?.source },
        'reported',
      );
      return { kind: 'reported' };
    } catch (error) {
      // The app client rejects only with UpstreamError: no answer, or none it could read. Either
      // way the report may have landed.
      lastError = error;
      log.warn({ err: describeError(error), attempt }, 'report answer lost: asking the lease whether it landed');
      const lease = await deps.app.heartbeat(report.item_id, deps.config.leaseDurationSeconds);
      if (lease.kind === 'lost') {
        log.info('the item has left processing: the report landed');
        return { kind: 'reported' };
      }
    }
  }
  throw new UpstreamError('app', 'app: the report did not go through; it will be sent again', {
    retryable: true,
    cause: lastError,
  });
}

/**
 * One round of sends of a claimed report. A round that stops without a confirmed outcome
 * (all sends unanswered, or the process gave up) says so in the ledger, so the next
 * delivery knows nobody is still sending and may start the next round at once.
 */
async function sendRound(deps: Deps, key: JobKey, report: Report, round: number, credits: Credits | undefined): Promise<ReportResult> {
  let settled = false;
  try {
    const result = await send(deps, report, credits);
    // Refused without effect: the round is over, and a later one may send it again.
    settled = result.kind !== 'video-missing';
    if (result.kind === 'lease-lost') await abandonJob(deps, key, report.veo_operation_id, 'lease lost (report refused)');
    return result;
  } finally {
    if (!settled) {
      await deps.ledger
        .claim(reportRoundKey(key, round), 'abandoned', { reason: 'report not confirmed', at: new Date(deps.now()).toISOString() })
        .catch((error: unknown) => deps.log.warn({ item_id: key.itemId, err: describeError(error) }, 'could not record the report round'));
    }
  }
}

/**
 * Claims and sends the attempt's report. `ending` is how its last Runway task ended, when the
 * caller has just seen it (the report then names what that task cost).
 */
export async function sendReport(
  deps: Deps,
  key: JobKey,
  report: Report,
  record?: JobRecord,
  ending?: TaskEnding,
  videoBytes?: number,
): Promise<ReportResult> {
  const current = record ?? (await deps.ledger.read(key));
  if (report.status === 'failed' && storedVideoOf(current)) return { kind: 'refused-after-upload' };
  const safe: Report =
    report.error_message === undefined
      ? report
      : { ...report, error_message: sanitizeMessage(redactText(report.error_message, secretsOf(deps.config))) };
  const credits = await creditsOfAttempt(deps, key, current, ending);
  const won = await deps.ledger.claim(key, 'reported', factOf(safe, new Date(deps.now()).toISOString(), credits, videoBytes));
  if (!won) return settleClaimedReport(deps, key, await deps.ledger.read(key));
  return sendRound(deps, key, safe, 1, credits);
}

/**
 * A report was claimed by some delivery. If the item has left processing, it landed. If it
 * has not (a heartbeat that succeeds proves the report did not land), it is sent again,
 * exactly as claimed — as soon as the round before has stopped sending. A round that never
 * said it stopped (its process died) is waited out for as long as a round can take.
 */
export async function settleClaimedReport(deps: Deps, key: JobKey, record: JobRecord): Promise<ReportResult> {
  const claim = record.reported;
  if (!claim) return { kind: 'already-reported' };
  // A newer attempt exists (an admin retry leased the item again): the heartbeat below would
  // answer for that attempt's lease, not this one's, so this report is history.
  const latest = await deps.ledger.latest(key.itemId);
  if (latest && latest.attempt > key.attempt) return { kind: 'already-reported' };
  const settleMs = reportSettleMs(deps.timeouts);
  const unconfirmed = (waitMs: number): ReportResult => ({
    kind: 'unconfirmed',
    retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)),
  });
  let lease;
  try {
    lease = await deps.app.heartbeat(key.itemId, deps.config.leaseDurationSeconds);
  } catch {
    return unconfirmed(settleMs);
  }
  if (lease.kind === 'lost') return { kind: 'already-reported' };
  // Rounds are claimed one after another (create-if-absent): two deliveries that both find
  // the report unconfirmed must not both send it. Round 1 is the claimer's own.
  const previous = await deps.ledger.latest(roundsOf(key));
  const round = previous?.attempt ?? 1;
  if (!previous?.abandoned) {
    const age = deps.now() - Date.parse(previous?.submitting?.at ?? claim.at);
    if (!(age >= settleMs)) return unconfirmed(settleMs - (age || 0));
  }
  const next = round + 1;
  if (!(await deps.ledger.claim(reportRoundKey(key, next), 'submitting', { at: new Date(deps.now()).toISOString() }))) {
    return unconfirmed(settleMs);
  }
  deps.log.warn({ item_id: key.itemId, round: next }, 'an earlier report never landed: sending it again');
  return sendRound(deps, key, reportOf(key.itemId, claim), next, creditsOfFact(claim));
}

/**
 * Ledger entries for the send rounds of one attempt's report: round N is "attempt" N of this
 * pseudo item — `submitting` when a re-send round starts, `abandoned` when a round stopped
 * without a confirmed outcome — so rounds use the ledger's own create-if-absent claims.
 */
function roundsOf(key: JobKey): string {
  return `${key.itemId}#report-${key.attempt}`;
}

/** The ledger key of one send round of an attempt's report. */
export function reportRoundKey(key: JobKey, round: number): JobKey {
  return { itemId: roundsOf(key), attempt: round };
}

/**
 * The step outcome for a report result. `onReported` is what a fresh report means for the
 * step (a `failed` report ends the message for good: 489; a `completed` one is plain done).
 */
export function outcomeOfReport(result: ReportResult, onReported: StepOutcome): StepOutcome {
  switch (result.kind) {
    case 'reported':
      return onReported;
    case 'already-reported':
      return { kind: 'done', detail: 'already reported' };
    case 'unconfirmed':
      return { kind: 'retry', detail: 'an earlier report is not confirmed yet', retryAfterSeconds: result.retryAfterSeconds };
    case 'lease-lost':
      return { kind: 'done', detail: 'lease lost: nothing reported' };
    case 'refused-after-upload':
      return { kind: 'done', detail: 'video already uploaded: not reporting failed' };
    case 'video-missing':
      return { kind: 'retry', detail: 'the app finds no video in storage for the completed report' };
  }
}

/**
 * Asks the app whether the item's video is already stored, the only way the worker can: a
 * `completed` report, which the app applies only when the object exists (contract §1.4) and
 * which is harmless to repeat. Used when an upload presign is refused because the object
 * may exist (an earlier upload whose answer was lost). On success the ledger records the
 * report (a completed report's claim is also the upload's record), so every later delivery
 * is done at once.
 */
export async function reportCompletedIfStored(
  deps: Deps,
  key: JobKey,
  report: Report & { readonly video_storage_path: string },
): Promise<ReportResult> {
  const credits = await creditsOfAttempt(deps, key);
  const result = await send(deps, report, credits);
  if (result.kind === 'lease-lost') {
    await abandonJob(deps, key, report.veo_operation_id, 'lease lost (report refused)');
    return result;
  }
  if (result.kind !== 'reported') return result;
  await deps.ledger.claim(key, 'reported', factOf(report, new Date(deps.now()).toISOString(), credits));
  return result;
}

/**
 * A delivery for an attempt that is already closed (abandoned, or its report claimed) does
 * nothing but make sure a claimed report lands. Undefined while the attempt is open.
 */
export async function answerIfClosed(deps: Deps, key: JobKey, record: JobRecord): Promise<StepOutcome | undefined> {
  if (record.abandoned) return { kind: 'done', detail: 'job abandoned: nothing to do' };
  if (record.reported) return outcomeOfReport(await settleClaimedReport(deps, key, record), { kind: 'done', detail: 'report re-sent' });
  return undefined;
}

/**
 * Reports a job failed, naming its Runway task, and maps the result for the step: a report
 * that went out ends the message for good (489); anything else is settled as usual. `seen`:
 * the caller saw how the task ended (with Runway's figure, if it named one).
 */
export async function reportJobFailed(
  deps: Deps,
  key: JobKey,
  job: Job,
  message: string,
  record?: JobRecord,
  seen?: { readonly credits?: number | undefined },
): Promise<StepOutcome> {
  const report: Report = { item_id: job.item_id, status: 'failed', error_message: message, veo_operation_id: job.runway_task_id };
  const ending: TaskEnding =
    seen === undefined ? { generation: job.generation } : { generation: job.generation, credits: seen.credits, firstTask: firstTaskOf(job) };
  return outcomeOfReport(await sendReport(deps, key, report, record, ending), { kind: 'stop', detail: `reported failed: ${message}` });
}
