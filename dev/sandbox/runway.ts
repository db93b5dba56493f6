import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { flatHeaders, sendJson, tryJson, type RecordedRequest } from './http-util.js';
import { chance, createRng } from './random.js';
import {
  isJsonRequest,
  readBodyUpTo,
  sendMethodNotAllowed,
  sendS3Error,
  sendValidationError,
} from './runway-http.js';
import {
  effectiveDurationSeconds,
  estimateCredits,
  imageToVideoRequestSchema,
  RUNWAY_API_VERSION,
  RUNWAY_MODELS,
  toRunwayIssues,
  uploadRequestSchema,
  type ImageToVideoRequest,
  type RunwayModel,
} from './runway-models.js';
import {
  isOutputSignatureValid,
  sampleVideo,
  sha256OfChunks,
  signOutput,
  syntheticVideoChunks,
  tapChunks,
} from './runway-output.js';
import {
  decodeDataUri,
  failureText,
  findFailureMarker,
  MARKER_SCAN_BYTES,
  promptImageKind,
  sniffImageFormat,
  type PromptImageKind,
} from './runway-prompt-image.js';
import { isTerminal, taskPhaseAt, type RunwayTaskStatus, type TaskOutcome, type TaskTimeline } from './runway-task-timeline.js';
import { createUploadSlot, receiveUpload, UPLOAD_URI_TTL_MS, type UploadSlot } from './runway-uploads.js';

export type { RunwayModel } from './runway-models.js';
export type { PromptImageKind } from './runway-prompt-image.js';
export type { RunwayTaskStatus } from './runway-task-timeline.js';

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
}

export interface SandboxRunwayOptions {
  apiKey: string;
  /** Base URL of the mount, e.g. `http://127.0.0.1:P/runway`; known only once the server listens. */
  publicBaseUrl: () => string;
  record: (request: RecordedRequest) => void;
  /** Drives fault injection; default `createRng(1)`. */
  rng?: () => number;
  faults?: SandboxRunwayFaults;
  /** Time from create to SUCCEEDED; default 8000. */
  generationMs?: number;
  /** When set, outputs are generated MP4-typed streams of this many bytes instead of the sample clip. */
  outputBytes?: number;
  /** Lifetime of output URLs; default 24 h, the short end of Runway's 24-48 h. */
  outputUrlTtlMs?: number;
}

export interface SandboxRunwayTask {
  readonly id: string;
  readonly model: RunwayModel;
  readonly ratio: string;
  /** Seconds, with the model's default applied when the request had none. */
  readonly duration: number;
  readonly promptText: string | undefined;
  readonly promptImageKind: PromptImageKind;
  readonly status: RunwayTaskStatus;
  readonly progress: number | undefined;
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
}

interface TaskRecord {
  readonly id: string;
  readonly request: ImageToVideoRequest;
  readonly promptImageKind: PromptImageKind;
  readonly credits: number;
  timeline: TaskTimeline;
  deleted: boolean;
  polls: number;
}

const DEFAULT_GENERATION_MS = 8000;
const DEFAULT_OUTPUT_URL_TTL_MS = 24 * 60 * 60 * 1000;
/** Large enough for a data URI at its 5,242,880-character limit plus the rest of the JSON. */
const JSON_BODY_MAX_BYTES = 8 * 1024 * 1024;
const STARTING_CREDIT_BALANCE = 100_000;
const TIER_LIMITS = { maxConcurrentGenerations: 5, maxDailyGenerations: 1000 } as const;
const DAY_MS = 24 * 60 * 60 * 1000;

const TASK_PATH = /^\/v1\/tasks\/([^/]+)$/;
const OUTPUT_PATH = /^\/outputs\/([^/]+)\.mp4$/;
const UPLOAD_TARGET_PATH = /^\/upload-target\/([^/]+)$/;

export function createSandboxRunway(options: SandboxRunwayOptions): SandboxRunway {
  const rng = options.rng ?? createRng(1);
  const faults = options.faults ?? {};
  const generationMs = options.generationMs ?? DEFAULT_GENERATION_MS;
  const outputUrlTtlMs = options.outputUrlTtlMs ?? DEFAULT_OUTPUT_URL_TTL_MS;
  const secret = randomBytes(32);
  const taskRecords = new Map<string, TaskRecord>();
  const uploadSlots = new Map<string, UploadSlot>();
  const uploadsByUri = new Map<string, UploadSlot>();
  const completedUploads: UploadSlot[] = [];
  const outputShas = new Map<string, string>();
  const lastOutputExpiry = new Map<string, number>();
  const outputUrlsSeen = new Set<string>();

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
    const phase = taskPhaseAt(task.timeline, Date.now());
    const succeeded = phase.status === 'SUCCEEDED';
    return {
      id: task.id,
      model: task.request.model,
      ratio: task.request.ratio,
      duration: effectiveDurationSeconds(task.request),
      promptText: task.request.promptText,
      promptImageKind: task.promptImageKind,
      status: phase.status,
      progress: phase.progress,
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
      createTask(res, body.buffer);
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

  function createTask(res: ServerResponse, body: Buffer): void {
    const parsed = imageToVideoRequestSchema.safeParse(tryJson(body));
    if (!parsed.success) return sendValidationError(res, toRunwayIssues(parsed.error.issues));
    const request = parsed.data;

    const images = typeof request.promptImage === 'string' ? [request.promptImage] : request.promptImage.map((frame) => frame.uri);
    let failureCode = findFailureMarker(request.promptText ?? '');
    for (const [index, image] of images.entries()) {
      const path: (string | number)[] =
        typeof request.promptImage === 'string' ? ['promptImage'] : ['promptImage', index, 'uri'];
      const inspected = inspectPromptImage(image);
      if (inspected.kind === 'invalid') {
        return sendValidationError(res, [{ code: inspected.code, path, message: inspected.message }]);
      }
      failureCode ??= inspected.failureMarker;
    }

    if (chance(rng, faults.create429Rate)) {
      sendJson(res, 429, {
        error: 'You have exceeded the daily task limit for this model. Please try again tomorrow or contact sales to raise your limit.',
      });
      return;
    }

    let outcome: TaskOutcome = { kind: 'succeed' };
    if (failureCode !== undefined) outcome = { kind: 'fail-input', failureCode };
    else if (chance(rng, faults.safetyRate)) outcome = { kind: 'fail-output', failureCode: 'SAFETY.OUTPUT.VIDEO' };
    else if (chance(rng, faults.neverFinishRate)) outcome = { kind: 'never-finish' };

    const id = randomUUID();
    const credits = estimateCredits(request);
    taskRecords.set(id, {
      id,
      request,
      promptImageKind: promptImageKind(images[0] ?? ''),
      credits,
      timeline: { createdAtMs: Date.now(), generationMs, outcome },
      deleted: false,
      polls: 0,
    });
    sendJson(res, 200, { id, estimatedCost: { credits } });
  }

  type InspectedImage =
    | { readonly kind: 'ok'; readonly failureMarker: string | undefined }
    | { readonly kind: 'invalid'; readonly code: string; readonly message: string };

  function inspectPromptImage(image: string): InspectedImage {
    const kind = promptImageKind(image);
    if (kind === 'https') return { kind: 'ok', failureMarker: undefined };
    if (kind === 'data') {
      const bytes = decodeDataUri(image);
      if (sniffImageFormat(bytes) === undefined) {
        return { kind: 'invalid', code: 'ASSET.INVALID', message: 'Invalid asset: the data URI is not a JPEG, PNG or WebP image' };
      }
      return { kind: 'ok', failureMarker: findFailureMarker(bytes.subarray(0, MARKER_SCAN_BYTES)) };
    }
    const slot = uploadsByUri.get(image);
    if (slot?.received === undefined || Date.now() > slot.createdAtMs + UPLOAD_URI_TTL_MS) {
      return { kind: 'invalid', code: 'ASSET.NOT_FOUND', message: 'Invalid asset: the runway:// URI does not exist or has expired' };
    }
    if (slot.received.format === undefined) {
      return { kind: 'invalid', code: 'ASSET.INVALID', message: 'Invalid asset: the uploaded file is not a JPEG, PNG or WebP image' };
    }
    return { kind: 'ok', failureMarker: slot.received.failureMarker };
  }

  function getTask(res: ServerResponse, id: string): void {
    const task = taskRecords.get(id);
    if (task === undefined || task.deleted) {
      if (task !== undefined) task.polls += 1;
      sendJson(res, 404, { error: 'Task not found' });
      return;
    }
    task.polls += 1;
    const phase = taskPhaseAt(task.timeline, Date.now());
    sendJson(res, 200, {
      id: task.id,
      status: phase.status,
      createdAt: new Date(task.timeline.createdAtMs).toISOString(),
      ...(phase.progress === undefined ? {} : { progress: phase.progress }),
      ...(phase.status === 'SUCCEEDED' ? { output: [outputUrl(task.id)] } : {}),
      ...(phase.failureCode === undefined ? {} : { failure: failureText(phase.failureCode), failureCode: phase.failureCode }),
      estimatedCost: { credits: task.credits },
    });
  }

  /** Runway's DELETE cancels a task still in flight and deletes a finished one; both then 404. */
  function deleteTask(res: ServerResponse, id: string): void {
    const task = taskRecords.get(id);
    if (task === undefined || task.deleted) {
      sendJson(res, 404, { error: 'Task not found' });
      return;
    }
    const nowMs = Date.now();
    if (!isTerminal(taskPhaseAt(task.timeline, nowMs).status)) task.timeline = { ...task.timeline, cancelledAtMs: nowMs };
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
    const outcome = await receiveUpload(slot, req, Date.now());
    record(req, subpath, undefined, outcome.requestBytes);
    if (outcome.kind === 'rejected') {
      sendS3Error(res, outcome.status, outcome.code, outcome.message);
      return;
    }
    if (slot.received === undefined) completedUploads.push(slot);
    slot.received = outcome.image;
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

    res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': outputSize(), 'cache-control': 'private, max-age=86400' });
    if (method === 'HEAD') {
      res.end();
      return;
    }
    const hash = outputShas.has(taskId) ? undefined : createHash('sha256');
    await pipeline(Readable.from(tapChunks(outputChunks(taskId), hash)), res);
    if (hash !== undefined) outputShas.set(taskId, hash.digest('hex'));
  }

  function organization(): unknown {
    const nowMs = Date.now();
    const dayStartMs = nowMs - (nowMs % DAY_MS);
    let spent = 0;
    const daily = new Map<RunwayModel, number>();
    for (const task of taskRecords.values()) {
      const status = taskPhaseAt(task.timeline, nowMs).status;
      // Credits are held while a task runs and refunded when it fails or is cancelled.
      if (status !== 'FAILED' && status !== 'CANCELLED') spent += task.credits;
      if (task.timeline.createdAtMs >= dayStartMs) {
        daily.set(task.request.model, (daily.get(task.request.model) ?? 0) + 1);
      }
    }
    return {
      creditBalance: STARTING_CREDIT_BALANCE - spent,
      tier: { models: Object.fromEntries(RUNWAY_MODELS.map((model) => [model, { ...TIER_LIMITS }])) },
      usage: { models: Object.fromEntries(RUNWAY_MODELS.map((model) => [model, { dailyGenerations: daily.get(model) ?? 0 }])) },
    };
  }

  return {
    handle,
    tasks: () => [...taskRecords.values()].map(snapshot),
    task: (id) => {
      const task = taskRecords.get(id);
      return task === undefined ? undefined : snapshot(task);
    },
    outputSha256,
    uploads: () =>
      completedUploads.map((slot) => ({ runwayUri: slot.runwayUri, filename: slot.filename, bytes: slot.received?.bytes ?? 0 })),
  };
}
