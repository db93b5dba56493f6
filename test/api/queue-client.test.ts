import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startLocalQStash, type LocalQStash } from '../../server/local-qstash.js';
import { DEV_QSTASH } from '../../server/runtime.js';
import { createQueue, type Queue, type QueueOptions } from '../../lib/clients/queue.js';
import { UpstreamError } from '../../lib/errors.js';
import { QSTASH_RETRIES } from '../../lib/steps/messages.js';
import { closeStandIns, startStandIn } from '../support/extra-stand-in.js';
import { until } from '../support/wait.js';
import { REFUSED_URL } from '../support/refused.js';

/**
 * The QStash client on its own (contract §3): what a publish asks QStash for, what arrives
 * at the worker, and how QStash's refusals come back as errors carrying their retry decision.
 * The SDK itself retries only network errors; the client adds no retry of its own.
 */

interface Delivered {
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly url: URL;
}

interface Destination {
  readonly url: string;
  delivered(): readonly Delivered[];
}

const servers = new Set<Server>();
const qstashes = new Set<LocalQStash>();

afterEach(async () => {
  await Promise.all([...qstashes].map((qstash) => qstash.close()));
  qstashes.clear();
  await Promise.all(
    [...servers].map(
      (server) =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    ),
  );
  servers.clear();
  await closeStandIns();
});

async function listen(server: Server): Promise<number> {
  servers.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** Where QStash delivers: records every request and answers 200. */
async function startDestination(): Promise<Destination> {
  const delivered: Delivered[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') headers[name] = value;
      const path = req.url ?? '/';
      delivered.push({ path, headers, body: Buffer.concat(chunks).toString('utf8'), url: new URL(path, `http://${req.headers.host}`) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, delivered: () => [...delivered] };
}

async function startQStash(): Promise<LocalQStash> {
  const qstash = await startLocalQStash({ ...DEV_QSTASH, timeScale: 0.001 });
  qstashes.add(qstash);
  return qstash;
}

function queueFor(qstashUrl: string, workerBaseUrl: string, options: Partial<QueueOptions> = {}): Queue {
  return createQueue({ qstashUrl, workerBaseUrl, ...DEV_QSTASH, ...options });
}

const JOB_MESSAGE = { job: { item_id: 'item-1', attempt: 1, polls: 2 } };

describe('a publish QStash accepts', () => {
  it('arrives at the worker base URL plus the path, with the same body and the forwarded headers, signed so that verify accepts it', async () => {
    const [qstash, destination] = await Promise.all([startQStash(), startDestination()]);
    const queue = queueFor(qstash.url, destination.url);

    const published = await queue.publish({
      path: '/api/runway-callback',
      body: JOB_MESSAGE,
      delaySeconds: 0,
      deduplicationId: 'item-1-1-poll-2',
      headers: { 'x-worker-continuation': '2' },
    });

    expect(published).toEqual({ messageId: expect.any(String) as unknown, deduplicated: false });
    await until(() => destination.delivered().length === 1, 'the delivery');
    const [delivery] = destination.delivered();
    expect(delivery?.path).toBe('/api/runway-callback');
    expect(JSON.parse(delivery?.body ?? '')).toEqual(JOB_MESSAGE);
    expect(delivery?.headers['x-worker-continuation']).toBe('2');
    expect(delivery?.headers['upstash-message-id']).toBe(published.messageId);
    expect(delivery?.headers['x-vercel-protection-bypass']).toBeUndefined();
    const [message] = qstash.messages();
    expect(message).toMatchObject({ deduplicationId: 'item-1-1-poll-2', retries: QSTASH_RETRIES });
    expect(message?.headers['upstash-retries']).toBe(String(QSTASH_RETRIES));
    const signature = delivery?.headers['upstash-signature'] ?? null;
    expect(await queue.verify(signature, delivery?.body ?? '', delivery?.url ?? new URL(destination.url))).toBe(true);
    expect(await queue.verify(signature, '{"job":{}}', delivery?.url ?? new URL(destination.url))).toBe(false);
  });

  it('asks for the delay in whole seconds, and never for a negative one', async () => {
    const [qstash, destination] = await Promise.all([startQStash(), startDestination()]);
    const queue = queueFor(qstash.url, destination.url);

    for (const [delaySeconds, id] of [[2.6, 'a'], [-4, 'b']] as const) {
      await queue.publish({ path: '/api/runway-callback', body: JOB_MESSAGE, delaySeconds, deduplicationId: id });
    }

    expect(qstash.messages().map((message) => message.headers['upstash-delay'])).toEqual(['3s', '0s']);
  });

  it('says so when QStash dropped it as a duplicate, and QStash keeps one message', async () => {
    const [qstash, destination] = await Promise.all([startQStash(), startDestination()]);
    const queue = queueFor(qstash.url, destination.url);
    const request = { path: '/api/step-upload', body: JOB_MESSAGE, delaySeconds: 0, deduplicationId: 'item-1-1-upload' } as const;

    const first = await queue.publish(request);
    const second = await queue.publish(request);

    expect(first.deduplicated).toBe(false);
    expect(second).toEqual({ messageId: first.messageId, deduplicated: true });
    expect(qstash.messages()).toHaveLength(1);
  });

  it('takes the deployment protection bypass along, so a protected preview accepts the delivery', async () => {
    const [qstash, destination] = await Promise.all([startQStash(), startDestination()]);
    const queue = queueFor(qstash.url, destination.url, { protectionBypassSecret: 'bypass-secret-31d8' });

    await queue.publish({ path: '/api/step-upload', body: JOB_MESSAGE, delaySeconds: 0, deduplicationId: 'x' });

    await until(() => destination.delivered().length === 1, 'the delivery');
    expect(destination.delivered()[0]?.headers['x-vercel-protection-bypass']).toBe('bypass-secret-31d8');
  });
});

describe('a publish QStash refuses', () => {
  async function refusal(queue: Queue): Promise<UpstreamError> {
    const error: unknown = await queue
      .publish({ path: '/api/runway-callback', body: JOB_MESSAGE, delaySeconds: 5, deduplicationId: 'refused' })
      .then(() => undefined, (thrown: unknown) => thrown);
    if (!(error instanceof UpstreamError)) throw new Error(`expected an UpstreamError, got ${String(error)}`);
    return error;
  }

  it('for a wrong token is not worth retrying, and says which path and status', async () => {
    const qstash = await startQStash();
    const queue = queueFor(qstash.url, 'http://127.0.0.1:9', { token: 'not-the-token' });

    const error = await refusal(queue);

    expect(error).toMatchObject({ service: 'qstash', status: 401, retryable: false });
    expect(error.message).toBe('qstash: publish to /api/runway-callback failed (401)');
    expect(qstash.messages()).toEqual([]);
  });

  it.each([429, 500, 503])('with %d is worth another try later', async (status) => {
    const stand = await startStandIn({ target: 'http://127.0.0.1:9', answer: () => ({ status, json: { error: 'busy' } }) });
    const queue = queueFor(stand.url, 'http://127.0.0.1:9');

    const error = await refusal(queue);

    expect(error).toMatchObject({ service: 'qstash', status, retryable: true });
    expect(error.message).toBe(`qstash: publish to /api/runway-callback failed (${status})`);
    // One request: a status is never retried by the SDK, and the client adds no retry.
    expect(stand.requests()).toHaveLength(1);
  });

  it('because nothing answers is worth another try later, and has no status', async () => {
    const queue = queueFor(REFUSED_URL, 'http://127.0.0.1:9');

    const error = await refusal(queue);

    expect(error).toMatchObject({ service: 'qstash', status: undefined, retryable: true });
    expect(error.message).toBe('qstash: publish to /api/runway-callback failed');
  });
});

describe('the token check of the preflight', () => {
  it('accepts the token QStash accepts', async () => {
    const qstash = await startQStash();

    expect(await queueFor(qstash.url, 'http://127.0.0.1:9').checkToken()).toEqual({ ok: true, detail: 'token accepted' });
  });

  it('names the status QStash answered a wrong token with', async () => {
    const qstash = await startQStash();
    const queue = queueFor(qstash.url, 'http://127.0.0.1:9', { token: 'not-the-token' });

    expect(await queue.checkToken()).toEqual({ ok: false, detail: 'QStash answered 401', status: 401 });
  });

  it('says QStash is unreachable when nothing answers', async () => {
    const queue = queueFor(REFUSED_URL, 'http://127.0.0.1:9');

    expect(await queue.checkToken()).toEqual({ ok: false, detail: 'QStash unreachable' });
  });

  it('asks a QStash that drops every connection twice, not six times, before it says so', async () => {
    let connections = 0;
    const dropper = createNetServer((socket) => {
      connections += 1;
      socket.destroy();
    });
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = dropper.address() as AddressInfo;
      const queue = queueFor(`http://127.0.0.1:${port}`, 'http://127.0.0.1:9');

      expect(await queue.checkToken()).toEqual({ ok: false, detail: 'QStash unreachable' });
      expect(connections).toBe(2);
    } finally {
      await new Promise((resolve) => dropper.close(resolve));
    }
  });
});
