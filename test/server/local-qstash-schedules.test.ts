import { createServer } from 'node:http';
import { Client, QstashError, Receiver } from '@upstash/qstash';
import { afterEach, describe, expect, it } from 'vitest';
import { startLocalQStash, type LocalQStash } from '../../server/local-qstash.js';
import { parseCron } from '../../server/local-qstash/cron.js';
import { until } from '../support/wait.js';

// The public credentials of the official QStash dev server (contract.md §3).
const TOKEN = 'eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=';
const CURRENT_SIGNING_KEY = 'sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r';
const NEXT_SIGNING_KEY = 'sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs';
/** A schedule minute passes in 60 ms. */
const FAST = 0.001;
/** A schedule minute takes 10 minutes: nothing fires during a test. */
const STILL = 10;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startQStash(timeScale: number): Promise<LocalQStash> {
  const qstash = await startLocalQStash({ token: TOKEN, currentSigningKey: CURRENT_SIGNING_KEY, nextSigningKey: NEXT_SIGNING_KEY, timeScale });
  cleanups.push(() => qstash.close());
  return qstash;
}

function clientFor(qstash: LocalQStash, token = TOKEN): Client {
  return new Client({ token, baseUrl: qstash.url, devMode: false, retry: false, enableTelemetry: false });
}

interface Delivery {
  readonly method: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
}

/** A loopback destination answering 200 to everything, recording what arrived. */
async function startDestination(): Promise<{ url: string; received: Delivery[] }> {
  const received: Delivery[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({ method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${address.port}/api/cron-poll`, received };
}

async function statusOf(call: Promise<unknown>): Promise<number | undefined> {
  try {
    await call;
    return undefined;
  } catch (error) {
    if (error instanceof QstashError) return error.status;
    throw error;
  }
}

describe('a schedule created through the real Client with a schedule id', () => {
  it('is listed and read back with its id, cron, destination, method, retries and forwarded headers', async () => {
    const qstash = await startQStash(STILL);
    const client = clientFor(qstash);

    const created = await client.schedules.create({
      destination: 'https://worker.example/api/cron-poll',
      cron: '*/10 * * * *',
      scheduleId: 'runway-worker-cron',
      method: 'POST',
      retries: 0,
      headers: { 'x-vercel-protection-bypass': 'bypass-value' },
    });

    expect(created).toEqual({ scheduleId: 'runway-worker-cron' });
    const read = await client.schedules.get('runway-worker-cron');
    expect(read).toMatchObject({
      scheduleId: 'runway-worker-cron',
      cron: '*/10 * * * *',
      destination: 'https://worker.example/api/cron-poll',
      method: 'POST',
      retries: 0,
      isPaused: false,
      header: { 'x-vercel-protection-bypass': ['bypass-value'] },
    });
    expect(await client.schedules.list()).toEqual([read]);
    const [recorded] = qstash.schedules();
    expect(recorded).toMatchObject({ scheduleId: 'runway-worker-cron', cron: '*/10 * * * *', retries: 0, body: '' });
    expect(recorded?.headers).toMatchObject({ 'upstash-cron': '*/10 * * * *', 'upstash-schedule-id': 'runway-worker-cron' });
    expect(recorded?.headers).not.toHaveProperty('authorization');
  });

  it('is replaced, not duplicated, when created again with the same id', async () => {
    const qstash = await startQStash(STILL);
    const client = clientFor(qstash);
    await client.schedules.create({ destination: 'https://old.example/api/cron-poll', cron: '*/10 * * * *', scheduleId: 'runway-worker-cron' });
    const first = qstash.schedules()[0];

    await client.schedules.create({ destination: 'https://new.example/api/cron-poll', cron: '*/5 * * * *', scheduleId: 'runway-worker-cron' });

    const schedules = await client.schedules.list();
    expect(schedules.map((s) => [s.scheduleId, s.cron, s.destination])).toEqual([
      ['runway-worker-cron', '*/5 * * * *', 'https://new.example/api/cron-poll'],
    ]);
    expect(qstash.schedules()[0]?.createdAt).toBe(first?.createdAt);
  });

  it('gets an id of its own when created without one', async () => {
    const qstash = await startQStash(STILL);

    const { scheduleId } = await clientFor(qstash).schedules.create({ destination: 'https://worker.example/api/cron-poll', cron: '0 * * * *' });

    expect(scheduleId).toMatch(/^scd_[0-9a-f]{24}$/);
    expect(qstash.schedules().map((s) => s.scheduleId)).toEqual([scheduleId]);
  });
});

describe('a schedule that is deleted', () => {
  it('is gone from the list, and reading or deleting it again answers 404', async () => {
    const qstash = await startQStash(STILL);
    const client = clientFor(qstash);
    await client.schedules.create({ destination: 'https://worker.example/api/cron-poll', cron: '* * * * *', scheduleId: 'gone' });

    await client.schedules.delete('gone');

    expect(await client.schedules.list()).toEqual([]);
    expect(qstash.schedules()).toEqual([]);
    expect(await statusOf(client.schedules.get('gone'))).toBe(404);
    expect(await statusOf(client.schedules.delete('gone'))).toBe(404);
  });
});

describe('the schedules API with the wrong token', () => {
  it('answers 401 to every call and creates nothing', async () => {
    const qstash = await startQStash(STILL);
    const client = clientFor(qstash, 'not-the-token');

    expect(await statusOf(client.schedules.create({ destination: 'https://w.example/api/cron-poll', cron: '* * * * *' }))).toBe(401);
    expect(await statusOf(client.schedules.list())).toBe(401);
    expect(await statusOf(client.schedules.get('x'))).toBe(401);
    expect(await statusOf(client.schedules.delete('x'))).toBe(401);
    expect(qstash.schedules()).toEqual([]);
  });
});

describe('a schedule the local QStash cannot read', () => {
  it('is refused with 400 for a cron it does not understand, or for a missing Upstash-Cron', async () => {
    const qstash = await startQStash(STILL);

    const badCron = clientFor(qstash).schedules.create({ destination: 'https://w.example/api/cron-poll', cron: '*/10 * * MON *' });
    expect(await statusOf(badCron)).toBe(400);
    const noCron = await fetch(`${qstash.url}/v2/schedules/https://w.example/api/cron-poll`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(noCron.status).toBe(400);
    expect(await noCron.json()).toEqual({ error: 'missing Upstash-Cron header' });
    expect(qstash.schedules()).toEqual([]);
  });
});

describe('a schedule that comes due', () => {
  it('publishes a message on every tick, signed for its destination and naming the schedule', async () => {
    const qstash = await startQStash(FAST);
    const destination = await startDestination();
    const client = clientFor(qstash);

    await client.schedules.create({ destination: destination.url, cron: '* * * * *', scheduleId: 'every-minute', retries: 0 });
    await until(() => destination.received.length >= 2, 'two scheduled deliveries');

    const receiver = new Receiver({ currentSigningKey: CURRENT_SIGNING_KEY, nextSigningKey: NEXT_SIGNING_KEY });
    for (const delivery of destination.received.slice(0, 2)) {
      expect(delivery.method).toBe('POST');
      expect(delivery.body).toBe('');
      expect(delivery.headers['upstash-schedule-id']).toBe('every-minute');
      const signature = String(delivery.headers['upstash-signature']);
      expect(await receiver.verify({ signature, body: '', url: destination.url })).toBe(true);
    }
    const fired = qstash.schedules()[0]?.firedMessageIds ?? [];
    const messages = qstash.messages().filter((message) => fired.includes(message.messageId));
    expect(messages.length).toBeGreaterThanOrEqual(2);
    expect(messages.every((message) => message.url === destination.url && message.retries === 0)).toBe(true);
  });

  it('stops firing while paused, fires again once resumed, and never after it is deleted', async () => {
    const qstash = await startQStash(FAST);
    const destination = await startDestination();
    const client = clientFor(qstash);
    await client.schedules.create({ destination: destination.url, cron: '* * * * *', scheduleId: 'paused' });
    await until(() => destination.received.length >= 1, 'a first scheduled delivery');

    await client.schedules.pause({ schedule: 'paused' });
    await qstash.idle();
    const whilePaused = destination.received.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(destination.received.length).toBe(whilePaused);
    expect((await client.schedules.get('paused')).isPaused).toBe(true);

    await client.schedules.resume({ schedule: 'paused' });
    await until(() => destination.received.length > whilePaused, 'a delivery after resuming');

    await client.schedules.delete('paused');
    await qstash.idle();
    const afterDelete = destination.received.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(destination.received.length).toBe(afterDelete);
  });
});

describe('the cron expressions a schedule takes', () => {
  const at = (iso: string): number => Date.parse(iso);
  const next = (expression: string, after: string): string | undefined => {
    const parsed = parseCron(expression);
    if (!parsed.ok) throw new Error(parsed.error);
    const due = parsed.cron.next(at(after));
    return due === undefined ? undefined : new Date(due).toISOString();
  };

  it('steps minutes and hours from the top of the hour and day, in UTC', () => {
    expect(next('*/10 * * * *', '2026-03-01T10:07:30Z')).toBe('2026-03-01T10:10:00.000Z');
    expect(next('*/10 * * * *', '2026-03-01T10:10:00Z')).toBe('2026-03-01T10:20:00.000Z');
    expect(next('0 */6 * * *', '2026-03-01T19:00:00Z')).toBe('2026-03-02T00:00:00.000Z');
    expect(next('0 0 * * *', '2026-12-31T23:59:00Z')).toBe('2027-01-01T00:00:00.000Z');
    expect(next('30 9-17/4 * * *', '2026-03-01T13:31:00Z')).toBe('2026-03-01T17:30:00.000Z');
  });

  it('runs on a day matching either restricted day field, as classic cron does', () => {
    // 2026-03-02 is a Monday; the 15th is a Sunday.
    expect(next('0 12 15 * 1', '2026-03-01T00:00:00Z')).toBe('2026-03-02T12:00:00.000Z');
    expect(next('0 12 15 * 1', '2026-03-10T00:00:00Z')).toBe('2026-03-15T12:00:00.000Z');
    expect(next('0 0 * * 7', '2026-03-10T00:00:00Z')).toBe('2026-03-15T00:00:00.000Z');
    expect(next('0 0 29 2 *', '2026-03-01T00:00:00Z')).toBe('2028-02-29T00:00:00.000Z');
  });

  it('refuses what it does not understand rather than reading it differently', () => {
    for (const expression of ['* * * *', '*/10 * * * * *', '60 * * * *', '* * * JAN *', '*/0 * * * *', 'CRON_TZ=UTC * * * * *', '5-1 * * * *']) {
      expect(parseCron(expression).ok, expression).toBe(false);
    }
  });
});
