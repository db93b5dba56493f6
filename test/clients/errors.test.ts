import { describe, expect, it } from 'vitest';
import { isRetryable, isRetryableStatus, PermanentError, UpstreamError } from '../../lib/errors.js';

describe('whether a failure is worth another delivery', () => {
  it('follows the decision an UpstreamError carries', () => {
    expect(isRetryable(new UpstreamError('runway', 'runway: create answered 502', { status: 502, retryable: true }))).toBe(true);
    expect(isRetryable(new UpstreamError('runway', 'runway: create answered 400', { status: 400, retryable: false }))).toBe(false);
  });

  it('never retries a PermanentError', () => {
    expect(isRetryable(new PermanentError('photo', 'photo: the file is empty'))).toBe(false);
  });

  it('retries anything else, a bug or an unwrapped socket error, once more', () => {
    expect(isRetryable(new TypeError('Cannot read properties of undefined'))).toBe(true);
    expect(isRetryable('thrown text')).toBe(true);
  });
});

describe('whether an HTTP status is worth another try', () => {
  it.each([408, 429, 500, 502, 503, 504])('retries %i', (status) => {
    expect(isRetryableStatus(status)).toBe(true);
  });

  it.each([400, 401, 403, 404, 409, 410, 413])('does not retry %i', (status) => {
    expect(isRetryableStatus(status)).toBe(false);
  });
});

describe('an UpstreamError', () => {
  it('keeps the service, status, code, wait and cause it was given', () => {
    const cause = new Error('ECONNRESET');
    const error = new UpstreamError('app', 'app: heartbeat answered 503', { status: 503, retryable: true, code: 'x', retryAfterSeconds: 4, cause });

    expect(error).toMatchObject({ name: 'UpstreamError', service: 'app', status: 503, retryable: true, code: 'x', retryAfterSeconds: 4, cause });
    expect(error.message).toBe('app: heartbeat answered 503');
  });
});
