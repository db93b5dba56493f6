import type { Client, Receiver } from '@upstash/qstash';
import { UpstreamError } from '../errors.js';
import { QSTASH_RETRIES } from '../steps/messages.js';

/**
 * QStash (contract §3): delayed, deduplicated messages to our own endpoints, and
 * signature checks on what it delivers. The SDK retries network errors itself; we add
 * no retry layer on top. The SDK is imported on first use: a cron run that finds nothing to
 * do (most of them) neither publishes nor verifies, and never pays its load time or memory.
 */

export interface QueueOptions {
  readonly qstashUrl: string;
  readonly token: string;
  readonly currentSigningKey: string;
  readonly nextSigningKey: string;
  /** Public base URL QStash calls back (no trailing slash). */
  readonly workerBaseUrl: string;
  /** Sent along as `x-vercel-protection-bypass` so protected deployments accept QStash's calls. */
  readonly protectionBypassSecret?: string | undefined;
}

export type StepPath = '/api/cron-poll' | '/api/runway-callback' | '/api/step-upload';

export interface PublishRequest {
  readonly path: StepPath;
  readonly body: unknown;
  readonly delaySeconds: number;
  /** A repeated publish with the same id within 10 minutes is dropped by QStash. */
  readonly deduplicationId: string;
  /** Forwarded to the destination (QStash strips the `Upstash-Forward-` prefix). */
  readonly headers?: Record<string, string>;
}

export interface Queue {
  publish(request: PublishRequest): Promise<{ messageId: string; deduplicated: boolean }>;
  /**
   * True when the signature is valid for this raw body and was made for this endpoint: the
   * URL we publish to (base URL + path), or the URL the request actually arrived at.
   */
  verify(signature: string | null, rawBody: string, requestUrl: URL): Promise<boolean>;
  /** Preflight: whether QStash accepts the token (a harmless authenticated read). */
  checkToken(): Promise<{ ok: boolean; detail: string; status?: number }>;
  callbackUrl(path: string): string;
}

/** QStash deduplication ids: keep them to a plain alphabet. */
export function deduplicationId(...parts: (string | number)[]): string {
  return parts.map((part) => String(part).replace(/[^A-Za-z0-9_.-]/g, '_')).join('-');
}

/**
 * The token check asks once more after a network failure, not five times: a person is
 * waiting for the answer, and a dead QStash URL should say so within a second.
 */
const CHECK_RETRY = { retries: 1, backoff: () => 250 } as const;

interface Sdk {
  readonly client: Client;
  readonly checkClient: Client;
  readonly receiver: Receiver;
  readonly statusOf: (error: unknown) => number | undefined;
}

export function createQueue(options: QueueOptions): Queue {
  let loading: Promise<Sdk> | undefined;
  const sdk = (): Promise<Sdk> =>
    (loading ??= import('@upstash/qstash').then(({ Client, QstashError, Receiver }) => ({
      client: new Client({
        baseUrl: options.qstashUrl,
        token: options.token,
        devMode: false,
        enableTelemetry: false,
      }),
      checkClient: new Client({
        baseUrl: options.qstashUrl,
        token: options.token,
        devMode: false,
        enableTelemetry: false,
        retry: CHECK_RETRY,
      }),
      receiver: new Receiver({
        currentSigningKey: options.currentSigningKey,
        nextSigningKey: options.nextSigningKey,
        devMode: false,
      }),
      statusOf: (error) => (error instanceof QstashError ? error.status : undefined),
    })));
  const callbackUrl = (path: string): string => `${options.workerBaseUrl}${path}`;

  return {
    callbackUrl,

    async publish(request) {
      const { client, statusOf } = await sdk();
      try {
        const answer = await client.publishJSON({
          url: callbackUrl(request.path),
          body: request.body,
          delay: Math.max(0, Math.round(request.delaySeconds)),
          deduplicationId: request.deduplicationId,
          retries: QSTASH_RETRIES,
          headers: {
            ...request.headers,
            ...(options.protectionBypassSecret ? { 'x-vercel-protection-bypass': options.protectionBypassSecret } : {}),
          },
        });
        return { messageId: answer.messageId, deduplicated: answer.deduplicated === true };
      } catch (error) {
        const status = statusOf(error);
        throw new UpstreamError('qstash', `qstash: publish to ${request.path} failed${status ? ` (${status})` : ''}`, {
          status,
          retryable: status === undefined || status === 429 || status >= 500,
          cause: error,
        });
      }
    },

    async verify(signature, rawBody, requestUrl) {
      if (!signature) return false;
      const { receiver } = await sdk();
      const urls = new Set([callbackUrl(requestUrl.pathname + requestUrl.search), requestUrl.href]);
      for (const url of urls) {
        try {
          if (await receiver.verify({ signature, body: rawBody, url })) return true;
        } catch {
          // Not signed for this URL (or not valid at all): try the next, then refuse.
        }
      }
      return false;
    },

    async checkToken() {
      try {
        const { checkClient, statusOf } = await sdk();
        try {
          await checkClient.schedules.list();
          return { ok: true, detail: 'token accepted' };
        } catch (error) {
          const status = statusOf(error);
          return status ? { ok: false, detail: `QStash answered ${status}`, status } : { ok: false, detail: 'QStash unreachable' };
        }
      } catch (error) {
        // The SDK itself did not load (a broken install): say so on the row, never crash the check.
        return { ok: false, detail: `QStash client could not load: ${error instanceof Error ? error.message : String(error)}` };
      }
    },
  };
}
