import type { LeasedTask } from '../clients/app-api.js';
import { MAYBE_CREATED } from '../clients/runway.js';
import { RUNWAY_MODELS, type RunwayModel } from '../config.js';
import { chooseDuration } from '../decide/duration.js';
import { failureMessageOf } from '../decide/failure-message.js';
import { resolveProvider } from '../decide/models.js';
import { preparePrompt } from '../decide/prompt.js';
import type { Deps } from '../deps.js';
import { PermanentError, UpstreamError } from '../errors.js';
import { storedVideoOf, type Fact, type JobKey, type JobRecord } from '../ledger/ledger.js';
import { describeError } from '../log.js';
import { firstPollDelay, publishPoll, publishUpload, resumeDedupId } from './chain.js';
import { isPhotoNotFound, PHOTO_NOT_FOUND_MESSAGE, prepareGeneration } from './generation.js';
import { abandonJob, markSlot, releaseLease, releaseSlot, type FailureStreak } from './lease-ops.js';
import type { Job } from './messages.js';
import { sendReport } from './report.js';

/**
 * One leased task → one Runway task (or a resumed one) → the first poll message.
 * Design §2 "cron-poll", per task.
 */

/** A `submitting` claim without a task older than this means its owner died mid-create. */
export const SUBMIT_STALE_MS = 120_000;

/** How long a `submitting` claim's owner may still be creating its task; 0 once it is stale. */
export function claimWaitMs(claim: Fact<'submitting'> | undefined, nowMs: number): number {
  const age = nowMs - Date.parse(claim?.at ?? '');
  return age < SUBMIT_STALE_MS ? SUBMIT_STALE_MS - age : 0;
}

export type SubmitOutcome =
  | { readonly kind: 'submitted'; readonly itemId: string; readonly job: Job }
  | { readonly kind: 'resumed'; readonly itemId: string; readonly detail: string }
  /** Given back to the queue; `stopLeasing` ends this cron run's leasing. */
  | {
      readonly kind: 'released';
      readonly itemId: string;
      readonly detail: string;
      readonly stopLeasing: false | 'not-ours' | 'daily-cap' | 'capacity';
    }
  | { readonly kind: 'failed'; readonly itemId: string; readonly detail: string }
  | { readonly kind: 'skipped'; readonly itemId: string; readonly detail: string };

/** Transient failures before a Runway task, in a row, after which the item is reported failed. */
export const MAX_TRANSIENT_FAILURES = 3;

export interface AttemptChoice {
  readonly attempt: number;
  /** The attempt is still open (a task or an upload may be waiting to be picked up). */
  readonly open: JobRecord | undefined;
  /** Transient failures in a row of the attempts right before this one. */
  readonly streak: FailureStreak;
}

const NO_STREAK: FailureStreak = { failures: 0, photoNotFound: 0 };

/**
 * Which attempt a fresh lease belongs to: the open one, or the next after a closed one.
 * A `reported` fact is a claim written before the report is sent. The app never hands out a
 * completed item again, so an item handed out with a `completed` claim is one whose report
 * never landed: its attempt stays open (task and video reused, the claimed report sent
 * again). A `failed` claim closes the attempt: an admin retry is how such an item comes back.
 */
export function attemptFor(latest: JobRecord | undefined): AttemptChoice {
  if (!latest) return { attempt: 1, open: undefined, streak: NO_STREAK };
  if (latest.abandoned || latest.reported?.status === 'failed') {
    const abandoned = latest.reported ? undefined : latest.abandoned;
    const streak = { failures: abandoned?.transient_failures ?? 0, photoNotFound: abandoned?.photo_not_found ?? 0 };
    return { attempt: latest.attempt + 1, open: undefined, streak };
  }
  return { attempt: latest.attempt, open: latest, streak: NO_STREAK };
}

/**
 * Something outside failed before any Runway task existed: give the item back for a later
 * run, unless that has happened too often in a row (a photo URL that always hangs, say).
 */
async function giveBackOrFail(deps: Deps, key: JobKey, prior: FailureStreak, error: unknown, why: string, giveBack: GiveBack): Promise<SubmitOutcome> {
  const streak: FailureStreak = {
    failures: prior.failures + 1,
    photoNotFound: isPhotoNotFound(error) ? prior.photoNotFound + 1 : 0,
  };
  const message = failureMessageOf(error);
  if (streak.failures >= MAX_TRANSIENT_FAILURES) {
    // The photo is called missing only when the app said nothing else, time after time.
    const missing = streak.photoNotFound >= MAX_TRANSIENT_FAILURES;
    return reportFailed(deps, key, missing ? PHOTO_NOT_FOUND_MESSAGE : message);
  }
  await abandonJob(deps, key, undefined, why, streak);
  await giveBack(key.itemId, why);
  return { kind: 'released', itemId: key.itemId, detail: message, stopLeasing: false };
}

async function reportFailed(deps: Deps, key: JobKey, message: string): Promise<SubmitOutcome> {
  const result = await sendReport(deps, key, { item_id: key.itemId, status: 'failed', error_message: message });
  const detail = result.kind === 'reported' ? message : `${message} (report: ${result.kind})`;
  return { kind: 'failed', itemId: key.itemId, detail };
}

type Source = NonNullable<Job['source']>;

/** What a later generation needs to start again: the photo's path and the prompt as sent. */
function sourceOf(photoStoragePath: string, model: RunwayModel, prompt: LeasedTask['prompt']): Source {
  const promptText = preparePrompt(model, prompt).text;
  return { photo_storage_path: photoStoragePath, ...(promptText === undefined ? {} : { prompt_text: promptText }) };
}

/** A `submitting` claim without its task: its owner is still creating, or died mid-create. */
async function interruptedSubmission(deps: Deps, key: JobKey, claim: Fact<'submitting'>): Promise<SubmitOutcome> {
  if (claimWaitMs(claim, deps.now()) > 0) {
    return { kind: 'skipped', itemId: key.itemId, detail: 'another delivery is submitting this item' };
  }
  // The Runway task may exist and be billed: creating another could pay twice, so this
  // attempt ends here with a clear reason.
  return reportFailed(deps, key, 'runway: submission was interrupted (a task may have been created); retry from the admin page');
}

/**
 * Picks up an attempt that already has a Runway task or an uploaded video: the newest
 * generation's task when there have been several.
 */
async function resume(deps: Deps, key: JobKey, record: JobRecord, leased: LeasedTask): Promise<SubmitOutcome | undefined> {
  const generation = record.latestGeneration ?? 1;
  const current = generation > 1 ? await deps.ledger.read({ ...key, generation }) : record;
  const task = current.task;
  if (!task) {
    if (!current.submitting) return undefined;
    return interruptedSubmission(deps, key, current.submitting);
  }
  const model = RUNWAY_MODELS.find((name) => name === task.model) ?? deps.config.runwayModel;
  const now = deps.now();
  const job: Job = {
    item_id: key.itemId,
    attempt: key.attempt,
    runway_task_id: task.runway_task_id,
    model,
    duration: task.duration,
    ratio: task.ratio,
    submitted_at: Date.parse(task.submitted_at),
    last_heartbeat_at: now,
    polls: 0,
    generation,
    ...(task.estimated_credits === undefined ? {} : { estimated_credits: task.estimated_credits }),
    // The task is paid for: it is polled even when this lease names no photo; a new
    // generation then has nothing to start from.
    ...(leased.photo_storage_path ? { source: sourceOf(leased.photo_storage_path, model, leased.prompt) } : {}),
  };
  if (storedVideoOf(record)) {
    await publishUpload(deps, job, undefined, resumeDedupId(job, 'upload', now));
    return { kind: 'resumed', itemId: key.itemId, detail: 'video already uploaded: reporting' };
  }
  await publishPoll(deps, job, deps.config.runwayPollMinSeconds, resumeDedupId(job, 'poll', now));
  return { kind: 'resumed', itemId: key.itemId, detail: `polling existing Runway task ${task.runway_task_id}` };
}

/** Gives a leased item back to the queue (`extend_seconds: 0`). */
export type GiveBack = (itemId: string, why: string) => Promise<void>;

export interface SubmitOptions {
  /**
   * Asked for a free Runway slot for the task's model right before a new generation
   * (backpressure): without one the item is given back. Default: always.
   */
  readonly admit?: (model: RunwayModel) => boolean;
  /**
   * How an item is given back. cron-poll holds them until its run ends, so a lease of the
   * same run cannot take the item straight back. Default: at once.
   */
  readonly giveBack?: GiveBack;
}

/** One leased task through to its Runway task (or a resumed one, or given back, or reported). */
export async function submitTask(deps: Deps, task: LeasedTask, options: SubmitOptions = {}): Promise<SubmitOutcome> {
  const admit = options.admit ?? (() => true);
  const giveBack: GiveBack = options.giveBack ?? ((itemId, why) => releaseLease(deps, itemId, why));
  const itemId = task.item_id;
  const log = deps.log.child({ item_id: itemId, step: 'submit' });
  const provider = resolveProvider(task.inference_provider, deps.config.runwayModel);
  if (provider.kind === 'not-ours') {
    await giveBack(itemId, `provider ${provider.provider} belongs to another worker`);
    return { kind: 'released', itemId, detail: `provider ${provider.provider} is not a Runway task`, stopLeasing: 'not-ours' };
  }
  if (provider.warning) log.warn({ provider: task.inference_provider }, provider.warning);
  const model = provider.model;

  const admitted = admit(model);
  // An item seen for the first time: claiming its first attempt is the whole ledger lookup.
  const first: JobKey = { itemId, attempt: 1 };
  if (admitted && (await claimSubmission(deps, first))) {
    return startGeneration(deps, { task, key: first, model, streak: NO_STREAK, giveBack });
  }
  const { attempt, open, streak } = attemptFor(await deps.ledger.latest(itemId));
  const key: JobKey = { itemId, attempt };
  if (open) {
    const resumed = await resume(deps, key, open, task);
    if (resumed) return resumed;
  }
  if (!admitted) {
    // Known only now that the task names its model: give it back untouched for a later run.
    await giveBack(itemId, `no free Runway slot for ${model}`);
    return { kind: 'released', itemId, detail: `runway: no free ${model} slot now`, stopLeasing: 'capacity' };
  }
  return submitNew(deps, { task, key, model, streak, giveBack });
}

/** One new Runway generation to start for a leased task: everything it needs. */
interface NewSubmission {
  readonly task: LeasedTask;
  readonly key: JobKey;
  readonly model: RunwayModel;
  /** Transient failures in a row before this attempt. */
  readonly streak: FailureStreak;
  readonly giveBack: GiveBack;
}

/**
 * Claims the right to create the attempt's Runway task. Every attempt's ledger starts with
 * this fact, so a claim that wins on attempt 1 also says the item has no history.
 */
function claimSubmission(deps: Deps, key: JobKey): Promise<boolean> {
  return deps.ledger.claim(key, 'submitting', { at: new Date(deps.now()).toISOString() });
}

async function submitNew(deps: Deps, submission: NewSubmission): Promise<SubmitOutcome> {
  const { key } = submission;
  if (!(await claimSubmission(deps, key))) {
    return { kind: 'skipped', itemId: key.itemId, detail: 'another delivery is submitting this item' };
  }
  return startGeneration(deps, submission);
}

/** The submission is claimed: one Runway task, holding one of the model's slots. */
async function startGeneration(deps: Deps, submission: NewSubmission): Promise<SubmitOutcome> {
  const { key, model } = submission;
  // The slot is marked taken before the create, so a cron-poll run that counts meanwhile
  // sees it; freed again unless a task came of it.
  await markSlot(deps, key, model);
  const outcome = await createFirstGeneration(deps, submission);
  if (outcome.kind !== 'submitted') await releaseSlot(deps, key, model);
  return outcome;
}

async function createFirstGeneration(deps: Deps, { task, key, model, streak, giveBack }: NewSubmission): Promise<SubmitOutcome> {
  const { itemId } = key;
  const log = deps.log.child({ item_id: itemId, step: 'submit' });
  try {
    const photoStoragePath = task.photo_storage_path;
    if (!photoStoragePath) throw new PermanentError('task', 'task: photo_storage_path is missing');
    const duration = chooseDuration(model, task.frame_num);
    const prompt = preparePrompt(model, task.prompt);
    if (duration.adjusted) log.info({ frame_num: task.frame_num, duration: duration.seconds }, 'duration snapped to the model');
    if (prompt.truncated) log.info({ length: task.prompt?.length }, 'prompt cut to 1000 characters');
    const prepared = await prepareGeneration(deps, {
      itemId,
      photoStoragePath,
      model,
      duration: duration.seconds,
      promptText: prompt.text,
    });

    let created;
    try {
      created = await deps.runway.createTask(prepared.body);
    } catch (error) {
      return await handleCreateError(deps, key, error, streak, giveBack);
    }
    return await recordAndPoll(deps, key, {
      id: created.id,
      estimatedCredits: created.estimatedCredits,
      model,
      duration: duration.seconds,
      ratio: prepared.ratio,
      photo: prepared.photo,
      source: sourceOf(photoStoragePath, model, task.prompt),
    });
  } catch (error) {
    if (error instanceof PermanentError || (error instanceof UpstreamError && !error.retryable)) {
      return reportFailed(deps, key, failureMessageOf(error));
    }
    log.warn({ err: describeError(error) }, 'transient failure before the Runway task');
    return giveBackOrFail(deps, key, streak, error, 'transient failure before the Runway task', giveBack);
  }
}

/**
 * The Runway task exists (and is billed) from here on: nothing below may abandon the
 * attempt. If the ledger or the publish fails, the item stays leased; when its lease
 * lapses the next run finds the task in the ledger and resumes polling it.
 */
export interface CreatedGeneration {
  readonly id: string;
  readonly estimatedCredits: number | undefined;
  readonly model: RunwayModel;
  readonly duration: number;
  readonly ratio: string;
  readonly photo: NonNullable<Fact<'task'>['photo']>;
  readonly source: Job['source'];
}

/** The ledger's `task` fact for a generation just created. */
export function taskFactOf(created: CreatedGeneration, submittedAtMs: number): Fact<'task'> {
  return {
    runway_task_id: created.id,
    model: created.model,
    submitted_at: new Date(submittedAtMs).toISOString(),
    duration: created.duration,
    ratio: created.ratio,
    ...(created.estimatedCredits === undefined ? {} : { estimated_credits: created.estimatedCredits }),
    photo: created.photo,
  };
}

async function recordAndPoll(deps: Deps, key: JobKey, created: CreatedGeneration & { readonly source: Source }): Promise<SubmitOutcome> {
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
    generation: 1,
    ...(created.estimatedCredits === undefined ? {} : { estimated_credits: created.estimatedCredits }),
    source: created.source,
  };
  const log = deps.log.child({ item_id: key.itemId, runway_task_id: created.id, step: 'submit' });
  log.info(
    { model: created.model, duration: created.duration, ratio: created.ratio, estimated_credits: created.estimatedCredits },
    'runway task created',
  );
  try {
    await deps.ledger.claim(key, 'task', taskFactOf(created, now));
    await publishPoll(deps, job, firstPollDelay(deps, created.model));
  } catch (error) {
    log.error({ err: describeError(error) }, 'could not record or schedule the Runway task; it resumes when the lease lapses');
  }
  return { kind: 'submitted', itemId: key.itemId, job };
}

async function handleCreateError(deps: Deps, key: JobKey, error: unknown, streak: FailureStreak, giveBack: GiveBack): Promise<SubmitOutcome> {
  if (error instanceof UpstreamError && error.code === 'daily-cap') {
    // Not the item's fault: give it back and stop leasing for this run (design §2).
    await abandonJob(deps, key, undefined, 'runway daily cap');
    await giveBack(key.itemId, 'runway daily generation cap');
    return { kind: 'released', itemId: key.itemId, detail: 'runway: daily generation limit reached', stopLeasing: 'daily-cap' };
  }
  if (error instanceof UpstreamError && error.code === MAYBE_CREATED) {
    return reportFailed(deps, key, `${error.message}; not retried to avoid paying twice`);
  }
  if (error instanceof UpstreamError && error.status !== undefined && error.retryable) {
    // Runway answered 5xx: no task was made. Close this attempt and let a later run try again.
    return giveBackOrFail(deps, key, streak, error, `runway create answered ${error.status}`, giveBack);
  }
  if (error instanceof UpstreamError && error.status === undefined) {
    // No answer: a task may exist and be billed. Never create blindly again (contract §2.4).
    return reportFailed(deps, key, 'runway: the create request got no answer (a task may exist); not retried to avoid paying twice');
  }
  return reportFailed(deps, key, failureMessageOf(error));
}
