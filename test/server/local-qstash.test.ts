import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Client, QstashError, Receiver, SignatureError } from '@upstash/qstash';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { startLocalQStash, type LocalQStash, type LocalQStashEvent, type LocalQStashOptions } from '../../server/local-qstash.js';
import { decideNextStep, defaultRetryDelayMs, parseRetryAfterMs } from '../../server/local-qstash/delivery-policy.js';
import { parseDurationMs } from '../../server/local-qstash/publish-request.js';

// The public credentials of the official QStash dev server (contract.md §3).
const TOKEN = 'eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=';
const CURRENT_SIGNING_KEY = 'sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r';
const NEXT_SIGNING_KEY = 'sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs';
/** 10 s of QStash time pass in 100 ms. */
const TIME_SCALE = 0.01;

interface Received {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly at: number;
}

interface Reply {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** Destroy the socket instead of answering. */
  readonly hangUp?: boolean;
  /** Answer only after this many ms. */
  readonly afterMs?: number;
}

interface Destination {
  /** Base URL, `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly received: Received[];
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startQStash(options: Partial<LocalQStashOptions> = {}): Promise<LocalQStash> {
  const qstash = await startLocalQStash({
    token: TOKEN,
    currentSigningKey: CURRENT_SIGNING_KEY,
    nextSigningKey: NEXT_SIGNING_KEY,
    timeScale: TIME_SCALE,
    ...options,
  });
  cleanups.push(() => qstash.close());
  return qstash;
}

/** A loopback destination that records every request and answers with `reply(n)` for the n-th one (0-based). */
async function startDestination(reply: (index: number) => Reply = () => ({ status: 200 })): Promise<Destination> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    answer(req, res).catch(() => res.destroy());
  });
  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(Buffer.from(chunk as Uint8Array));
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string') headers[name] = value;
    }
    const index = received.length;
    received.push({
      method: req.method ?? '',
      path: req.url ?? '',
      headers,
      body: Buffer.concat(chunks).toString('utf8'),
      at: Date.now(),
    });
    const planned = reply(index);
    if (planned.afterMs !== undefined) await waitUnlessClosed(res, planned.afterMs);
    if (res.destroyed) return;
    if (planned.hangUp === true) {
      res.destroy();
      return;
    }
    res.writeHead(planned.status, planned.headers ?? {});
    res.end(planned.body ?? '');
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('destination has no port');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${address.port}`, received };
}

/** Waits `ms`, or less when the caller hangs up first, so no timer outlives its test. */
function waitUnlessClosed(res: ServerResponse, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    res.once('close', done);
    function done(): void {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    }
  });
}

function clientFor(qstash: LocalQStash, token = TOKEN): Client {
  return new Client({ token, baseUrl: qstash.url, devMode: false, retry: false });
}

const receiver = new Receiver({ currentSigningKey: CURRENT_SIGNING_KEY, nextSigningKey: NEXT_SIGNING_KEY });

function only<T>(items: readonly T[]): T {
  expect(items).toHaveLength(1);
  const [item] = items;
  if (item === undefined) throw new Error('expected one item');
  return item;
}

function signatureOf(request: Received): string {
  const signature = request.headers['upstash-signature'];
  if (signature === undefined) throw new Error('delivery carried no Upstash-Signature');
  return signature;
}

describe('a message published with publishJSON', () => {
  it('reaches the destination with its exact body and a signature the real Receiver accepts for that url', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();
    const url = `${destination.url}/api/runway-callback?itemId=item-1&attempt=2`;
    const body = { taskId: 'task_1', note: 'ünïcødé ✓' };

    const published = await clientFor(qstash).publishJSON({ url, body });
    await qstash.idle();

    const delivery = only(destination.received);
    expect(published).toEqual({ messageId: expect.stringMatching(/^msg_/) as unknown, url });
    expect(delivery.method).toBe('POST');
    expect(delivery.path).toBe('/api/runway-callback?itemId=item-1&attempt=2');
    expect(delivery.body).toBe(JSON.stringify(body));
    expect(delivery.headers).toMatchObject({
      'content-type': 'application/json',
      'user-agent': 'Upstash-QStash',
      'upstash-message-id': published.messageId,
      'upstash-retried': '0',
    });
    await expect(receiver.verify({ signature: signatureOf(delivery), body: delivery.body, url })).resolves.toBe(true);
    expect(qstash.stats()).toMatchObject({ published: 1, deliveries: 1, succeeded: 1, retried: 0, failed: 0 });
    expect(only(qstash.messages())).toMatchObject({ messageId: published.messageId, url, state: 'succeeded' });
  });

  it('is signed with the HS256 claims QStash uses, the body hash padded as QStash sends it', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();
    const url = `${destination.url}/api/cron-poll`;

    await clientFor(qstash).publishJSON({ url, body: { tick: 1 } });
    await qstash.idle();

    const delivery = only(destination.received);
    const signature = signatureOf(delivery);
    const claims = decodeJwt(signature);
    const bodyHash = createHash('sha256').update(delivery.body).digest('base64').replace(/\+/g, '-').replace(/\//g, '_');
    expect(decodeProtectedHeader(signature)).toEqual({ alg: 'HS256', typ: 'JWT' });
    expect(claims).toMatchObject({ iss: 'Upstash', sub: url, body: bodyHash });
    expect(bodyHash.endsWith('=')).toBe(true);
    expect(claims.jti).toMatch(/^jwt_/);
    expect(claims.nbf).toBe(claims.iat);
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(300);
    expect(Math.abs((claims.iat ?? 0) - Date.now() / 1000)).toBeLessThan(5);
  });

  it('carries a signature the Receiver rejects once the body is modified', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();
    const url = `${destination.url}/api/step-upload`;

    await clientFor(qstash).publishJSON({ url, body: { itemId: 'a' } });
    await qstash.idle();

    const delivery = only(destination.received);
    const tampered = delivery.body.replace('"a"', '"b"');
    await expect(receiver.verify({ signature: signatureOf(delivery), body: tampered, url })).rejects.toBeInstanceOf(
      SignatureError,
    );
  });

  it('carries a signature the Receiver rejects for another url or another signing key pair', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();
    const url = `${destination.url}/api/step-upload`;

    await clientFor(qstash).publishJSON({ url, body: { itemId: 'a' } });
    await qstash.idle();

    const delivery = only(destination.received);
    const signature = signatureOf(delivery);
    await expect(
      receiver.verify({ signature, body: delivery.body, url: `${destination.url}/api/other` }),
    ).rejects.toBeInstanceOf(SignatureError);
    const strangers = new Receiver({ currentSigningKey: 'sig_other_current', nextSigningKey: 'sig_other_next' });
    await expect(strangers.verify({ signature, body: delivery.body, url })).rejects.toBeInstanceOf(SignatureError);
  });
});

describe('a message published with a delay', () => {
  it('is delivered after Upstash-Delay, scaled by timeScale', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();

    const publishedAt = Date.now();
    await clientFor(qstash).publishJSON({ url: `${destination.url}/later`, body: {}, delay: 20 });
    await qstash.idle();

    // 20 s of QStash time at 0.01 is 200 ms.
    expect(only(destination.received).at - publishedAt).toBeGreaterThanOrEqual(190);
    expect(only(qstash.messages()).headers['upstash-delay']).toBe('20s');
  });

  it('is delivered at Upstash-Not-Before, which overrides Upstash-Delay', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();

    const publishedAt = Date.now();
    const notBefore = Math.ceil(publishedAt / 1000) + 30;
    await clientFor(qstash).publishJSON({ url: `${destination.url}/at`, body: {}, notBefore, delay: '1d' });
    await qstash.idle();

    const expectedMs = (notBefore * 1000 - publishedAt) * TIME_SCALE;
    expect(only(destination.received).at - publishedAt).toBeGreaterThanOrEqual(expectedMs - 10);
    expect(only(destination.received).at - publishedAt).toBeLessThan(2_000);
  });
});

describe('a message published with headers and a method', () => {
  it('delivers Upstash-Forward-* headers without their prefix and uses Upstash-Method', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();

    await clientFor(qstash).publish({
      url: `${destination.url}/api/runway-callback`,
      method: 'PUT',
      body: 'plain text body',
      headers: { 'x-vercel-protection-bypass': 'bypass-secret', 'Content-Type': 'text/plain', 'X-Item-Id': 'item-9' },
      flowControl: { key: 'runway', parallelism: 2 },
      timeout: '30s',
    });
    await qstash.idle();

    const delivery = only(destination.received);
    expect(delivery.method).toBe('PUT');
    expect(delivery.body).toBe('plain text body');
    expect(delivery.headers).toMatchObject({
      'x-vercel-protection-bypass': 'bypass-secret',
      'x-item-id': 'item-9',
      'content-type': 'text/plain',
    });
    expect(Object.keys(delivery.headers).filter((name) => name.startsWith('upstash-forward-'))).toEqual([]);
    expect(only(qstash.messages()).forwardedHeaders).toEqual({
      'x-vercel-protection-bypass': 'bypass-secret',
      'x-item-id': 'item-9',
    });
  });
});

describe('a destination that keeps answering 500', () => {
  it('gets redeliveries with Upstash-Retried counting up until the retries are used up', async () => {
    const events: LocalQStashEvent[] = [];
    const qstash = await startQStash({ retryDelayMs: () => 1_000, onEvent: (event) => events.push(event) });
    const destination = await startDestination(() => ({ status: 500, body: 'boom' }));
    const url = `${destination.url}/api/step-upload`;

    const published = await clientFor(qstash).publishJSON({ url, body: { n: 1 }, retries: 2 });
    await qstash.idle();

    expect(destination.received.map((request) => request.headers['upstash-retried'])).toEqual(['0', '1', '2']);
    expect(new Set(destination.received.map((request) => request.headers['upstash-message-id']))).toEqual(
      new Set([published.messageId]),
    );
    for (const delivery of destination.received) {
      await expect(receiver.verify({ signature: signatureOf(delivery), body: delivery.body, url })).resolves.toBe(true);
    }
    expect(qstash.stats()).toMatchObject({ deliveries: 3, retried: 2, failed: 1, succeeded: 0 });
    const message = only(qstash.messages());
    expect(message.state).toBe('failed');
    expect(message.attempts.map((attempt) => [attempt.retried, attempt.status, attempt.responseBody])).toEqual([
      [0, 500, 'boom'],
      [1, 500, 'boom'],
      [2, 500, 'boom'],
    ]);
    expect(events.map((event) => event.type)).toEqual(['published', 'retry', 'retry', 'failed']);
  });

  it('retries three times by default', async () => {
    const qstash = await startQStash({ retryDelayMs: () => 100 });
    const destination = await startDestination(() => ({ status: 503 }));

    await clientFor(qstash).publishJSON({ url: `${destination.url}/x`, body: {} });
    await qstash.idle();

    expect(destination.received).toHaveLength(4);
  });
});

describe('a destination that fails once and then succeeds', () => {
  it('waits for the Retry-After of the failed answer before redelivering', async () => {
    const qstash = await startQStash({ retryDelayMs: () => 1_000 });
    const destination = await startDestination((index) =>
      index === 0 ? { status: 429, headers: { 'retry-after': '30' } } : { status: 200 },
    );

    await clientFor(qstash).publishJSON({ url: `${destination.url}/x`, body: {} });
    await qstash.idle();

    const [first, second] = destination.received;
    if (first === undefined || second === undefined) throw new Error('expected two deliveries');
    // Retry-After 30 s at 0.01 is 300 ms, where the backoff alone would be 10 ms.
    expect(second.at - first.at).toBeGreaterThanOrEqual(290);
    expect(qstash.stats()).toMatchObject({ deliveries: 2, retried: 1, succeeded: 1 });
  });

  it('redelivers after the connection drops without an answer', async () => {
    const qstash = await startQStash({ retryDelayMs: () => 1_000 });
    const destination = await startDestination((index) => (index === 0 ? { status: 0, hangUp: true } : { status: 204 }));

    await clientFor(qstash).publishJSON({ url: `${destination.url}/x`, body: {} });
    await qstash.idle();

    expect(destination.received.map((request) => request.headers['upstash-retried'])).toEqual(['0', '1']);
    const [dropped, answered] = only(qstash.messages()).attempts;
    expect(dropped?.status).toBeUndefined();
    expect(dropped?.error).toMatch(/fetch failed|socket|terminated/i);
    expect(answered?.status).toBe(204);
  });

  it('redelivers after an attempt outlives deliveryTimeoutMs', async () => {
    const qstash = await startQStash({ retryDelayMs: () => 1_000, deliveryTimeoutMs: 100 });
    const destination = await startDestination((index) => (index === 0 ? { status: 200, afterMs: 400 } : { status: 200 }));

    await clientFor(qstash).publishJSON({ url: `${destination.url}/slow`, body: {} });
    await qstash.idle();

    const attempts = only(qstash.messages()).attempts;
    expect(attempts.map((attempt) => attempt.error ?? attempt.status)).toEqual(['timeout after 100 ms', 200]);
  });
});

describe('a destination answering 489 with Upstash-NonRetryable-Error', () => {
  it('stops the message at once without a redelivery', async () => {
    const events: LocalQStashEvent[] = [];
    const qstash = await startQStash({ retryDelayMs: () => 1_000, onEvent: (event) => events.push(event) });
    const destination = await startDestination(() => ({
      status: 489,
      headers: { 'upstash-nonretryable-error': 'true' },
    }));

    await clientFor(qstash).publishJSON({ url: `${destination.url}/x`, body: {}, retries: 3 });
    await qstash.idle();

    expect(destination.received).toHaveLength(1);
    expect(qstash.stats()).toMatchObject({ deliveries: 1, stoppedBy489: 1, retried: 0, failed: 0 });
    expect(only(qstash.messages()).state).toBe('stopped');
    expect(events.map((event) => event.type)).toEqual(['published', 'stopped']);
  });

  it('retries a 489 that lacks the header like any other failure', async () => {
    const qstash = await startQStash({ retryDelayMs: () => 1_000 });
    const destination = await startDestination(() => ({ status: 489 }));

    await clientFor(qstash).publishJSON({ url: `${destination.url}/x`, body: {}, retries: 1 });
    await qstash.idle();

    expect(destination.received).toHaveLength(2);
    expect(qstash.stats()).toMatchObject({ stoppedBy489: 0, failed: 1 });
  });
});

describe('two publishes with the same deduplication id', () => {
  it('answers the second with deduplicated: true and the first message id, and delivers once', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();
    const client = clientFor(qstash);
    const url = `${destination.url}/api/step-upload`;

    const first = await client.publishJSON({ url, body: { n: 1 }, deduplicationId: 'item-1-upload' });
    const second = await client.publishJSON({ url, body: { n: 2 }, deduplicationId: 'item-1-upload' });
    const other = await client.publishJSON({ url, body: { n: 3 }, deduplicationId: 'item-2-upload' });
    await qstash.idle();

    expect(first.deduplicated).toBeUndefined();
    expect(second).toEqual({ messageId: first.messageId, url, deduplicated: true });
    expect(other.messageId).not.toBe(first.messageId);
    expect(destination.received.map((request) => request.body).sort()).toEqual(['{"n":1}', '{"n":3}']);
    expect(qstash.stats()).toMatchObject({ published: 2, deduplicated: 1, deliveries: 2 });
  });

  it('accepts the id again once the deduplication window has passed', async () => {
    const qstash = await startQStash({ deduplicationWindowMs: 50 });
    const destination = await startDestination();
    const client = clientFor(qstash);
    const url = `${destination.url}/x`;

    await client.publishJSON({ url, body: {}, deduplicationId: 'same' });
    await new Promise((resolve) => setTimeout(resolve, 80));
    const again = await client.publishJSON({ url, body: {}, deduplicationId: 'same' });
    await qstash.idle();

    expect(again.deduplicated).toBeUndefined();
    expect(destination.received).toHaveLength(2);
  });
});

describe('a publisher with the wrong token', () => {
  it('is answered 401, which the Client throws as a QstashError, and nothing is delivered', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();

    const publishing = clientFor(qstash, 'not-the-token').publishJSON({ url: `${destination.url}/x`, body: {} });

    await expect(publishing).rejects.toBeInstanceOf(QstashError);
    await expect(publishing).rejects.toMatchObject({ status: 401 });
    await qstash.idle();
    expect(destination.received).toEqual([]);
    expect(qstash.stats().published).toBe(0);
  });
});

describe('a publish request the local QStash cannot accept', () => {
  it('rejects a destination that is not http(s) with 400', async () => {
    const qstash = await startQStash();

    const response = await fetch(`${qstash.url}/v2/publish/ftp://127.0.0.1/file`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: '{}',
    });

    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: expect.stringContaining('invalid destination url') as unknown });
  });

  it('rejects an unreadable Upstash-Delay with 400 and keeps nothing', async () => {
    const qstash = await startQStash();
    const destination = await startDestination();

    const response = await fetch(`${qstash.url}/v2/publish/${destination.url}/x`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'upstash-delay': '5 minutes' },
      body: '{}',
    });

    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'invalid Upstash-Delay: 5 minutes' });
    expect(qstash.stats().published).toBe(0);
  });
});

describe('the duplicate delivery fault', () => {
  it('delivers the same message twice at once, both copies validly signed', async () => {
    const qstash = await startQStash({ faults: { rng: () => 0, duplicateRate: 1 } });
    const destination = await startDestination();
    const url = `${destination.url}/api/runway-callback`;

    const published = await clientFor(qstash).publishJSON({ url, body: { taskId: 't' } });
    await qstash.idle();

    expect(destination.received).toHaveLength(2);
    for (const delivery of destination.received) {
      expect(delivery.headers['upstash-message-id']).toBe(published.messageId);
      expect(delivery.headers['upstash-retried']).toBe('0');
      await expect(receiver.verify({ signature: signatureOf(delivery), body: delivery.body, url })).resolves.toBe(true);
    }
    expect(qstash.stats()).toMatchObject({ published: 1, deliveries: 2, succeeded: 1, duplicatesInjected: 1 });
  });

  it('delivers a successfully delivered message once more later with the late duplicate fault', async () => {
    const qstash = await startQStash({ faults: { rng: () => 0.5, lateDuplicateRate: 1 } });
    const destination = await startDestination();

    const published = await clientFor(qstash).publishJSON({ url: `${destination.url}/x`, body: {} });
    await qstash.idle();

    const [first, late] = destination.received;
    if (first === undefined || late === undefined) throw new Error('expected two deliveries');
    expect(late.headers['upstash-message-id']).toBe(published.messageId);
    // 1 s + 0.5 × 19 s of QStash time at 0.01 is 105 ms.
    expect(late.at - first.at).toBeGreaterThanOrEqual(95);
    expect(only(qstash.messages()).attempts.map((attempt) => attempt.duplicate)).toEqual([false, true]);
  });

  it('lets messages overtake each other with reorder jitter', async () => {
    const draws = [0.9, 0];
    const qstash = await startQStash({ faults: { rng: () => draws.shift() ?? 0, reorderJitterMs: 20_000 } });
    const destination = await startDestination();
    const client = clientFor(qstash);

    await client.publishJSON({ url: `${destination.url}/x`, body: { order: 'first' } });
    await client.publishJSON({ url: `${destination.url}/x`, body: { order: 'second' } });
    await qstash.idle();

    expect(destination.received.map((request) => request.body)).toEqual(['{"order":"second"}', '{"order":"first"}']);
  });
});

describe('a local QStash being waited on or closed', () => {
  it('idle() resolves at once when nothing was published', async () => {
    const qstash = await startQStash();

    await expect(qstash.idle()).resolves.toBeUndefined();
  });

  it('close() cancels a far-off delivery, releases idle() and leaves nothing delivered', async () => {
    const qstash = await startLocalQStash({
      token: TOKEN,
      currentSigningKey: CURRENT_SIGNING_KEY,
      nextSigningKey: NEXT_SIGNING_KEY,
    });
    const destination = await startDestination();

    await clientFor(qstash).publishJSON({ url: `${destination.url}/x`, body: {}, delay: '1d' });
    const idle = qstash.idle();
    await qstash.close();
    await idle;

    expect(destination.received).toEqual([]);
    expect(only(qstash.messages()).state).toBe('cancelled');
    await expect(fetch(`${qstash.url}/v2/publish/${destination.url}`, { method: 'POST' })).rejects.toThrow();
  });

  it('close() aborts a delivery in flight without counting it as failed', async () => {
    const qstash = await startLocalQStash({
      token: TOKEN,
      currentSigningKey: CURRENT_SIGNING_KEY,
      nextSigningKey: NEXT_SIGNING_KEY,
    });
    const destination = await startDestination(() => ({ status: 200, afterMs: 5_000 }));

    await clientFor(qstash).publishJSON({ url: `${destination.url}/slow`, body: {} });
    while (destination.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const startedClosing = Date.now();
    await qstash.close();

    expect(Date.now() - startedClosing).toBeLessThan(1_000);
    expect(qstash.stats()).toMatchObject({ deliveries: 1, failed: 0, retried: 0 });
    expect(only(only(qstash.messages()).attempts).error).toBe('aborted: local QStash closed');
  });
});

describe('the delivery policy', () => {
  it('backs off about 12 s, 2.5 min and 30 min like QStash, capped at a day', () => {
    expect(Math.round(defaultRetryDelayMs(1) / 1000)).toBe(12);
    expect(Math.round(defaultRetryDelayMs(2) / 1000)).toBe(148);
    expect(Math.round(defaultRetryDelayMs(3) / 1000)).toBe(1808);
    expect(defaultRetryDelayMs(10)).toBe(86_400_000);
  });

  it('decides success, stop, retry and failure from one attempt', () => {
    const backoff = (retried: number): number => retried * 1000;
    const answer = (status: number, nonRetryable = false, retryAfterMs?: number) =>
      ({ kind: 'response', status, nonRetryable, retryAfterMs }) as const;

    expect(decideNextStep(answer(204), 0, 3, backoff)).toEqual({ kind: 'succeeded' });
    expect(decideNextStep(answer(489, true), 0, 3, backoff)).toEqual({ kind: 'stopped' });
    expect(decideNextStep(answer(489), 0, 3, backoff)).toEqual({ kind: 'retry', retried: 1, delayMs: 1000 });
    expect(decideNextStep(answer(500, false, 7000), 1, 3, backoff)).toEqual({ kind: 'retry', retried: 2, delayMs: 7000 });
    expect(decideNextStep({ kind: 'error', error: 'timeout' }, 2, 3, backoff)).toEqual({
      kind: 'retry',
      retried: 3,
      delayMs: 3000,
    });
    expect(decideNextStep(answer(500), 3, 3, backoff)).toEqual({ kind: 'failed' });
    expect(decideNextStep(answer(500), 0, 0, backoff)).toEqual({ kind: 'failed' });
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfterMs('30', now)).toBe(30_000);
    expect(parseRetryAfterMs('Wed, 01 Jan 2025 00:01:00 GMT', now)).toBe(60_000);
    expect(parseRetryAfterMs('soon', now)).toBeUndefined();
    expect(parseRetryAfterMs(null, now)).toBeUndefined();
  });

  it('reads Upstash-Delay durations in ms, s, m, h and d', () => {
    expect(parseDurationMs('10s')).toBe(10_000);
    expect(parseDurationMs('3m')).toBe(180_000);
    expect(parseDurationMs('2h')).toBe(7_200_000);
    expect(parseDurationMs('7d')).toBe(604_800_000);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs('10')).toBeNull();
    expect(parseDurationMs('5 minutes')).toBeNull();
  });
});
