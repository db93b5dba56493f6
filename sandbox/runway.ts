import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { flatHeaders, sendJson, tryJson, type RecordedRequest } from './http-util.js';
import { chance, createRng } from './random.js';
import { createScriptedFailures, drawTransientFailure, type ScriptedFailure } from './runway-failures.js';
import {
  isJsonRequest,
  readBodyUpTo,
  sendMethodNotAllowed,
  sendS3Error,
  sendValidationError,
} from './runway-http.js';
import { ASSET_INVALID, checkImage, type ImageVerdict, type ReceivedImage } from './runway-image-check.js';
import {
  effectiveDurationSeconds,
  estimateCredits,
  imageToVideoRequestSchema,
  RUNWAY_API_VERSION,
  toRunwayIssues,
  uploadRequestSchema,
  type ImageToVideoRequest,
  type RunwayModel,
} from './runway-models.js';
import {
  CDN_ERROR_PAGE,
  isOutputSignatureValid,
  sampleVideo,
  sha256OfChunks,
  signOutput,
  syntheticVideoChunks,
  tapChunks,
} from './runway-output.js';
import { decodeDataUri, failureText, findFailureMarker, promptImageKind, type PromptImageKind } from './runway-prompt-image.js';
import { createTaskRecords, type TaskRecord } from './runway-task-records.js';
import { failureOutcome, type RunwayTaskStatus, type TaskOutcome } from './runway-task-timeline.js';
import { createTier, organizationBody, type ConcurrencyOption } from './runway-tier.js';
import { createUploadSlot, receiveUpload, UPLOAD_URI_TTL_MS, type UploadSlot } from './runway-uploads.js';

export type { ScriptedFailure } from './runway-failures.js';
export type { MetadataKind, ReceivedImage } from './runway-image-check.js';
export type { RunwayModel } from './runway-models.js';
export type { PromptImageKind } from './runway-prompt-image.js';
export type { RunwayTaskStatus } from './runway-task-timeline.js';
export type { ConcurrencyOption } from './runway-tier.js';

export interface SandboxRunwayFaults {
  /** Any /v1 request answers 502, as a flaky gateway would. */
  error502Rate?: number;
  /** A create answers 429 (daily generation cap). */
  create429Rate?: number;
  /** A created task ends FAILED with `SAFETY.OUTPUT.VIDEO`. */
  safetyRate?: number;
  /** A created task stays RUNNING forever, its progress creeping below 1. */
  neverFinishRate?: number;
  /** The first GET of an output URL answers 403 although the URL is valid. */
  outputForbiddenRate?: number;
  /**
   * A created task fails with a temporary code (`INTERNAL`, `THIRD_PARTY.UNAVAILABLE` or
   * `INPUT_PREPROCESSING.INTERNAL`); the last on leaving PENDING, the others at the end.
   */
  transientFailureRate?: number;
  /** Every GET of a succeeded task's output URLs answers 200 with a CDN's HTML error page, never the video. */
  htmlOutputRate?: number;
  /**
   * The first GET of an output URL answers 200 with a CDN's HTML error page, drawn per URL
   * as `outputForbiddenRate` is: that URL fetched again, or a fresh URL whose draw did not
   * fire, serves the video.
   */
  htmlOutputFirstFetchRate?: number;
}

export interface SandboxRunwayOptions {
  apiKey: string;
  /** Base URL of the mount, e.g. `http://127.0.0.1:P/runway`; known only once the server listens. */
  publicBaseUrl: () => string;
  record: (request: RecordedRequest) => void;
  /** Drives fault injection; default `createRng(1)`. */
  rng?: () => number;
  faults?: SandboxRunwayFaults;
  /** Time from getting a concurrency slot (at create, without a limit) to SUCCEEDED; default 8000. */
  generationMs?: number;
  /** When set, outputs are generated MP4-typed streams of this many bytes instead of the sample clip. */
  outputBytes?: number;
  /** Lifetime of output URLs; default 24 h, the short end of Runway's 24-48 h. */
  outputUrlTtlMs?: number;
  /**
   * Tasks of a model generating at once; tasks over the limit wait THROTTLED, first come
   * first served. Default: no limit (the organization then reports 1000).
   */
  concurrency?: ConcurrencyOption;
  /** Creates per model and UTC day before a create answers 429; default 1000. */
  dailyLimit?: number;
  /** Keep every prompt image received, for `promptImageBytes`; off so long runs do not hold every photo. */
  keepPromptImages?: boolean;
}

export interface SandboxRunwayTask {
  readonly id: string;
  readonly model: RunwayModel;
  readonly ratio: string;
  /** Seconds, with the model's default applied when the request had none. */
  readonly duration: number;
  readonly promptText: string | undefined;
  readonly promptImageKind: PromptImageKind;
  /**
   * What arrived as the prompt image (the first frame when there are two); undefined for
   * an https URL, which the sandbox does not fetch.
   */
  readonly promptImage: ReceivedImage | undefined;
  readonly status: RunwayTaskStatus;
  readonly progress: number | undefined;
  /** Time spent THROTTLED so far, waiting for a concurrency slot. */
  readonly throttledMs: number;
  /** ISO time, as the API reports it. */
  readonly createdAt: string;
  readonly failureCode: string | undefined;
  readonly failure: string | undefined;
  readonly credits: number;
  /** Size of the output served, once the task SUCCEEDED. */
  readonly outputBytes: number | undefined;
  /** sha256 (hex) of the output served, once the task SUCCEEDED; computed on first read. */
  readonly outputSha256: string | undefined;
  /** A DELETE was accepted; the API now answers 404 for the task. */
  readonly deleted: boolean;
  /** GET /v1/tasks/{id} requests seen for this task. */
  readonly polls: number;
  /** Every request for this task's outputs answers a CDN's HTML error page (`htmlOutputRate`). */
  readonly htmlOutput: boolean;
  /** Output requests answered with the HTML error page, by either HTML fault. */
  readonly htmlOutputsServed: number;
}

export interface SandboxRunwayUpload {
  readonly runwayUri: string;
  readonly filename: string;
  readonly bytes: number;
}

export interface SandboxRunway {
  /** Serves one request; `subpath` is relative to the mount, query included (`/v1/tasks/abc?x`). */
  handle(req: IncomingMessage, res: ServerResponse, subpath: string): Promise<void>;
  tasks(): readonly SandboxRunwayTask[];
  task(id: string): SandboxRunwayTask | undefined;
  /** sha256 (hex) of the bytes served as the task's output. */
  outputSha256(taskId: string): string;
  /** Uploads whose multipart POST succeeded, oldest first. */
  uploads(): readonly SandboxRunwayUpload[];
  /** The prompt image bytes of a task, when `keepPromptImages` is on and the image was received. */
  promptImageBytes(taskId: string): Buffer | undefined;
  /**
   * The next `count` (default 1) created tasks — only those whose promptText includes
   * `promptIncludes`, when given — fail with `code`, whatever else would have happened
   * to them. Scripts queue up in the order given.
   */
  failNextTasks(options: ScriptedFailure): void;
  /** The most tasks (of `model`, or of all models) that were THROTTLED at one moment so far. */
  maxThrottledAtOnce(model?: RunwayModel): number;
  /** The most tasks (of `model`, or of all models) that held a concurrency slot at one moment so far. */
  maxActiveAtOnce(model?: RunwayModel): number;
  /** Output downloads whose body is still being sent (a client that aborts one ends it). */
  outputDownloadsOpen(): number;
}

/** One prompt image as the create found it: rejected outright, or accepted with what was received. */
type InspectedImage =
  | { readonly kind: 'ok'; readonly verdict: ImageVerdict | undefined; readonly bytes: Buffer | undefined }
  | { readonly kind: 'invalid'; readonly code: string; readonly message: string };

const DEFAULT_GENERATION_MS = 8000;
const DEFAULT_OUTPUT_URL_TTL_MS = 24 * 60 * 60 * 1000;
/** Large enough for a data URI at its 5,242,880-character limit plus the rest of the JSON. */
const JSON_BODY_MAX_BYTES = 8 * 1024 * 1024;
const STARTING_CREDIT_BALANCE = 100_000;
const DAILY_LIMIT_MESSAGE =
  'You have exceeded the daily task limit for this model. Please try again tomorrow or contact sales to raise your limit.';

const TASK_PATH = /^\/v1\/tasks\/([^/]+)$/;
const OUTPUT_PATH = /^\/outputs\/([^/]+)\.mp4$/;
const UPLOAD_TARGET_PATH = /^\/upload-target\/([^/]+)$/;

export function createSandboxRunway(options: SandboxRunwayOptions): SandboxRunway {
  const rng = options.rng ?? createRng(1);
  const faults = options.faults ?? {};
  const generationMs = options.generationMs ?? DEFAULT_GENERATION_MS;
  const outputUrlTtlMs = options.outputUrlTtlMs ?? DEFAULT_OUTPUT_URL_TTL_MS;
  const keepPromptImages = options.keepPromptImages ?? false;
  const tier = createTier(options.concurrency, options.dailyLimit);
  const scriptedFailures = createScriptedFailures();
  const secret = randomBytes(32);
  const taskRecords = createTaskRecords((model) => tier.concurrencyOf(model));
  const uploadSlots = new Map<string, UploadSlot>();
  const uploadsByUri = new Map<string, UploadSlot>();
  const completedUploads: UploadSlot[] = [];
  const outputShas = new Map<string, string>();
  const lastOutputExpiry = new Map<string, number>();
  const outputUrlsSeen = new Set<string>();
  let openOutputDownloads = 0;

  function record(req: IncomingMessage, subpath: string, json: unknown, bytes: number): void {
    options.record({
      service: 'runway',
      method: req.method ?? 'GET',
      path: subpath,
      headers: flatHeaders(req),
      json,
      bytes,
      at: Date.now(),
    });
  }

  function outputSize(): number {
    return options.outputBytes ?? sampleVideo().length;
  }

  function outputChunks(taskId: string): Iterable<Buffer> {
    return options.outputBytes === undefined ? [sampleVideo()] : syntheticVideoChunks(taskId, options.outputBytes);
  }

  function outputSha256(taskId: string): string {
    if (!taskRecords.has(taskId)) throw new Error(`unknown sandbox Runway task ${taskId}`);
    let sha = outputShas.get(taskId);
    if (sha === undefined) {
      sha = sha256OfChunks(outputChunks(taskId));
      outputShas.set(taskId, sha);
    }
    return sha;
  }

  /** A new URL on every call, even within one millisecond, as Runway hands out fresh ones. */
  function outputUrl(taskId: string): string {
    const expiresAtMs = Math.max(Date.now() + outputUrlTtlMs, (lastOutputExpiry.get(taskId) ?? 0) + 1);
    lastOutputExpiry.set(taskId, expiresAtMs);
    const sig = signOutput(secret, taskId, expiresAtMs);
    return `${options.publicBaseUrl()}/outputs/${taskId}.mp4?exp=${String(expiresAtMs)}&sig=${sig}`;
  }

  function snapshot(task: TaskRecord): SandboxRunwayTask {
    const nowMs = Date.now();
    const phase = taskRecords.phaseOf(task, nowMs);
    const succeeded = phase.status === 'SUCCEEDED';
    return {
      id: task.id,
      model: task.request.model,
      ratio: task.request.ratio,
      duration: effectiveDurationSeconds(task.request),
      promptText: task.request.promptText,
      promptImageKind: task.promptImageKind,
      promptImage: task.promptImage,
      status: phase.status,
      progress: phase.progress,
      throttledMs: taskRecords.throttledMs(task, nowMs),
      createdAt: new Date(task.timeline.createdAtMs).toISOString(),
      failureCode: phase.failureCode,
      failure: phase.failureCode === undefined ? undefined : failureText(phase.failureCode),
      credits: task.credits,
      outputBytes: succeeded ? outputSize() : undefined,
      get outputSha256() {
        return succeeded ? outputSha256(task.id) : undefined;
      },
      deleted: task.deleted,
      polls: task.polls,
      htmlOutput: task.htmlOutput,
      htmlOutputsServed: task.htmlOutputsServed,
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse, subpath: string): Promise<void> {
    try {
      await route(req, res, subpath);
    } catch (error) {
      if (!res.headersSent) {
        sendJson(res, 500, { error: 'Internal server error', detail: error instanceof Error ? error.message : String(error) });
      } else {
        res.destroy(error instanceof Error ? error : undefined);
      }
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse, subpath: string): Promise<void> {
    const url = new URL(subpath, 'http://runway.sandbox');
    const method = req.method ?? 'GET';

    const uploadTarget = UPLOAD_TARGET_PATH.exec(url.pathname);
    if (uploadTarget !== null) {
      await serveUploadTarget(req, res, subpath, decodeURIComponent(uploadTarget[1] ?? ''));
      return;
    }

    const body = await readBodyUpTo(req, JSON_BODY_MAX_BYTES);
    const json = body.buffer === undefined ? undefined : tryJson(body.buffer);
    record(req, subpath, json, body.bytes);

    const output = OUTPUT_PATH.exec(url.pathname);
    if (output !== null) {
      if (method !== 'GET' && method !== 'HEAD') {
        sendS3Error(res, 405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
        return;
      }
      await serveOutput(res, method, decodeURIComponent(output[1] ?? ''), url.searchParams);
      return;
    }
    if (!url.pathname.startsWith('/v1/')) {
      sendJson(res, 404, { error: 'Not found' });
      return;
    }

    if (chance(rng, faults.error502Rate)) {
      sendJson(res, 502, { error: 'Bad gateway' });
      return;
    }
    if (req.headers.authorization !== `Bearer ${options.apiKey}`) {
      sendJson(res, 401, { error: 'Incorrect or missing API key' });
      return;
    }
    const version = req.headers['x-runway-version'];
    if (version !== RUNWAY_API_VERSION) {
      sendJson(res, 400, {
        error:
          version === undefined
            ? `The X-Runway-Version header is required. Set it to ${RUNWAY_API_VERSION}.`
            : `Invalid API version ${JSON.stringify(version)}. Set the X-Runway-Version header to ${RUNWAY_API_VERSION}.`,
      });
      return;
    }
    if (body.buffer === undefined) {
      sendJson(res, 413, { error: 'Request body too large' });
      return;
    }

    const task = TASK_PATH.exec(url.pathname);
    if (url.pathname === '/v1/image_to_video') {
      if (method !== 'POST') return sendMethodNotAllowed(res, 'POST');
      if (!isJsonRequest(req)) return sendJson(res, 400, { error: 'Content-Type must be application/json' });
      await createTask(res, body.buffer);
    } else if (task !== null) {
      const id = decodeURIComponent(task[1] ?? '');
      if (method === 'GET') getTask(res, id);
      else if (method === 'DELETE') deleteTask(res, id);
      else sendMethodNotAllowed(res, 'GET, DELETE');
    } else if (url.pathname === '/v1/uploads') {
      if (method !== 'POST') return sendMethodNotAllowed(res, 'POST');
      if (!isJsonRequest(req)) return sendJson(res, 400, { error: 'Content-Type must be application/json' });
      createUpload(res, body.buffer);
    } else if (url.pathname === '/v1/organization') {
      if (method !== 'GET') return sendMethodNotAllowed(res, 'GET');
      sendJson(res, 200, organization());
    } else {
      sendJson(res, 404, { error: 'Not found' });
    }
  }

  async function createTask(res: ServerResponse, body: Buffer): Promise<void> {
    const parsed = imageToVideoRequestSchema.safeParse(tryJson(body));
    if (!parsed.success) return sendValidationError(res, toRunwayIssues(parsed.error.issues));
    const request = parsed.data;

    const images = typeof request.promptImage === 'string' ? [request.promptImage] : request.promptImage.map((frame) => frame.uri);
    const received: { verdict: ImageVerdict; bytes: Buffer | undefined }[] = [];
    for (const [index, image] of images.entries()) {
      const path: (string | number)[] =
        typeof request.promptImage === 'string' ? ['promptImage'] : ['promptImage', index, 'uri'];
      const inspected = await inspectPromptImage(image);
      if (inspected.kind === 'invalid') {
        return sendValidationError(res, [{ code: inspected.code, path, message: inspected.message }]);
      }
      if (inspected.verdict !== undefined) received.push({ verdict: inspected.verdict, bytes: inspected.bytes });
    }

    // From here on nothing awaits, so the daily count cannot change between the check and the new task.
    const nowMs = Date.now();
    if (chance(rng, faults.create429Rate) || taskRecords.dailyGenerations(request.model, nowMs) >= tier.dailyLimit) {
      sendJson(res, 429, { error: DAILY_LIMIT_MESSAGE });
      return;
    }

    const id = randomUUID();
    const credits = estimateCredits(request);
    const outcome = planOutcome(request, received.map((image) => image.verdict));
    taskRecords.add({
      id,
      request,
      promptImageKind: promptImageKind(images[0] ?? ''),
      promptImage: received[0]?.verdict.image,
      promptImageBytes: keepPromptImages ? received[0]?.bytes : undefined,
      credits,
      htmlOutput: outcome.kind === 'succeed' && chance(rng, faults.htmlOutputRate),
      timeline: { createdAtMs: nowMs, generationMs, outcome },
      deleted: false,
      polls: 0,
      htmlOutputsServed: 0,
    });
    sendJson(res, 200, { id, estimatedCost: { credits } });
  }

  /**
   * A test's script wins over everything; then an unusable input, which Runway finds
   * first; then markers and the picture itself; then the random faults.
   */
  function planOutcome(request: ImageToVideoRequest, verdicts: readonly ImageVerdict[]): TaskOutcome {
    const scripted = scriptedFailures.take(request.promptText);
    if (scripted !== undefined) return failureOutcome(scripted);
    const inputFailure =
      verdicts.find((verdict) => verdict.failureCode === ASSET_INVALID)?.failureCode ??
      findFailureMarker(request.promptText ?? '') ??
      verdicts.find((verdict) => verdict.failureCode !== undefined)?.failureCode;
    if (inputFailure !== undefined) return failureOutcome(inputFailure);
    const transient = drawTransientFailure(rng, faults.transientFailureRate);
    if (transient !== undefined) return failureOutcome(transient);
    if (chance(rng, faults.safetyRate)) return { kind: 'fail-output', failureCode: 'SAFETY.OUTPUT.VIDEO' };
    if (chance(rng, faults.neverFinishRate)) return { kind: 'never-finish' };
    return { kind: 'succeed' };
  }

  /** https URLs are not fetched: Runway would, but the sandbox never leaves the machine. */
  async function inspectPromptImage(image: string): Promise<InspectedImage> {
    const kind = promptImageKind(image);
    if (kind === 'https') return { kind: 'ok', verdict: undefined, bytes: undefined };
    if (kind === 'data') {
      const bytes = decodeDataUri(image);
      const verdict = await checkImage(bytes);
      if (verdict === undefined) {
        return { kind: 'invalid', code: 'ASSET.INVALID', message: 'Invalid asset: the data URI is not a JPEG, PNG or WebP image' };
      }
      return { kind: 'ok', verdict, bytes };
    }
    const slot = uploadsByUri.get(image);
    if (slot?.received === undefined || Date.now() > slot.createdAtMs + UPLOAD_URI_TTL_MS) {
      return { kind: 'invalid', code: 'ASSET.NOT_FOUND', message: 'Invalid asset: the runway:// URI does not exist or has expired' };
    }
    if (slot.received.verdict === undefined) {
      return { kind: 'invalid', code: 'ASSET.INVALID', message: 'Invalid asset: the uploaded file is not a JPEG, PNG or WebP image' };
    }
    return { kind: 'ok', verdict: slot.received.verdict, bytes: slot.received.kept };
  }

  function getTask(res: ServerResponse, id: string): void {
    const task = taskRecords.get(id);
    if (task === undefined || task.deleted) {
      if (task !== undefined) task.polls += 1;
      sendJson(res, 404, { error: 'Task not found' });
      return;
    }
    task.polls += 1;
    const phase = taskRecords.phaseOf(task, Date.now());
    sendJson(res, 200, {
      id: task.id,
      status: phase.status,
      createdAt: new Date(task.timeline.createdAtMs).toISOString(),
      ...(phase.progress === undefined ? {} : { progress: phase.progress }),
      ...(phase.status === 'SUCCEEDED' ? { output: [outputUrl(task.id)] } : {}),
      ...(phase.failureCode === undefined ? {} : { failure: failureText(phase.failureCode), failureCode: phase.failureCode }),
      estimatedCost: { credits: task.credits },
      // What the task was charged, once it has made its video. A failed or cancelled task is
      // refunded (see organization()), and names no cost.
      ...(phase.status === 'SUCCEEDED' ? { cost: { credits: task.credits } } : {}),
    });
  }

  /** Runway's DELETE cancels a task still in flight and deletes a finished one; both then 404. */
  function deleteTask(res: ServerResponse, id: string): void {
    const task = taskRecords.get(id);
    if (task === undefined || task.deleted) {
      sendJson(res, 404, { error: 'Task not found' });
      return;
    }
    taskRecords.cancel(task, Date.now());
    task.deleted = true;
    res.writeHead(204);
    res.end();
  }

  function createUpload(res: ServerResponse, body: Buffer): void {
    const parsed = uploadRequestSchema.safeParse(tryJson(body));
    if (!parsed.success) return sendValidationError(res, toRunwayIssues(parsed.error.issues));
    const slot = createUploadSlot(parsed.data.filename, secret, Date.now());
    uploadSlots.set(slot.id, slot);
    uploadsByUri.set(slot.runwayUri, slot);
    sendJson(res, 200, {
      uploadUrl: `${options.publicBaseUrl()}/upload-target/${slot.id}`,
      fields: slot.fields,
      runwayUri: slot.runwayUri,
    });
  }

  async function serveUploadTarget(req: IncomingMessage, res: ServerResponse, subpath: string, id: string): Promise<void> {
    const slot = uploadSlots.get(id);
    if (req.method !== 'POST' || slot === undefined) {
      const drained = await readBodyUpTo(req, 0);
      record(req, subpath, undefined, drained.bytes);
      if (slot === undefined) sendS3Error(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
      else sendS3Error(res, 405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
      return;
    }
    const outcome = await receiveUpload(slot, req, Date.now(), { keepBytes: keepPromptImages });
    record(req, subpath, undefined, outcome.requestBytes);
    if (outcome.kind === 'rejected') {
      sendS3Error(res, outcome.status, outcome.code, outcome.message);
      return;
    }
    if (slot.received === undefined) completedUploads.push(slot);
    slot.received = outcome.upload;
    res.writeHead(204);
    res.end();
  }

  async function serveOutput(res: ServerResponse, method: string, taskId: string, query: URLSearchParams): Promise<void> {
    const task = taskRecords.get(taskId);
    const expiresAtMs = Number(query.get('exp') ?? '');
    const signature = query.get('sig') ?? '';
    if (!Number.isSafeInteger(expiresAtMs) || !isOutputSignatureValid(secret, taskId, expiresAtMs, signature)) {
      sendS3Error(res, 403, 'AccessDenied', 'Access denied: invalid signature');
      return;
    }
    if (Date.now() > expiresAtMs) {
      sendS3Error(res, 403, 'AccessDenied', 'Request has expired');
      return;
    }
    if (task === undefined || task.deleted) {
      sendS3Error(res, 404, 'NoSuchKey', 'The specified key does not exist.');
      return;
    }
    const urlKey = `${taskId}:${String(expiresAtMs)}`;
    const firstFetch = !outputUrlsSeen.has(urlKey);
    outputUrlsSeen.add(urlKey);
    if (firstFetch && chance(rng, faults.outputForbiddenRate)) {
      sendS3Error(res, 403, 'AccessDenied', 'Access denied');
      return;
    }
    if (task.htmlOutput || (firstFetch && chance(rng, faults.htmlOutputFirstFetchRate))) {
      task.htmlOutputsServed += 1;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': CDN_ERROR_PAGE.length, 'cache-control': 'no-store' });
      res.end(method === 'HEAD' ? undefined : CDN_ERROR_PAGE);
      return;
    }

    res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': outputSize(), 'cache-control': 'private, max-age=86400' });
    if (method === 'HEAD') {
      res.end();
      return;
    }
    const hash = outputShas.has(taskId) ? undefined : createHash('sha256');
    openOutputDownloads += 1;
    try {
      await pipeline(Readable.from(tapChunks(outputChunks(taskId), hash)), res);
    } finally {
      openOutputDownloads -= 1;
    }
    if (hash !== undefined) outputShas.set(taskId, hash.digest('hex'));
  }

  function organization(): unknown {
    const nowMs = Date.now();
    let spent = 0;
    for (const task of taskRecords.all()) {
      const status = taskRecords.phaseOf(task, nowMs).status;
      // Credits are held while a task waits or runs, and refunded when it fails or is cancelled.
      if (status !== 'FAILED' && status !== 'CANCELLED') spent += task.credits;
    }
    return organizationBody(tier, STARTING_CREDIT_BALANCE - spent, (model) => taskRecords.dailyGenerations(model, nowMs));
  }

  return {
    handle,
    tasks: () => taskRecords.all().map(snapshot),
    task: (id) => {
      const task = taskRecords.get(id);
      return task === undefined ? undefined : snapshot(task);
    },
    outputSha256,
    uploads: () =>
      completedUploads.map((slot) => ({ runwayUri: slot.runwayUri, filename: slot.filename, bytes: slot.received?.bytes ?? 0 })),
    promptImageBytes: (taskId) => taskRecords.get(taskId)?.promptImageBytes,
    failNextTasks: (failure) => scriptedFailures.add(failure),
    maxThrottledAtOnce: (model) => taskRecords.maxThrottledAtOnce(model, Date.now()),
    maxActiveAtOnce: (model) => taskRecords.maxActiveAtOnce(model, Date.now()),
    outputDownloadsOpen: () => openOutputDownloads,
  };
}
