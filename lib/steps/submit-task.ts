import type { LeasedTask } from '../clients/app-api.js';
import { downloadPhoto } from '../clients/media-transfer.js';
import type { CreateTaskBody } from '../clients/runway.js';
import { RUNWAY_MODELS, type RunwayModel } from '../config.js';
import { chooseDuration } from '../decide/duration.js';
import { failureMessageOf } from '../decide/failure-message.js';
import { MODEL_SPECS, resolveProvider } from '../decide/models.js';
import { preparePrompt } from '../decide/prompt.js';
import { chooseRatio } from '../decide/ratio.js';
import type { Deps } from '../deps.js';
import { PermanentError, UpstreamError } from '../errors.js';
import type { JobKey, JobRecord } from '../ledger/ledger.js';
import { describeError } from '../log.js';
import { readImageInfo } from '../media/image-info.js';
import { firstPollDelay, publishPoll, publishUpload, resumeDedupId } from './chain.js';
import { abandonJob, releaseLease } from './lease-ops.js';
import type { Job } from './messages.js';
import { sendReport } from './report.js';

/**
 * One leased task → one Runway task (or a resumed one) → the first poll message.
 * Design §2 "cron-poll", per task.
 */

/** Runway's data URI limit, in characters (contract §2.2). */
export const DATA_URI_MAX_CHARS = 5_242_880;
/** A `submitting` claim without a task older than this means its owner died mid-create. */
export const SUBMIT_STALE_MS = 120_000;

export type SubmitOutcome =
  | { readonly kind: 'submitted'; readonly itemId: string; readonly job: Job }
  | { readonly kind: 'resumed'; readonly itemId: string; readonly detail: string }
  /** Given back to the queue; `stopLeasing` ends this cron run's leasing. */
  | { readonly kind: 'released'; readonly itemId: string; readonly detail: string; readonly stopLeasing: false | 'not-ours' | 'daily-cap' }
  | { readonly kind: 'failed'; readonly itemId: string; readonly detail: string }
  | { readonly kind: 'skipped'; readonly itemId: string | undefined; readonly detail: string };

const PHOTO_NOT_FOUND_MESSAGE = 'photo: not found (the app could not sign a download URL)';

/** Transient failures before a Runway task, in a row, after which the item is reported failed. */
export const MAX_TRANSIENT_FAILURES = 3;

export interface AttemptChoice {
  readonly attempt: number;
  /** The attempt is still open (a task or an upload may be waiting to be picked up). */
  readonly open: JobRecord | undefined;
  /** Transient failures in a row of the attempts right before this one. */
  readonly transientFailures: number;
}

/**
 * Which attempt a fresh lease belongs to: the open one, or the next after a closed one.
 * A `reported` fact is a claim written before the report is sent. The app never hands out a
 * completed item again, so an item handed out with a `completed` claim is one whose report
 * never landed: its attempt stays open (task and video reused, the claimed report sent
 * again). A `failed` claim closes the attempt: an admin retry is how such an item comes back.
 */
export function attemptFor(latest: JobRecord | undefined): AttemptChoice {
  if (!latest) return { attempt: 1, open: undefined, transientFailures: 0 };
  if (latest.abandoned || latest.reported?.status === 'failed') {
    const transientFailures = latest.reported ? 0 : (latest.abandoned?.transient_failures ?? 0);
    return { attempt: latest.attempt + 1, open: undefined, transientFailures };
  }
  return { attempt: latest.attempt, open: latest, transientFailures: 0 };
}

/**
 * Something outside failed before any Runway task existed: give the item back for a later
 * run, unless that has happened too often in a row (a photo URL that always hangs, say).
 */
async function giveBackOrFail(deps: Deps, key: JobKey, prior: number, message: string, why: string): Promise<SubmitOutcome> {
  const failures = prior + 1;
  if (failures >= MAX_TRANSIENT_FAILURES) return reportFailed(deps, key, message);
  await abandonJob(deps, key, undefined, why, failures);
  await releaseLease(deps, key.itemId, why);
  return { kind: 'released', itemId: key.itemId, detail: message, stopLeasing: false };
}

async function reportFailed(deps: Deps, key: JobKey, message: string): Promise<SubmitOutcome> {
  const result = await sendReport(deps, key, { item_id: key.itemId, status: 'failed', error_message: message });
  const detail = result.kind === 'reported' ? message : `${message} (report: ${result.kind})`;
  return { kind: 'failed', itemId: key.itemId, detail };
}

/** Picks up an attempt that already has a Runway task or an uploaded video. */
async function resume(deps: Deps, key: JobKey, record: JobRecord): Promise<SubmitOutcome | undefined> {
  const task = record.task;
  if (!task) {
    if (!record.submitting) return undefined;
    const age = deps.now() - Date.parse(record.submitting.at);
    if (age < SUBMIT_STALE_MS) {
      return { kind: 'skipped', itemId: key.itemId, detail: 'another delivery is submitting this item' };
    }
    // Its owner died between claim and record: the Runway task may exist and be billed.
    // Creating another could pay twice, so this attempt ends here with a clear reason.
    return reportFailed(deps, key, 'runway: submission was interrupted (a task may have been created); retry from the admin page');
  }
  const model = RUNWAY_MODELS.find((name) => name === task.model) ?? deps.config.runwayModel;
  const now = deps.now();
  const job: Job = {
    item_id: key.itemId,
    attempt: key.attempt,
    runway_task_id: task.runway_task_id,
    model,
    duration: task.duration ?? MODEL_SPECS[model].durationsSeconds[0] ?? 5,
    ratio: task.ratio ?? 'unknown',
    submitted_at: Date.parse(task.submitted_at),
    last_heartbeat_at: now,
    polls: 0,
  };
  if (record.uploaded) {
    await publishUpload(deps, job, undefined, resumeDedupId(job, 'upload', now));
    return { kind: 'resumed', itemId: key.itemId, detail: 'video already uploaded: reporting' };
  }
  await publishPoll(deps, job, deps.config.runwayPollMinSeconds, resumeDedupId(job, 'poll', now));
  return { kind: 'resumed', itemId: key.itemId, detail: `polling existing Runway task ${task.runway_task_id}` };
}

async function promptImageFor(deps: Deps, photo: Uint8Array<ArrayBuffer>, mime: string, itemId: string): Promise<string> {
  const base64Chars = Math.ceil(photo.byteLength / 3) * 4;
  const prefix = `data:${mime};base64,`;
  if (prefix.length + base64Chars <= DATA_URI_MAX_CHARS) {
    return prefix + Buffer.from(photo.buffer, photo.byteOffset, photo.byteLength).toString('base64');
  }
  deps.log.info({ item_id: itemId, bytes: photo.byteLength }, 'photo too big for a data URI: using an ephemeral upload');
  const extension = mime === 'image/png' ? 'png' : mime === 'image/webp' ? 'webp' : 'jpg';
  return deps.runway.uploadEphemeral(`${itemId}.${extension}`, photo, mime);
}

/** Builds the create body for the model: only the fields that model accepts (contract §2.1). */
export function buildCreateBody(
  deps: Deps,
  model: RunwayModel,
  promptImage: string,
  ratio: string,
  duration: number,
  promptText: string | undefined,
): CreateTaskBody {
  return {
    model,
    promptImage,
    ratio,
    duration,
    ...(promptText === undefined ? {} : { promptText }),
    ...(MODEL_SPECS[model].supportsAudio ? { audio: deps.config.runwayAudio } : {}),
  };
}

export async function submitTask(deps: Deps, task: LeasedTask): Promise<SubmitOutcome> {
  const itemId = task.item_id;
  const log = deps.log.child({ item_id: itemId, step: 'submit' });
  const provider = resolveProvider(task.inference_provider, deps.config.runwayModel);
  if (provider.kind === 'not-ours') {
    await releaseLease(deps, itemId, `provider ${provider.provider} belongs to another worker`);
    return { kind: 'released', itemId, detail: `provider ${provider.provider} is not a Runway task`, stopLeasing: 'not-ours' };
  }
  if (provider.warning) log.warn({ provider: task.inference_provider }, provider.warning);
  const model = provider.model;

  const { attempt, open, transientFailures } = attemptFor(await deps.ledger.latest(itemId));
  const key: JobKey = { itemId, attempt };
  if (open) {
    const resumed = await resume(deps, key, open);
    if (resumed) return resumed;
  }
  if (!(await deps.ledger.claim(key, 'submitting', { at: new Date(deps.now()).toISOString() }))) {
    return { kind: 'skipped', itemId, detail: 'another delivery is submitting this item' };
  }

  try {
    if (!task.photo_storage_path) throw new PermanentError('task', 'task: photo_storage_path is missing');
    const { url } = await deps.app.presignDownload(task.photo_storage_path).catch((error: unknown) => {
      if (error instanceof UpstreamError && (error.status === 400 || error.status === 404)) {
        throw new PermanentError('photo', PHOTO_NOT_FOUND_MESSAGE, { cause: error });
      }
      // The app answers the same 500 "Failed to generate download URL" for a missing object
      // (contract §1.2) and for a passing failure of its storage call: a transient failure
      // like any other, until it has happened MAX_TRANSIENT_FAILURES times in a row.
      if (error instanceof UpstreamError && error.code === 'not-found') {
        throw new UpstreamError('photo', PHOTO_NOT_FOUND_MESSAGE, { status: error.status, retryable: true, code: 'not-found', cause: error });
      }
      throw error;
    });
    const photo = await downloadPhoto(url, { timeoutMs: deps.timeouts.photoMs });
    const image = readImageInfo(photo);
    const duration = chooseDuration(model, task.frame_num);
    const ratio = chooseRatio(model, image.displayWidth, image.displayHeight);
    const prompt = preparePrompt(model, task.prompt);
    if (duration.adjusted) log.info({ frame_num: task.frame_num, duration: duration.seconds }, 'duration snapped to the model');
    if (prompt.truncated) log.info({ length: task.prompt?.length }, 'prompt cut to 1000 characters');
    const promptImage = await promptImageFor(deps, photo, image.mime, itemId);
    const body = buildCreateBody(deps, model, promptImage, ratio, duration.seconds, prompt.text);

    let created: { id: string };
    try {
      created = await deps.runway.createTask(body);
    } catch (error) {
      return await handleCreateError(deps, key, error, transientFailures);
    }
    return await recordAndPoll(deps, key, { id: created.id, model, duration: duration.seconds, ratio });
  } catch (error) {
    if (error instanceof PermanentError || (error instanceof UpstreamError && !error.retryable)) {
      return reportFailed(deps, key, failureMessageOf(error));
    }
    log.warn({ err: describeError(error) }, 'transient failure before the Runway task');
    return giveBackOrFail(deps, key, transientFailures, failureMessageOf(error), 'transient failure before the Runway task');
  }
}

/**
 * The Runway task exists (and is billed) from here on: nothing below may abandon the
 * attempt. If the ledger or the publish fails, the item stays leased; when its lease
 * lapses the next run finds the task in the ledger and resumes polling it.
 */
async function recordAndPoll(
  deps: Deps,
  key: JobKey,
  created: { id: string; model: RunwayModel; duration: number; ratio: string },
): Promise<SubmitOutcome> {
  const now = deps.now();
  const job: Job = {
    item_id: key.itemId,
    attempt: key.attempt,
    runway_task_id: created.id,
    model: created.model,
    duration: created.duration,
    ratio: created.ratio,
    submitted_at: now,
    last_heartbeat_at: now,
    polls: 0,
  };
  const log = deps.log.child({ item_id: key.itemId, runway_task_id: created.id, step: 'submit' });
  log.info({ model: created.model, duration: created.duration, ratio: created.ratio }, 'runway task created');
  try {
    await deps.ledger.claim(key, 'task', {
      runway_task_id: created.id,
      model: created.model,
      submitted_at: new Date(now).toISOString(),
      duration: created.duration,
      ratio: created.ratio,
    });
    await publishPoll(deps, job, firstPollDelay(deps, created.model));
  } catch (error) {
    log.error({ err: describeError(error) }, 'could not record or schedule the Runway task; it resumes when the lease lapses');
  }
  return { kind: 'submitted', itemId: key.itemId, job };
}

async function handleCreateError(deps: Deps, key: JobKey, error: unknown, transientFailures: number): Promise<SubmitOutcome> {
  if (error instanceof UpstreamError && error.code === 'daily-cap') {
    // Not the item's fault: give it back and stop leasing for this run (design §2).
    await abandonJob(deps, key, undefined, 'runway daily cap');
    await releaseLease(deps, key.itemId, 'runway daily generation cap');
    return { kind: 'released', itemId: key.itemId, detail: 'runway: daily generation limit reached', stopLeasing: 'daily-cap' };
  }
  if (error instanceof UpstreamError && error.status !== undefined && error.retryable) {
    // Runway answered 5xx: no task was made. Close this attempt and let a later run try again.
    return giveBackOrFail(deps, key, transientFailures, failureMessageOf(error), `runway create answered ${error.status}`);
  }
  if (error instanceof UpstreamError && error.status === undefined) {
    // No answer: a task may exist and be billed. Never create blindly again (contract §2.4).
    return reportFailed(deps, key, 'runway: the create request got no answer (a task may exist); not retried to avoid paying twice');
  }
  return reportFailed(deps, key, failureMessageOf(error));
}
