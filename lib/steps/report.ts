import type { Report } from '../clients/app-api.js';
import type { Deps } from '../deps.js';
import { UpstreamError } from '../errors.js';
import type { Fact, JobKey, JobRecord } from '../ledger/ledger.js';
import { sanitizeMessage } from '../decide/failure-message.js';

/**
 * Reports go out at most once per lease attempt (the app's report is not idempotent,
 * contract §1.4): the ledger's `reported` fact is claimed first, then the report is sent.
 * When the answer is lost, a heartbeat tells whether it took effect.
 */

/** A claim older than this whose report never landed is re-sent by a later delivery. */
export const REPORT_SETTLE_MS = 60_000;

export type ReportResult =
  | { readonly kind: 'reported' }
  /** Another delivery claimed the report first (or it was sent earlier). */
  | { readonly kind: 'already-reported' }
  /** 403/404: the item is no longer ours. */
  | { readonly kind: 'lease-lost' }
  /** `failed` refused because a video was uploaded: report completed instead. */
  | { readonly kind: 'refused-after-upload' };

type ReportedFact = Fact<'reported'>;

function factOf(report: Report, at: string): ReportedFact {
  return {
    status: report.status,
    at,
    ...(report.video_storage_path === undefined ? {} : { video_storage_path: report.video_storage_path }),
    ...(report.error_message === undefined ? {} : { error_message: report.error_message }),
    ...(report.veo_operation_id === undefined ? {} : { veo_operation_id: report.veo_operation_id }),
  };
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

/** Sends the claimed report; on a lost answer, asks the lease whether it landed. */
async function send(deps: Deps, report: Report): Promise<ReportResult> {
  try {
    const answer = await deps.app.report(report);
    if (answer.kind === 'lost') {
      deps.log.warn({ item_id: report.item_id, status: answer.status }, 'report refused: lease lost');
      return { kind: 'lease-lost' };
    }
    deps.log.info({ item_id: report.item_id, status: report.status, error_message: report.error_message }, 'reported');
    return { kind: 'reported' };
  } catch (error) {
    if (!(error instanceof UpstreamError)) throw error;
    // The app may have applied the report before the answer was lost (contract §1.4).
    const lease = await deps.app.heartbeat(report.item_id, deps.config.leaseDurationSeconds);
    if (lease.kind === 'lost') {
      deps.log.info({ item_id: report.item_id }, 'report answer lost, but the item has left processing: taken as reported');
      return { kind: 'reported' };
    }
    throw new UpstreamError('app', 'app: report did not go through; will try again', { retryable: true, cause: error });
  }
}

export async function sendReport(deps: Deps, key: JobKey, report: Report, record?: JobRecord): Promise<ReportResult> {
  const current = record ?? (await deps.ledger.read(key));
  if (report.status === 'failed' && current.uploaded) return { kind: 'refused-after-upload' };
  if (current.reported) return settleClaimedReport(deps, key, current);
  const safe: Report =
    report.error_message === undefined ? report : { ...report, error_message: sanitizeMessage(report.error_message) };
  const won = await deps.ledger.claim(key, 'reported', factOf(safe, new Date(deps.now()).toISOString()));
  if (!won) return { kind: 'already-reported' };
  return send(deps, safe);
}

/**
 * A report was claimed by some delivery. If the claim is fresh its owner is still on it.
 * If it is old and the item is still processing under us, the report never landed: send
 * it again, exactly as claimed.
 */
export async function settleClaimedReport(deps: Deps, key: JobKey, record: JobRecord): Promise<ReportResult> {
  const claim = record.reported;
  if (!claim) return { kind: 'already-reported' };
  const age = deps.now() - Date.parse(claim.at);
  if (!(age >= REPORT_SETTLE_MS)) return { kind: 'already-reported' };
  const lease = await deps.app.heartbeat(key.itemId, deps.config.leaseDurationSeconds);
  if (lease.kind === 'lost') return { kind: 'already-reported' };
  deps.log.warn({ item_id: key.itemId }, 'an earlier report never landed: sending it again');
  return send(deps, reportOf(key.itemId, claim));
}
