import { z } from 'zod';
import { UpstreamError } from '../errors.js';
import { IDEMPOTENT_RETRY, withRetry } from '../retry.js';
import { answerError, callJson, type JsonAnswer } from './http.js';

/**
 * The app's worker API (contract §1): POST only, `Authorization: Worker <key>`, every
 * answer wrapped in `{ success, data?, error? }`.
 */

export interface AppApiOptions {
  readonly baseUrl: string;
  readonly workerApiKey: string;
  readonly workerId: string;
  readonly workerType: string;
  /** Bound on each call. */
  readonly timeoutMs: number;
}

/** Error code of an upload presign refused because the item's video may already be stored. */
export const VIDEO_MAY_EXIST = 'video-may-exist';

const envelope = z.object({ success: z.boolean(), data: z.unknown().optional(), error: z.string().optional() });

/** Lenient on purpose: a task that breaks these rules is reported, not dropped (see submit-task). */
const leasedTaskSchema = z.object({
  item_id: z.string().min(1),
  // A field of the wrong type counts as missing, so the task is reported with a reason
  // instead of being skipped and coming back after every lease.
  group_id: z.string().optional().catch(undefined),
  photo_id: z.string().optional().catch(undefined),
  prompt: z.string().nullish().catch(undefined),
  leased_until: z.string().nullish().catch(undefined),
  photo_storage_path: z.string().nullish().catch(undefined),
  frame_num: z.unknown().optional(),
  inference_provider: z.string().nullish().catch(undefined),
});
export type LeasedTask = z.infer<typeof leasedTaskSchema>;

const downloadSchema = z.object({ url: z.string().min(1), expires_in: z.number().optional() });
const uploadSchema = z.object({ url: z.string().min(1), storage_path: z.string().min(1), expires_in: z.number().optional() });
const heartbeatSchema = z.object({ leased_until: z.string() });

export type LeaseAnswer =
  | { readonly kind: 'task'; readonly task: LeasedTask }
  | { readonly kind: 'idle' }
  /** The app handed out something that is not a usable task (logged, skipped). */
  | { readonly kind: 'invalid'; readonly itemId: string | undefined; readonly problem: string };

export type HeartbeatAnswer = { readonly kind: 'extended'; readonly leasedUntil: string } | { readonly kind: 'lost' };
export type ReportAnswer =
  | { readonly kind: 'reported' }
  | { readonly kind: 'lost'; readonly status: number }
  /** `completed` refused because the video is not in storage (nothing was applied). */
  | { readonly kind: 'video-missing' };

export interface Report {
  readonly item_id: string;
  readonly status: 'completed' | 'failed';
  readonly video_storage_path?: string;
  readonly error_message?: string;
  readonly veo_operation_id?: string;
}

export interface AppApi {
  /** Leases one task. Never retried in-process: a retry could lease a second item. */
  nextTask(leaseSeconds: number): Promise<LeaseAnswer>;
  presignDownload(storagePath: string): Promise<{ url: string }>;
  presignUpload(itemId: string): Promise<{ url: string; storagePath: string }>;
  /** `extendSeconds: 0` releases the lease at once. 404 means the lease is lost. */
  heartbeat(itemId: string, extendSeconds: number): Promise<HeartbeatAnswer>;
  /** Not idempotent (contract §1.4): sent once, never retried here. */
  report(report: Report): Promise<ReportAnswer>;
  /** Preflight: an empty heartbeat answers 400 with the right key, 401 with a wrong one. */
  checkKey(): Promise<{ ok: boolean; detail: string; status?: number }>;
}

function errorText(answer: JsonAnswer): string | undefined {
  const parsed = envelope.safeParse(answer.data);
  return parsed.success ? parsed.data.error : undefined;
}

export function createAppApi(options: AppApiOptions): AppApi {
  const { timeoutMs } = options;
  const headers = { authorization: `Worker ${options.workerApiKey}`, 'content-type': 'application/json' };

  const post = (route: string, body: unknown): Promise<JsonAnswer> =>
    callJson({ service: 'app', method: 'POST', url: `${options.baseUrl}/worker/${route}`, headers, body, timeoutMs });

  /** Unwraps a 2xx envelope with `success: true`; anything else becomes an UpstreamError. */
  const dataOf = <T>(route: string, answer: JsonAnswer, schema: z.ZodType<T>): T => {
    if (answer.status < 200 || answer.status >= 300) throw answerError('app', route, answer, errorText(answer));
    const wrapped = envelope.safeParse(answer.data);
    if (!wrapped.success || !wrapped.data.success) {
      throw new UpstreamError('app', `app: ${route} answered ${answer.status} without a success envelope`, {
        status: answer.status,
        retryable: true,
      });
    }
    const data = schema.safeParse(wrapped.data.data);
    if (!data.success) {
      throw new UpstreamError('app', `app: ${route} answered an unexpected shape`, { status: answer.status, retryable: true });
    }
    return data.data;
  };

  return {
    async nextTask(leaseSeconds) {
      const answer = await post('next-task', {
        worker_id: options.workerId,
        worker_type: options.workerType,
        lease_duration_seconds: leaseSeconds,
      });
      const data = dataOf('next-task', answer, z.unknown());
      if (data === null || data === undefined) return { kind: 'idle' };
      const task = leasedTaskSchema.safeParse(data);
      if (task.success) return { kind: 'task', task: task.data };
      const itemId = z.object({ item_id: z.string().min(1) }).safeParse(data);
      return {
        kind: 'invalid',
        itemId: itemId.success ? itemId.data.item_id : undefined,
        problem: task.error.issues.map((i) => `${i.path.join('.') || 'task'}: ${i.message}`).join('; '),
      };
    },

    presignDownload(storagePath) {
      return withRetry(async () => {
        const answer = await post('presign', { operation: 'download', storage_path: storagePath });
        // A missing photo is a 500 with this text (contract §1.2); any other 500 is an outage.
        if (answer.status === 500 && errorText(answer) === 'Failed to generate download URL') {
          throw new UpstreamError('app', 'app: no photo to sign a download URL for', { status: 500, retryable: true, code: 'not-found' });
        }
        return { url: dataOf('presign download', answer, downloadSchema).url };
      }, IDEMPOTENT_RETRY);
    },

    presignUpload(itemId) {
      return withRetry(async () => {
        const answer = await post('presign', { operation: 'upload', video_item_id: itemId, file_extension: 'mp4' });
        // Upsert is off: once the item's video exists, the app answers 500 with this text (contract §1.2).
        if (answer.status === 500 && errorText(answer) === 'Failed to generate upload URL') {
          throw new UpstreamError('app', 'app: presign upload answered 500 (Failed to generate upload URL)', {
            status: 500,
            retryable: true,
            code: VIDEO_MAY_EXIST,
          });
        }
        const data = dataOf('presign upload', answer, uploadSchema);
        return { url: data.url, storagePath: data.storage_path };
      }, IDEMPOTENT_RETRY);
    },

    heartbeat(itemId, extendSeconds) {
      return withRetry(async () => {
        const answer = await post('heartbeat', {
          item_id: itemId,
          worker_id: options.workerId,
          extend_seconds: extendSeconds,
        });
        if (answer.status === 404) return { kind: 'lost' } as const;
        return { kind: 'extended', leasedUntil: dataOf('heartbeat', answer, heartbeatSchema).leased_until } as const;
      }, IDEMPOTENT_RETRY);
    },

    async report(report) {
      const answer = await post('report', { ...report, worker_id: options.workerId });
      if (answer.status === 403 || answer.status === 404) return { kind: 'lost', status: answer.status };
      // The app checks the object exists before it accepts `completed` (contract §1.4).
      if (answer.status === 500 && errorText(answer) === 'Failed to generate video URL') return { kind: 'video-missing' };
      dataOf('report', answer, z.unknown());
      return { kind: 'reported' };
    },

    async checkKey() {
      const answer = await post('heartbeat', {});
      const { status } = answer;
      if (status === 400) return { ok: true, detail: 'key accepted' };
      if (status === 401) return { ok: false, detail: 'key rejected (401)', status };
      return { ok: false, detail: `unexpected answer ${status}`, status };
    },
  };
}
