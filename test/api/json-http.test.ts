import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { answerError, callJson, type JsonAnswer, type JsonCall } from '../../lib/clients/http.js';
import { UpstreamError } from '../../lib/errors.js';
import { IDEMPOTENT_RETRY, withRetry } from '../../lib/retry.js';
import { closeStandIns, startSocketTrap } from '../support/extra-stand-in.js';

/**
 * The one HTTP exchange every JSON client is built on (app worker API, Runway), and the
 * in-process retry of idempotent calls on top of it, against a real loopback server.
 */

interface Received {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

type Reply = (request: Received, res: ServerResponse) => void;

let server: Server;
let base: string;
let received: Received[];
/** Answers by path; each test sets the ones it needs. */
let routes: Map<string, Reply>;

beforeEach(async () => {
  received = [];
  routes = new Map();
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      received.push(request);
      const reply = routes.get(request.path.split('?')[0] ?? '/');
      if (reply) reply(request, res);
      else {
        res.writeHead(404);
        res.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  await closeStandIns();
});

function json(status: number, body: unknown, headers: Record<string, string> = {}): Reply {
  return (_request, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
}

const call = (path: string, overrides: Partial<JsonCall> = {}): JsonCall => ({
  service: 'runway',
  method: 'GET',
  url: `${base}${path}`,
  headers: { authorization: 'Bearer key' },
  timeoutMs: 5_000,
  ...overrides,
});

async function failure(promise: Promise<unknown>): Promise<UpstreamError> {
  const error: unknown = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  if (!(error instanceof UpstreamError)) throw new Error(`expected an UpstreamError, got ${String(error)}`);
  return error;
}

describe('one JSON exchange', () => {
  it('sends the method, headers and JSON body, and answers with the status and the parsed JSON', async () => {
    routes.set('/v1/uploads', json(200, { uploadUrl: 'https://upload.example' }));

    const answer = await callJson(
      call('/v1/uploads', { method: 'POST', headers: { authorization: 'Bearer key', 'x-runway-version': '2024-11-06' }, body: { filename: 'a.jpg' } }),
    );

    expect(answer).toEqual({ status: 200, data: { uploadUrl: 'https://upload.example' }, retryAfterSeconds: undefined });
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ method: 'POST', path: '/v1/uploads', body: '{"filename":"a.jpg"}' });
    expect(received[0]?.headers).toMatchObject({ authorization: 'Bearer key', 'x-runway-version': '2024-11-06' });
  });

  it('answers a refusal with its status and body instead of throwing, the body as text when it is not JSON', async () => {
    routes.set('/v1/tasks/t1', (_request, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html>Bad gateway</html>');
    });

    const answer = await callJson(call('/v1/tasks/t1'));

    expect(answer).toEqual({ status: 502, data: '<html>Bad gateway</html>', retryAfterSeconds: undefined });
    // Asked once: whether to try again is the caller's decision.
    expect(received).toHaveLength(1);
  });

  it('answers an empty body as no data', async () => {
    routes.set('/v1/tasks/t1', (_request, res) => {
      res.writeHead(204);
      res.end();
    });

    expect(await callJson(call('/v1/tasks/t1', { method: 'DELETE' }))).toEqual({ status: 204, data: undefined, retryAfterSeconds: undefined });
  });

  it.each([
    ['7', 7],
    [' 0 ', 0],
    ['-3', undefined],
    ['1.5', undefined],
    ['Wed, 21 Oct 2015 07:28:00 GMT', undefined],
  ])('reads Retry-After %j as %s seconds', async (header, seconds) => {
    routes.set('/worker/heartbeat', json(429, { success: false }, { 'retry-after': header }));

    const answer = await callJson(call('/worker/heartbeat', { service: 'app', method: 'POST', body: {} }));

    expect(answer.status).toBe(429);
    expect(answer.retryAfterSeconds).toBe(seconds);
  });

  it('throws a retryable timeout naming the route but not the query when no answer comes in time', async () => {
    const trap = await startSocketTrap();

    const error = await failure(
      callJson(call('', { url: `http://127.0.0.1:${trap.port}/v1/tasks/t1?token=secret-token`, timeoutMs: 200 })),
    );

    expect(error).toMatchObject({ service: 'runway', retryable: true, code: 'timeout', status: undefined });
    expect(error.message).toBe('runway: GET /v1/tasks/t1 timed out');
    expect(trap.connections()).toBe(1);
  });

  it('throws a retryable network error, having asked once, when the connection drops without an answer', async () => {
    routes.set('/v1/tasks/t1', (_request, res) => res.socket?.destroy());

    const error = await failure(callJson(call('/v1/tasks/t1')));

    expect(error).toMatchObject({ service: 'runway', retryable: true, code: 'network', status: undefined });
    expect(error.message).toBe('runway: GET /v1/tasks/t1 failed (network error)');
    // Whether to try again is the caller's decision: the HTTP library does not retry on its own.
    expect(received).toHaveLength(1);
  });
});

describe('the error for a refused answer', () => {
  const answer = (status: number, retryAfterSeconds?: number): JsonAnswer => ({ status, data: undefined, retryAfterSeconds });

  it.each([408, 429, 500, 502, 503, 504])('is worth another try for %d', (status) => {
    expect(answerError('runway', 'task lookup', answer(status)).retryable).toBe(true);
  });

  it.each([400, 401, 403, 404, 409, 413])('is final for %d', (status) => {
    expect(answerError('runway', 'task lookup', answer(status)).retryable).toBe(false);
  });

  it('says which service and call answered what, with the detail when there is one', () => {
    expect(answerError('app', 'presign', answer(500), 'Failed to generate upload URL').message).toBe(
      'app: presign answered 500 (Failed to generate upload URL)',
    );
    expect(answerError('app', 'presign', answer(500)).message).toBe('app: presign answered 500');
  });

  it('carries the status and the Retry-After of the answer', () => {
    expect(answerError('app', 'heartbeat', answer(429, 2))).toMatchObject({ service: 'app', status: 429, retryAfterSeconds: 2 });
  });
});

describe('an idempotent call retried in process', () => {
  /** A task lookup as the Runway client makes it: a refused answer becomes an UpstreamError. */
  const lookup = (): Promise<JsonAnswer> =>
    withRetry(async () => {
      const answer = await callJson(call('/v1/tasks/t1'));
      if (answer.status !== 200) throw answerError('runway', 'task lookup', answer);
      return answer;
    }, IDEMPOTENT_RETRY);

  /** Answers with `statuses` in turn, then 200. */
  function sequence(statuses: readonly number[], headers: Record<string, string> = {}): void {
    let served = 0;
    routes.set('/v1/tasks/t1', (request, res) => {
      const status = statuses[served++];
      if (status === undefined) json(200, { id: 't1', status: 'RUNNING' })(request, res);
      else json(status, { error: 'unavailable' }, headers)(request, res);
    });
  }

  it('tries again after a 503 that asked for no wait, until it succeeds', async () => {
    sequence([503, 503], { 'retry-after': '0' });

    const answer = await lookup();

    expect(answer.data).toEqual({ id: 't1', status: 'RUNNING' });
    expect(received).toHaveLength(3);
  });

  it('waits about what Retry-After asked when it fits under the cap', async () => {
    sequence([503], { 'retry-after': '1' });
    const started = Date.now();

    await lookup();

    expect(received).toHaveLength(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
  });

  it('gives up at once when Retry-After asks for longer than the cap, leaving the wait to QStash', async () => {
    sequence([503], { 'retry-after': '60' });

    const error = await failure(lookup());

    expect(error).toMatchObject({ status: 503, retryAfterSeconds: 60 });
    expect(received).toHaveLength(1);
  });

  it('stops after its retries, throwing the last refusal', async () => {
    sequence([500, 502, 504, 503], { 'retry-after': '0' });

    const error = await failure(lookup());

    expect(error.status).toBe(504);
    expect(received).toHaveLength(1 + IDEMPOTENT_RETRY.retries);
  });

  it('never tries a final refusal again', async () => {
    sequence([404]);

    const error = await failure(lookup());

    expect(error).toMatchObject({ status: 404, retryable: false });
    expect(received).toHaveLength(1);
  });
});
