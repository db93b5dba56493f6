import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { chance } from './random.js';
import { flatHeaders, readBody, sendJson, tryJson } from './http-util.js';
import type { RecordedRequest } from './http-util.js';
import type { SandboxStorage } from './storage.js';

export type ItemStatus = 'pending' | 'processing' | 'completed' | 'failed';

export interface AppFaults {
  /** Answer the route's real 500 body (`APP_500_ERRORS`) without applying anything. */
  readonly error500Rate?: number;
  /**
   * Calls in a row, for one route and item, that a fired `error500Rate` fails (default 1):
   * the next `length - 1` calls for the same route and item answer the same 500 without a
   * draw. next-task has no item: its run covers the route.
   */
  readonly error500RunLength?: number;
  /** Hold the request unanswered for `hangMs`, then destroy the socket; nothing is applied. */
  readonly timeoutRate?: number;
  /** Apply the change, then lose the answer (socket destroyed, or a 502 from the edge). */
  readonly lostResponseRate?: number;
  readonly hangMs?: number;
}

export interface SandboxAppOptions {
  readonly workerApiKey: string;
  readonly storage: SandboxStorage;
  readonly rng: () => number;
  readonly faults?: AppFaults;
  readonly record?: (request: RecordedRequest) => void;
}

/** One `/worker/report` call that reached the report logic, kept because reports are not idempotent. */
export interface ReportRecord {
  readonly at: string;
  readonly item_id: string;
  readonly worker_id: string;
  readonly status: 'completed' | 'failed';
  readonly video_storage_path: string | null;
  readonly error_message: string | null;
  readonly veo_operation_id: string | null;
  /** The HTTP status the app decided on (before any lost-response fault). */
  readonly httpStatus: number;
  readonly applied: boolean;
  /** The change was applied but the worker never saw the answer (fault). */
  readonly responseLost: boolean;
}

export interface WorkItem {
  readonly item_id: string;
  readonly group_id: string;
  readonly photo_id: string;
  readonly prompt: string;
  readonly photo_storage_path: string;
  readonly frame_num: number | null;
  readonly inference_provider?: string;
  readonly status: ItemStatus;
  readonly leased_until: string | null;
  readonly worker_id: string | null;
  readonly retry_count: number;
  readonly error_message: string | null;
  readonly video_storage_path: string | null;
  /** The 7-day signed URL the app stores on completion. */
  readonly video_url: string | null;
  readonly veo_operation_id: string | null;
  readonly created_at: string;
  readonly completed_at: string | null;
  readonly reports: readonly ReportRecord[];
}

export interface NewItem {
  readonly item_id?: string;
  readonly group_id: string;
  readonly photo_id: string;
  readonly prompt: string;
  readonly photo_storage_path: string;
  readonly frame_num?: number | null;
  readonly inference_provider?: string;
  readonly status?: ItemStatus;
  readonly retry_count?: number;
  readonly created_at?: string;
}

/** The app's routes as its failures tell them apart: presign fails differently per operation. */
export type AppFaultRoute = 'next-task' | 'presign-download' | 'presign-upload' | 'heartbeat' | 'report';

/**
 * The real app's 500 body per route when a database or storage call fails (contract §1).
 * A transient failure of the download presign reads exactly like a missing photo.
 */
export const APP_500_ERRORS: Readonly<Record<AppFaultRoute, string>> = {
  'next-task': 'Failed to fetch tasks',
  'presign-download': 'Failed to generate download URL',
  'presign-upload': 'Failed to generate upload URL',
  heartbeat: 'Internal server error',
  report: 'Failed to update task',
};

export interface SandboxApp {
  handle(req: IncomingMessage, res: ServerResponse, subpath: string): Promise<void>;
  /**
   * The next `count` calls of `route` (for that item, when given) answer the route's real 500
   * body without applying anything. A download presign belongs to every item with that photo.
   */
  failNext(route: AppFaultRoute, count: number, options?: { readonly itemId?: string }): void;
  addItem(item: NewItem): WorkItem;
  items(): readonly WorkItem[];
  item(itemId: string): WorkItem | undefined;
  /** The admin page's manual retry: a failed item goes back to pending (retry_count kept unless reset). */
  adminRetry(itemId: string, options?: { readonly resetRetryCount?: boolean }): WorkItem;
  /** What the admin queue page does to an item: failed, worker_id cleared. */
  adminFail(itemId: string, errorMessage?: string): WorkItem;
  /** Moves the lease into the past so the item is leasable again. */
  expireLease(itemId: string): WorkItem;
  /** Every report that reached the report logic, for one item or for all. */
  reports(itemId?: string): readonly ReportRecord[];
}

export const DEFAULT_LEASE_SECONDS = 600;
export const DEFAULT_EXTEND_SECONDS = 300;
export const MAX_RETRY_COUNT = 3;
export const PRESIGN_EXPIRES_IN_SECONDS = 3600;
export const VIDEO_URL_TTL_SECONDS = 7 * 24 * 3600;
export const DEFAULT_HANG_MS = 30_000;

interface Envelope {
  readonly success: boolean;
  readonly data?: unknown;
  readonly error?: string;
}

interface Answer {
  readonly status: number;
  readonly body: Envelope;
}

type Route = 'next-task' | 'presign' | 'heartbeat' | 'report';
const ROUTES: readonly Route[] = ['next-task', 'presign', 'heartbeat', 'report'];

interface ItemState {
  readonly item_id: string;
  readonly group_id: string;
  readonly photo_id: string;
  readonly prompt: string;
  readonly photo_storage_path: string;
  readonly frame_num: number | null;
  readonly inference_provider: string | undefined;
  readonly createdAtMs: number;
  readonly sequence: number;
  status: ItemStatus;
  leasedUntilMs: number | null;
  worker_id: string | null;
  retry_count: number;
  error_message: string | null;
  video_storage_path: string | null;
  video_url: string | null;
  veo_operation_id: string | null;
  completedAtMs: number | null;
  reports: ReportRecord[];
}

type Body = Readonly<Record<string, unknown>>;

const ok = (data: unknown): Answer => ({ status: 200, body: { success: true, data } });
const fail = (status: number, error: string): Answer => ({ status, body: { success: false, error } });
const INTERNAL_ERROR = fail(500, 'Internal server error');

function routeOf(subpath: string): Route | undefined {
  const pathname = new URL(subpath, 'http://sandbox.invalid').pathname.replace(/\/+$/, '');
  const match = /^\/worker\/([a-z-]+)$/.exec(pathname);
  const name = match?.[1];
  return ROUTES.find((route) => route === name);
}

/** What a call is about, for failures that hit one route and item. */
interface FaultTarget {
  readonly route: AppFaultRoute;
  /** Runs are kept per route and this (an item id, or a photo path for a download presign). */
  readonly subject: string;
  /** The items the call concerns. */
  readonly itemIds: readonly string[];
}

interface ScriptedFailure {
  readonly route: AppFaultRoute;
  readonly itemId: string | undefined;
  remaining: number;
}

/**
 * Mirrors `await request.json()` then destructuring: an unparsable body or `null` throws
 * (500), an empty body is treated as `{}` so a bare key check reaches the field validation.
 */
function parseBody(raw: Buffer): Body | undefined {
  if (raw.length === 0) return {};
  const json = tryJson(raw);
  if (json === undefined || json === null) return undefined;
  if (typeof json !== 'object') return {};
  return json as Body;
}

function text(body: Body, key: string): string | undefined {
  const value = body[key];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** JS arithmetic on whatever arrived, as the app's `now + seconds * 1000` does; NaN is a server error. */
function seconds(body: Body, key: string, fallback: number): number | undefined {
  const value = body[key];
  if (value === undefined) return fallback;
  const parsed = Number(value);
  return Number.isFinite(parsed) ? parsed : undefined;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function toWorkItem(state: ItemState): WorkItem {
  return {
    item_id: state.item_id,
    group_id: state.group_id,
    photo_id: state.photo_id,
    prompt: state.prompt,
    photo_storage_path: state.photo_storage_path,
    frame_num: state.frame_num,
    ...(state.inference_provider === undefined ? {} : { inference_provider: state.inference_provider }),
    status: state.status,
    leased_until: iso(state.leasedUntilMs),
    worker_id: state.worker_id,
    retry_count: state.retry_count,
    error_message: state.error_message,
    video_storage_path: state.video_storage_path,
    video_url: state.video_url,
    veo_operation_id: state.veo_operation_id,
    created_at: new Date(state.createdAtMs).toISOString(),
    completed_at: iso(state.completedAtMs),
    reports: [...state.reports],
  };
}

/**
 * The app's worker API (contract §1), quirks included: POST only, `Worker <key>` auth,
 * the `{ success, data, error }` envelope, a non-atomic lease, heartbeats that set the
 * lease from now, and reports that are not idempotent.
 */
export function createSandboxApp(options: SandboxAppOptions): SandboxApp {
  const { storage, rng } = options;
  const faults = options.faults ?? {};
  const items = new Map<string, ItemState>();
  const allReports: ReportRecord[] = [];
  const scripted: ScriptedFailure[] = [];
  /** Failures left in a run started by `error500Rate`, per route and subject. */
  const runs = new Map<string, number>();
  let sequence = 0;

  function stateOf(itemId: string): ItemState {
    const state = items.get(itemId);
    if (!state) throw new Error(`sandbox app: no item ${itemId}`);
    return state;
  }

  function isLeasable(state: ItemState, now: number): boolean {
    if (state.retry_count >= MAX_RETRY_COUNT) return false;
    if (state.status === 'pending') return true;
    return state.status === 'processing' && (state.leasedUntilMs === null || state.leasedUntilMs <= now);
  }

  function nextTask(body: Body): Answer {
    const workerId = text(body, 'worker_id');
    if (workerId === undefined) return fail(400, 'worker_id is required');
    const leaseSeconds = seconds(body, 'lease_duration_seconds', DEFAULT_LEASE_SECONDS);
    if (leaseSeconds === undefined) return fail(500, 'Failed to assign task');
    const now = Date.now();
    const [oldest] = [...items.values()]
      .filter((state) => isLeasable(state, now))
      .sort((a, b) => a.createdAtMs - b.createdAtMs || a.sequence - b.sequence);
    if (!oldest) return ok(null);
    oldest.status = 'processing';
    oldest.leasedUntilMs = now + leaseSeconds * 1000;
    oldest.worker_id = workerId;
    return ok({
      item_id: oldest.item_id,
      group_id: oldest.group_id,
      photo_id: oldest.photo_id,
      prompt: oldest.prompt,
      leased_until: iso(oldest.leasedUntilMs),
      photo_storage_path: oldest.photo_storage_path,
      frame_num: oldest.frame_num,
      ...(oldest.inference_provider === undefined ? {} : { inference_provider: oldest.inference_provider }),
    });
  }

  function presign(body: Body): Answer {
    const operation = body['operation'];
    if (operation === 'download') {
      const storagePath = text(body, 'storage_path');
      if (storagePath === undefined) return fail(400, 'storage_path is required for download');
      if (!storage.has('group-photos', storagePath)) return fail(500, 'Failed to generate download URL');
      return ok({
        url: storage.signDownload('group-photos', storagePath, PRESIGN_EXPIRES_IN_SECONDS),
        expires_in: PRESIGN_EXPIRES_IN_SECONDS,
      });
    }
    if (operation === 'upload') {
      const itemId = text(body, 'video_item_id');
      if (itemId === undefined) return fail(400, 'video_item_id is required for upload');
      const extension = text(body, 'file_extension') ?? 'mp4';
      const storagePath = `videos/${itemId}.${extension}`;
      // Upsert is off: Supabase refuses to sign an upload for a path that already exists.
      if (storage.has('generated-videos', storagePath)) return fail(500, 'Failed to generate upload URL');
      return ok({
        url: storage.signUpload('generated-videos', storagePath),
        storage_path: storagePath,
        expires_in: PRESIGN_EXPIRES_IN_SECONDS,
      });
    }
    return fail(400, 'Invalid operation. Must be "download" or "upload"');
  }

  function heartbeat(body: Body): Answer {
    const itemId = text(body, 'item_id');
    const workerId = text(body, 'worker_id');
    if (itemId === undefined || workerId === undefined) return fail(400, 'item_id and worker_id are required');
    const extendSeconds = seconds(body, 'extend_seconds', DEFAULT_EXTEND_SECONDS);
    if (extendSeconds === undefined) return INTERNAL_ERROR;
    const state = items.get(itemId);
    if (!state || state.status !== 'processing' || state.worker_id !== workerId) {
      return fail(404, `Failed to extend lease for item ${itemId}`);
    }
    // From now, not added to the old lease: a short extension shortens it, 0 releases it.
    state.leasedUntilMs = Date.now() + extendSeconds * 1000;
    return ok({ leased_until: iso(state.leasedUntilMs) });
  }

  function report(body: Body): { readonly answer: Answer; readonly record?: ReportRecord } {
    const itemId = text(body, 'item_id');
    const workerId = text(body, 'worker_id');
    const status = body['status'];
    if (itemId === undefined || workerId === undefined || status === undefined) {
      return { answer: fail(400, 'item_id, worker_id, and status are required') };
    }
    if (status !== 'completed' && status !== 'failed') {
      return { answer: fail(400, 'Invalid status. Must be "completed" or "failed"') };
    }
    const videoPath = text(body, 'video_storage_path') ?? null;
    const errorMessage = text(body, 'error_message') ?? null;
    const operationId = text(body, 'veo_operation_id') ?? null;
    const record = (answer: Answer, applied: boolean): ReportRecord => ({
      at: new Date().toISOString(),
      item_id: itemId,
      worker_id: workerId,
      status,
      video_storage_path: videoPath,
      error_message: errorMessage,
      veo_operation_id: operationId,
      httpStatus: answer.status,
      applied,
      responseLost: false,
    });
    const decide = (answer: Answer, applied: boolean): { answer: Answer; record: ReportRecord } => ({
      answer,
      record: record(answer, applied),
    });

    const state = items.get(itemId);
    if (!state) return decide(fail(404, 'Video item not found'), false);
    // Only the worker id is checked: not the status, not the lease (contract §1.4).
    if (state.worker_id !== workerId) return decide(fail(403, 'Worker ID mismatch'), false);
    if (status === 'completed') {
      if (videoPath === null) return decide(fail(400, 'video_storage_path is required for completed status'), false);
      if (!storage.has('generated-videos', videoPath)) return decide(fail(500, 'Failed to generate video URL'), false);
      state.status = 'completed';
      state.video_storage_path = videoPath;
      state.video_url = storage.signDownload('generated-videos', videoPath, VIDEO_URL_TTL_SECONDS);
      state.completedAtMs = Date.now();
      if (operationId !== null) state.veo_operation_id = operationId;
    } else {
      state.status = 'failed';
      state.error_message = errorMessage ?? 'Unknown error';
      state.retry_count += 1;
      if (operationId !== null) state.veo_operation_id = operationId;
    }
    return decide(ok({ message: `Video item marked as ${status}`, item_id: itemId }), true);
  }

  function keepReport(entry: ReportRecord): void {
    allReports.push(entry);
    items.get(entry.item_id)?.reports.push(entry);
  }

  function markResponseLost(entry: ReportRecord): void {
    const lost = { ...entry, responseLost: true };
    const replace = (list: ReportRecord[]): void => {
      const index = list.lastIndexOf(entry);
      if (index !== -1) list[index] = lost;
    };
    replace(allReports);
    const state = items.get(entry.item_id);
    if (state) replace(state.reports);
  }

  function hang(res: ServerResponse): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        res.destroy();
        resolve();
      }, faults.hangMs ?? DEFAULT_HANG_MS);
      res.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  function loseResponse(res: ServerResponse): void {
    if (rng() < 0.5) {
      res.destroy();
      return;
    }
    sendJson(res, 502, { success: false, error: 'Bad gateway' });
  }

  function faultTargetOf(route: Route, body: Body): FaultTarget | undefined {
    switch (route) {
      case 'next-task':
        return { route, subject: '', itemIds: [] };
      case 'presign': {
        if (body['operation'] === 'upload') {
          const itemId = text(body, 'video_item_id') ?? '';
          return { route: 'presign-upload', subject: itemId, itemIds: [itemId] };
        }
        // An unknown operation is refused with 400 before any call that could fail.
        if (body['operation'] !== 'download') return undefined;
        const photoPath = text(body, 'storage_path') ?? '';
        const itemIds = [...items.values()].filter((state) => state.photo_storage_path === photoPath).map((state) => state.item_id);
        return { route: 'presign-download', subject: photoPath, itemIds };
      }
      case 'heartbeat':
      case 'report': {
        const itemId = text(body, 'item_id') ?? '';
        return { route, subject: itemId, itemIds: [itemId] };
      }
    }
  }

  /** Scripted failures first, then a run in progress, then a fresh draw of `error500Rate`. */
  function failsWith500(target: FaultTarget): boolean {
    const script = scripted.find(
      (entry) => entry.route === target.route && (entry.itemId === undefined || target.itemIds.includes(entry.itemId)),
    );
    if (script) {
      script.remaining -= 1;
      if (script.remaining <= 0) scripted.splice(scripted.indexOf(script), 1);
      return true;
    }
    const runKey = `${target.route}\u0000${target.subject}`;
    const left = runs.get(runKey) ?? 0;
    if (left > 0) {
      if (left === 1) runs.delete(runKey);
      else runs.set(runKey, left - 1);
      return true;
    }
    if (!chance(rng, faults.error500Rate)) return false;
    const runLength = Math.max(1, Math.floor(faults.error500RunLength ?? 1));
    if (runLength > 1) runs.set(runKey, runLength - 1);
    return true;
  }

  async function handle(req: IncomingMessage, res: ServerResponse, subpath: string): Promise<void> {
    const at = Date.now();
    const raw = await readBody(req);
    options.record?.({
      service: 'app',
      method: req.method ?? '',
      path: subpath,
      headers: flatHeaders(req),
      json: tryJson(raw),
      bytes: raw.length,
      at,
    });

    const route = routeOf(subpath);
    if (route === undefined) {
      sendEnvelope(res, fail(404, 'Not found'));
      return;
    }
    if (req.method !== 'POST') {
      sendEnvelope(res, fail(405, 'Method not allowed'), { allow: 'POST' });
      return;
    }
    if (req.headers.authorization !== `Worker ${options.workerApiKey}`) {
      sendEnvelope(res, fail(401, 'Unauthorized'));
      return;
    }
    const body = parseBody(raw);
    if (body === undefined) {
      sendEnvelope(res, INTERNAL_ERROR);
      return;
    }
    const target = faultTargetOf(route, body);
    if (target !== undefined && failsWith500(target)) {
      sendEnvelope(res, fail(500, APP_500_ERRORS[target.route]));
      return;
    }
    if (chance(rng, faults.timeoutRate)) {
      await hang(res);
      return;
    }

    let answer: Answer;
    let reportEntry: ReportRecord | undefined;
    switch (route) {
      case 'next-task':
        answer = nextTask(body);
        break;
      case 'presign':
        answer = presign(body);
        break;
      case 'heartbeat':
        answer = heartbeat(body);
        break;
      case 'report': {
        const outcome = report(body);
        answer = outcome.answer;
        reportEntry = outcome.record;
        if (reportEntry) keepReport(reportEntry);
        break;
      }
    }

    if (chance(rng, faults.lostResponseRate)) {
      if (reportEntry) markResponseLost(reportEntry);
      loseResponse(res);
      return;
    }
    sendEnvelope(res, answer);
  }

  return {
    handle,
    failNext(route, count, failOptions) {
      if (!Number.isInteger(count) || count < 0) throw new Error(`sandbox app: failNext count must be a whole number, got ${count}`);
      if (count === 0) return;
      scripted.push({ route, itemId: failOptions?.itemId, remaining: count });
    },
    addItem(item) {
      const itemId = item.item_id ?? randomUUID();
      if (items.has(itemId)) throw new Error(`sandbox app: item ${itemId} already exists`);
      sequence += 1;
      const state: ItemState = {
        item_id: itemId,
        group_id: item.group_id,
        photo_id: item.photo_id,
        prompt: item.prompt,
        photo_storage_path: item.photo_storage_path,
        frame_num: item.frame_num ?? null,
        inference_provider: item.inference_provider,
        createdAtMs: item.created_at === undefined ? Date.now() : Date.parse(item.created_at),
        sequence,
        status: item.status ?? 'pending',
        leasedUntilMs: null,
        worker_id: null,
        retry_count: item.retry_count ?? 0,
        error_message: null,
        video_storage_path: null,
        video_url: null,
        veo_operation_id: null,
        completedAtMs: null,
        reports: [],
      };
      items.set(itemId, state);
      return toWorkItem(state);
    },
    items: () => [...items.values()].map(toWorkItem),
    item(itemId) {
      const state = items.get(itemId);
      return state ? toWorkItem(state) : undefined;
    },
    adminRetry(itemId, retryOptions) {
      const state = stateOf(itemId);
      if (state.status !== 'failed') throw new Error(`sandbox app: item ${itemId} is ${state.status}, not failed`);
      state.status = 'pending';
      state.worker_id = null;
      state.leasedUntilMs = null;
      if (retryOptions?.resetRetryCount === true) state.retry_count = 0;
      return toWorkItem(state);
    },
    adminFail(itemId, errorMessage = 'Lease expired') {
      const state = stateOf(itemId);
      state.status = 'failed';
      state.worker_id = null;
      state.error_message = errorMessage;
      return toWorkItem(state);
    },
    expireLease(itemId) {
      const state = stateOf(itemId);
      state.leasedUntilMs = Date.now() - 1000;
      return toWorkItem(state);
    },
    reports: (itemId) => (itemId === undefined ? [...allReports] : allReports.filter((entry) => entry.item_id === itemId)),
  };
}

function sendEnvelope(res: ServerResponse, answer: Answer, headers: Record<string, string> = {}): void {
  sendJson(res, answer.status, answer.body, headers);
}
