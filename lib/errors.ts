/**
 * The few error kinds the worker raises. Each carries its retry decision as data;
 * nothing branches on message text.
 */

export type Service = 'app' | 'runway' | 'photo' | 'output' | 'storage' | 'qstash' | 'ledger';

/** An outside service answered badly or not at all. */
export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  readonly service: Service;
  /** HTTP status, or undefined for network errors and timeouts. */
  readonly status: number | undefined;
  readonly retryable: boolean;
  /** Upstream error code when the body names one (Runway `failureCode`, Supabase `statusCode`, ...). */
  readonly code: string | undefined;
  /** Seconds the service asked us to wait (Retry-After). */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    service: Service,
    message: string,
    options: {
      status?: number | undefined;
      retryable: boolean;
      code?: string | undefined;
      retryAfterSeconds?: number | undefined;
      cause?: unknown;
    },
  ) {
    super(message, { cause: options.cause });
    this.service = service;
    this.status = options.status;
    this.retryable = options.retryable;
    this.code = options.code;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** The input itself is unusable (bad photo, invalid task): retrying cannot help. */
export class PermanentError extends Error {
  override readonly name = 'PermanentError';
  readonly stage: string;
  constructor(stage: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.stage = stage;
  }
}

export function isRetryable(error: unknown): boolean {
  if (error instanceof UpstreamError) return error.retryable;
  if (error instanceof PermanentError) return false;
  // Unknown failures (a bug, a dropped socket we did not wrap) get another delivery.
  return true;
}

/** HTTP statuses worth another try for an idempotent call. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}
