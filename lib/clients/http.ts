import { ofetch } from 'ofetch';
import { UpstreamError, isRetryableStatus, type Service } from '../errors.js';

export interface JsonCall {
  readonly service: Service;
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body?: unknown;
  readonly timeoutMs: number;
}

export interface JsonAnswer {
  readonly status: number;
  /** Parsed JSON, or the text when it was not JSON, or undefined when empty. */
  readonly data: unknown;
  readonly retryAfterSeconds: number | undefined;
}

/** `Retry-After` as delay-seconds (RFC 9110); an HTTP date or anything else is not used. */
function retryAfter(headers: Headers): number | undefined {
  const value = headers.get('retry-after')?.trim();
  return value && /^\d+$/.test(value) ? Number(value) : undefined;
}

/**
 * One HTTP exchange with a JSON API. Answers with the status and parsed body whatever the
 * status; throws UpstreamError (retryable) only when no answer came (network, timeout).
 * Retries are the caller's decision.
 */
export async function callJson(call: JsonCall): Promise<JsonAnswer> {
  try {
    const response = await ofetch.raw<unknown>(call.url, {
      method: call.method,
      headers: call.headers,
      ...(call.body === undefined ? {} : { body: call.body as Record<string, unknown> }),
      timeout: call.timeoutMs,
      retry: 0,
      ignoreResponseError: true,
    });
    return { status: response.status, data: response._data, retryAfterSeconds: retryAfter(response.headers) };
  } catch (error) {
    const what = `${call.method} ${new URL(call.url).pathname}`;
    const cause = error instanceof Error ? error.cause : undefined;
    const timedOut = cause instanceof Error && cause.name === 'TimeoutError';
    throw new UpstreamError(call.service, `${call.service}: ${what} ${timedOut ? 'timed out' : 'failed (network error)'}`, {
      retryable: true,
      code: timedOut ? 'timeout' : 'network',
      cause: error,
    });
  }
}

/** Turns a non-2xx answer into an UpstreamError with the retry decision attached. */
export function answerError(service: Service, what: string, answer: JsonAnswer, detail?: string): UpstreamError {
  return new UpstreamError(service, `${service}: ${what} answered ${answer.status}${detail ? ` (${detail})` : ''}`, {
    status: answer.status,
    retryable: isRetryableStatus(answer.status),
    retryAfterSeconds: answer.retryAfterSeconds,
  });
}
