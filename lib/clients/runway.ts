import { z } from 'zod';
import { UpstreamError } from '../errors.js';
import { IDEMPOTENT_RETRY, withRetry } from '../retry.js';
import { assertAllowedUrl } from '../url-policy.js';
import { answerError, callJson, type JsonAnswer } from './http.js';

/** Runway's API (contract §2). Version header pinned; every answer parsed leniently with zod. */

export const RUNWAY_VERSION = '2024-11-06';

export interface RunwayOptions {
  readonly baseUrl: string;
  readonly apiKey: string;
  /** Bound on each call (the ephemeral upload gets at least 2 minutes). */
  readonly timeoutMs: number;
}

/** The body of `POST /v1/image_to_video`, already shaped for the chosen model. */
export interface CreateTaskBody {
  readonly model: string;
  readonly promptImage: string;
  readonly ratio: string;
  readonly duration: number;
  readonly promptText?: string;
  readonly audio?: boolean;
}

/** `{ credits }`, or nothing when the shape is off: a cost figure is never worth failing a task over. */
const costSchema = z.looseObject({ credits: z.number().nonnegative() }).nullish().catch(undefined);

const taskSchema = z.looseObject({
  id: z.string(),
  // Lenient: an unknown status is treated as still running.
  status: z.string(),
  progress: z.number().nullish(),
  output: z.array(z.string()).nullish(),
  failure: z.string().nullish(),
  failureCode: z.string().nullish(),
  estimatedCost: costSchema,
  cost: costSchema,
});
export type RunwayTask = z.infer<typeof taskSchema>;

const createdSchema = z.looseObject({ id: z.string().min(1), estimatedCost: costSchema });
const uploadSchema = z.object({
  uploadUrl: z.string().min(1),
  fields: z.record(z.string(), z.string()),
  runwayUri: z.string().startsWith('runway://'),
});
const organizationSchema = z.looseObject({
  creditBalance: z.number(),
  tier: z.looseObject({
    models: z.record(z.string(), z.looseObject({ maxConcurrentGenerations: z.number(), maxDailyGenerations: z.number() })),
  }),
  usage: z.looseObject({ models: z.record(z.string(), z.looseObject({ dailyGenerations: z.number() })) }).optional(),
});
export type RunwayOrganization = z.infer<typeof organizationSchema>;

const errorBody = z.looseObject({
  error: z.string().optional(),
  issues: z.array(z.looseObject({ message: z.string().optional(), path: z.array(z.unknown()).optional() })).optional(),
});

/** Runway's own words for a 4xx, without echoing our input back. */
function describeRejection(answer: JsonAnswer): string | undefined {
  const parsed = errorBody.safeParse(answer.data);
  if (!parsed.success) return undefined;
  const issues = (parsed.data.issues ?? [])
    .map((issue) => [issue.path?.join('.'), issue.message].filter(Boolean).join(': '))
    .filter((text) => text.length > 0)
    .slice(0, 3);
  return [parsed.data.error, ...issues].filter(Boolean).join('; ') || undefined;
}

export interface CreatedTask {
  readonly id: string;
  /** Runway's `estimatedCost.credits`, when it gave one. */
  readonly estimatedCredits: number | undefined;
}

export interface Runway {
  /** Not idempotent: never retried here (a timed-out create may still have made a billed task). */
  createTask(body: CreateTaskBody): Promise<CreatedTask>;
  getTask(id: string): Promise<RunwayTask | undefined>;
  /** Cancels or deletes; a 404 (already gone) is fine. */
  cancelTask(id: string): Promise<void>;
  /** Ephemeral upload for photos too big for a data URI; returns the `runway://` URI. */
  uploadEphemeral(filename: string, bytes: Uint8Array<ArrayBuffer>, mime: string): Promise<string>;
  organization(): Promise<RunwayOrganization>;
}

/**
 * Answers to a create that say only that something timed out between us and Runway (a
 * gateway's 504, a 408): the create may have gone through, so it is never sent again.
 */
const CREATE_MAY_HAVE_LANDED: ReadonlySet<number> = new Set([408, 504]);
/** The `code` of a create error after which a billed task may exist. */
export const MAYBE_CREATED = 'maybe-created';

export function createRunway(options: RunwayOptions): Runway {
  const { timeoutMs } = options;
  const headers = {
    authorization: `Bearer ${options.apiKey}`,
    'x-runway-version': RUNWAY_VERSION,
    'content-type': 'application/json',
  };
  const call = (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<JsonAnswer> =>
    callJson({ service: 'runway', method, url: `${options.baseUrl}${path}`, headers, body, timeoutMs });

  return {
    async createTask(body) {
      const answer = await call('POST', '/v1/image_to_video', body);
      if (answer.status === 200 || answer.status === 201) {
        const created = createdSchema.safeParse(answer.data);
        if (created.success) return { id: created.data.id, estimatedCredits: created.data.estimatedCost?.credits };
        throw new UpstreamError('runway', 'runway: create answered without a task id', {
          status: answer.status,
          retryable: false,
          code: 'no-task-id',
        });
      }
      const detail = describeRejection(answer);
      if (answer.status === 429) {
        throw new UpstreamError('runway', `runway: daily generation limit reached${detail ? ` (${detail})` : ''}`, {
          status: 429,
          retryable: false,
          code: 'daily-cap',
          retryAfterSeconds: answer.retryAfterSeconds,
        });
      }
      if (CREATE_MAY_HAVE_LANDED.has(answer.status)) {
        // A timeout on the way back: Runway may have made (and billed) the task (contract §2.4).
        throw new UpstreamError('runway', `runway: create answered ${answer.status} (timed out; a task may exist)`, {
          status: answer.status,
          retryable: false,
          code: MAYBE_CREATED,
        });
      }
      const error = answerError('runway', 'create', answer, detail);
      throw error;
    },

    getTask(id) {
      return withRetry(async () => {
        const answer = await call('GET', `/v1/tasks/${encodeURIComponent(id)}`);
        if (answer.status === 404) return undefined;
        if (answer.status !== 200) throw answerError('runway', 'task lookup', answer, describeRejection(answer));
        const task = taskSchema.safeParse(answer.data);
        if (!task.success) {
          throw new UpstreamError('runway', 'runway: task lookup answered an unexpected shape', { status: 200, retryable: true });
        }
        return task.data;
      }, IDEMPOTENT_RETRY);
    },

    cancelTask(id) {
      return withRetry(async () => {
        const answer = await call('DELETE', `/v1/tasks/${encodeURIComponent(id)}`);
        if (answer.status === 204 || answer.status === 200 || answer.status === 404) return;
        throw answerError('runway', 'cancel', answer, describeRejection(answer));
      }, IDEMPOTENT_RETRY);
    },

    async uploadEphemeral(filename, bytes, mime) {
      const answer = await withRetry(() => call('POST', '/v1/uploads', { filename, type: 'ephemeral' }), IDEMPOTENT_RETRY);
      if (answer.status !== 200 && answer.status !== 201) {
        throw answerError('runway', 'upload request', answer, describeRejection(answer));
      }
      const target = uploadSchema.safeParse(answer.data);
      if (!target.success) {
        throw new UpstreamError('runway', 'runway: upload request answered an unexpected shape', { retryable: true });
      }
      assertAllowedUrl(target.data.uploadUrl, 'runway');
      const form = new FormData();
      for (const [name, value] of Object.entries(target.data.fields)) form.append(name, value);
      form.append('file', new Blob([bytes], { type: mime }), filename);
      let response: Response;
      try {
        response = await fetch(target.data.uploadUrl, {
          method: 'POST',
          body: form,
          signal: AbortSignal.timeout(Math.max(timeoutMs, 120_000)),
        });
      } catch (error) {
        throw new UpstreamError('runway', 'runway: ephemeral upload failed (network error)', { retryable: true, cause: error });
      }
      await response.body?.cancel();
      if (!response.ok) {
        throw new UpstreamError('runway', `runway: ephemeral upload answered ${response.status}`, {
          status: response.status,
          retryable: response.status >= 500,
        });
      }
      return target.data.runwayUri;
    },

    async organization() {
      const answer = await call('GET', '/v1/organization');
      if (answer.status !== 200) throw answerError('runway', 'organization', answer, describeRejection(answer));
      const org = organizationSchema.safeParse(answer.data);
      if (!org.success) throw new UpstreamError('runway', 'runway: organization answered an unexpected shape', { retryable: false });
      return org.data;
    },
  };
}
