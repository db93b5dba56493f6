import { VIDEO_MAY_EXIST } from '../clients/app-api.js';
import { interpretUploadAnswer, NOT_VIDEO, openOutput, putStream, type UploadVerdict } from '../clients/media-transfer.js';
import type { Deps } from '../deps.js';
import { failureMessageOf } from '../decide/failure-message.js';
import { assertAllowedUrl } from '../url-policy.js';
import { PermanentError, UpstreamError, isRetryable } from '../errors.js';
import { CLOSING_FACTS, storedVideoOf, type JobKey, type JobRecord } from '../ledger/ledger.js';
import { describeError } from '../log.js';
import type { StepOutcome } from '../outcome.js';
import { abandonJob } from './lease-ops.js';
import type { Delivery, Job, UploadMessage } from './messages.js';
import { answerIfClosed, firstTaskOf, outcomeOfReport, reportCompletedIfStored, reportJobFailed, sendReport, type TaskEnding } from './report.js';

/**
 * step-upload: Runway output → Supabase signed upload URL, streamed, then the
 * `completed` report (design §2). Upsert is off in storage, so a video is uploaded once
 * per item. The completed report is claimed in the ledger as soon as the video is stored:
 * that claim is the upload's record, and lets every later delivery go straight to the report.
 */

/** Where the app puts an item's video (contract §1.2). */
export const videoPathOf = (itemId: string): string => `videos/${itemId}.mp4`;

async function outputUrlFor(deps: Deps, job: Job, known: string | undefined): Promise<string> {
  if (known) return known;
  return freshOutputUrl(deps, job);
}

async function freshOutputUrl(deps: Deps, job: Job): Promise<string> {
  const task = await deps.runway.getTask(job.runway_task_id);
  const url = task?.status === 'SUCCEEDED' ? task.output?.[0] : undefined;
  if (!url) throw new PermanentError('runway', 'runway: the finished task has no output video');
  return url;
}

/** Why the task is worth getting again for a fresh output URL (once). */
const FRESH_URL_HELPS: ReadonlyMap<string, string> = new Map([
  ['expired', 'output URL expired: fetching a fresh one'],
  // A CDN answered with a page instead of the video: a fresh URL may be served right.
  [NOT_VIDEO, 'output is not a video: fetching a fresh URL'],
]);

/**
 * Opens the output, checked to be a video. An expired URL (401/403/404/410) or an answer that
 * is not a video gets the task again once for a fresh URL; a second refusal stands.
 */
async function openFreshOutput(deps: Deps, job: Job, known: string | undefined, signal: AbortSignal) {
  const first = await outputUrlFor(deps, job, known);
  try {
    return await openOutput(first, deps.timeouts.uploadMs, signal);
  } catch (error) {
    const reason = error instanceof UpstreamError && error.code !== undefined ? FRESH_URL_HELPS.get(error.code) : undefined;
    if (reason === undefined) throw error;
    deps.log.info({ item_id: job.item_id, runway_task_id: job.runway_task_id, err: describeError(error) }, reason);
    return openOutput(await freshOutputUrl(deps, job), deps.timeouts.uploadMs, signal);
  }
}

/** One streamed upload attempt into a freshly presigned URL. */
async function uploadOnce(deps: Deps, job: Job, outputUrl: string | undefined): Promise<{ verdict: UploadVerdict; storagePath: string; bytes: number }> {
  const target = await deps.app.presignUpload(job.item_id);
  // Refuse a bad upload URL before a download is opened that nobody would read.
  assertAllowedUrl(target.url, 'storage');
  const controller = new AbortController();
  const source = await openFreshOutput(deps, job, outputUrl, controller.signal);
  try {
    const answer = await putStream(target.url, source.body, {
      contentLength: source.length,
      timeoutMs: deps.timeouts.uploadMs,
      signal: controller.signal,
    });
    const verdict = interpretUploadAnswer(answer.status, answer.body);
    if (verdict.kind === 'stored' && source.length !== undefined && answer.bytes !== source.length) {
      // Storage cannot have the whole video yet: success before the last byte is no success.
      throw new UpstreamError('storage', `storage: answered success after ${answer.bytes} of ${source.length} bytes`, { retryable: true });
    }
    return { verdict, storagePath: target.storagePath, bytes: answer.bytes };
  } finally {
    source.body.destroy();
    controller.abort();
  }
}

/** What the step knows of how the task ended: enough to price a first generation without the ledger. */
function endingOf(message: UploadMessage): TaskEnding | undefined {
  const { job, credits } = message;
  return credits === undefined ? undefined : { generation: job.generation, credits, firstTask: firstTaskOf(job) };
}

/** Claims the completed report (the upload's record) and sends it. */
async function reportCompleted(
  deps: Deps,
  key: JobKey,
  message: UploadMessage,
  stored: { readonly storagePath: string; readonly bytes?: number },
  record?: JobRecord,
): Promise<StepOutcome> {
  const { job } = message;
  const result = await sendReport(
    deps,
    key,
    { item_id: job.item_id, status: 'completed', video_storage_path: stored.storagePath, veo_operation_id: job.runway_task_id },
    record,
    endingOf(message),
    stored.bytes,
  );
  return outcomeOfReport(result, { kind: 'done', detail: `completed: ${stored.storagePath}` });
}

/**
 * The upload presign was refused the way it is once the item's video exists: an earlier
 * delivery's upload may have landed without being recorded (its answer was lost). Ask the
 * app; undefined when it finds no video (the refusal was a passing failure after all).
 */
async function completedIfStored(deps: Deps, key: JobKey, message: UploadMessage): Promise<StepOutcome | undefined> {
  const { job } = message;
  // A duplicate delivery may have stored the video (so the presign is refused) and recorded
  // it meanwhile: then its report is the one, and is only settled here, never sent twice.
  const current = await deps.ledger.read(key);
  const closed = await answerIfClosed(deps, key, current);
  if (closed) return closed;
  // An `uploaded` fact of a ledger written before: the video is stored, its report not claimed.
  if (current.uploaded) return reportCompleted(deps, key, message, { storagePath: current.uploaded.storage_path }, current);
  const log = deps.log.child({ item_id: job.item_id, runway_task_id: job.runway_task_id, step: 'upload' });
  log.warn('upload presign refused: the video may already be stored; asking the app with the completed report');
  let result;
  try {
    result = await reportCompletedIfStored(deps, key, {
      item_id: job.item_id,
      status: 'completed',
      video_storage_path: videoPathOf(job.item_id),
      veo_operation_id: job.runway_task_id,
    });
  } catch (error) {
    // The app's answers were lost: whether the video is there stays open until the next delivery.
    return { kind: 'retry', detail: failureMessageOf(error) };
  }
  if (result.kind === 'video-missing') return undefined;
  return outcomeOfReport(result, { kind: 'done', detail: `completed: ${videoPathOf(job.item_id)} (stored by an earlier delivery)` });
}

export async function uploadVideo(deps: Deps, message: UploadMessage, delivery: Delivery): Promise<StepOutcome> {
  const { job } = message;
  const key: JobKey = { itemId: job.item_id, attempt: job.attempt };
  const log = deps.log.child({ item_id: job.item_id, runway_task_id: job.runway_task_id, step: 'upload' });

  // A stored video shows as the claim of its completed report, one of the closing facts.
  const record = await deps.ledger.read(key, CLOSING_FACTS);
  const closed = await answerIfClosed(deps, key, record);
  if (closed) return closed;

  try {
    const lease = await deps.app.heartbeat(job.item_id, deps.config.leaseDurationSeconds);
    if (lease.kind === 'lost') {
      await abandonJob(deps, key, undefined, 'lease lost before upload');
      return { kind: 'done', detail: 'lease lost: not uploading' };
    }

    const started = deps.now();
    let result = await uploadOnce(deps, job, message.output_url);
    if (result.verdict.kind === 'expired-token') {
      log.info('upload token expired: presigning again');
      result = await uploadOnce(deps, job, undefined);
    }
    const { verdict } = result;
    if (verdict.kind === 'too-large') throw new PermanentError('storage', 'storage: the video is over the storage size limit');
    if (verdict.kind === 'expired-token') {
      throw new UpstreamError('storage', 'storage: upload token expired twice', { retryable: true });
    }
    if (verdict.kind === 'error') {
      throw new UpstreamError('storage', `storage: upload refused (${verdict.detail})`, { retryable: verdict.retryable });
    }
    // 'duplicate' means an earlier delivery's upload landed: the video is there.
    const bytes = verdict.kind === 'stored' ? result.bytes : 0;
    log.info({ bytes, duration_ms: deps.now() - started, storage_path: result.storagePath, verdict: verdict.kind }, 'video uploaded');
    return await reportCompleted(deps, key, message, { storagePath: result.storagePath, bytes }, record);
  } catch (error) {
    if (error instanceof UpstreamError && error.code === VIDEO_MAY_EXIST) {
      const stored = await completedIfStored(deps, key, message);
      if (stored) return stored;
    }
    if (isRetryable(error) && !delivery.last) {
      log.warn({ err: describeError(error), retried: delivery.retried }, 'upload failed: QStash will deliver again');
      return { kind: 'retry', detail: failureMessageOf(error) };
    }
    const current = await deps.ledger.read(key);
    if (storedVideoOf(current)) {
      // Never `failed` after an upload: keep asking for the completed report (the handler
      // continues with a new message once QStash's own retries are spent).
      log.error({ err: describeError(error) }, 'the report after the upload failed: trying again');
      return { kind: 'retry', detail: failureMessageOf(error) };
    }
    const failure = failureMessageOf(error);
    log.error({ err: describeError(error), last_delivery: delivery.last }, 'upload failed for good');
    return reportJobFailed(deps, key, job, failure, current, message.credits === undefined ? undefined : { credits: message.credits });
  }
}
