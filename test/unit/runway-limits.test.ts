import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createRunway } from '../../lib/clients/runway.js';
import { LIMITS_CACHE_MS, createRunwayLimits } from '../../lib/clients/runway-limits.js';

/** A loopback Runway that answers `GET /v1/organization` as told, counting the calls. */
interface OrgServer {
  readonly url: string;
  calls: number;
  answer: { status: number; body: unknown };
  close(): Promise<void>;
}

const servers: OrgServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

const organization = (limit: number) => ({
  creditBalance: 100,
  tier: { models: { gen4_turbo: { maxConcurrentGenerations: limit, maxDailyGenerations: 100 } } },
  usage: { models: { gen4_turbo: { dailyGenerations: 10 } } },
});

async function orgServer(): Promise<OrgServer> {
  const state: OrgServer = { url: '', calls: 0, answer: { status: 200, body: organization(3) }, close: () => Promise.resolve() };
  const server: Server = createServer((req, res) => {
    if (req.url === '/v1/organization') state.calls++;
    res.writeHead(state.answer.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(state.answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
  servers.push(state);
  return state;
}

function limitsAgainst(server: OrgServer, clock: { now: number }) {
  const runway = createRunway({ baseUrl: server.url, apiKey: 'key', timeoutMs: 2_000 });
  return createRunwayLimits(runway, { now: () => clock.now, log: pino({ level: 'silent' }) });
}

describe('Runway limits read through the cache', () => {
  it('asks Runway once a minute at most, and reads the tier and usage', async () => {
    const server = await orgServer();
    const clock = { now: 1_000_000 };
    const limits = limitsAgainst(server, clock);

    expect(await limits.current()).toMatchObject({ source: 'fresh', models: { gen4_turbo: { maxConcurrent: 3, dailyRemaining: 90 } } });
    clock.now += LIMITS_CACHE_MS - 1;
    expect(await limits.current()).toMatchObject({ source: 'cached', models: { gen4_turbo: { maxConcurrent: 3 } } });
    expect(server.calls).toBe(1);

    server.answer = { status: 200, body: organization(7) };
    clock.now += 1;
    expect(await limits.current()).toMatchObject({ source: 'fresh', models: { gen4_turbo: { maxConcurrent: 7 } } });
    expect(server.calls).toBe(2);
  });

  it('shares one call between callers that ask at the same time', async () => {
    const server = await orgServer();
    const limits = limitsAgainst(server, { now: 0 });

    await Promise.all([limits.current(), limits.current(), limits.current()]);

    expect(server.calls).toBe(1);
  });

  it('keeps the last known limits when a later call fails', async () => {
    const server = await orgServer();
    const clock = { now: 0 };
    const limits = limitsAgainst(server, clock);
    await limits.current();

    server.answer = { status: 500, body: { error: 'Internal server error' } };
    clock.now += LIMITS_CACHE_MS;

    expect(await limits.current()).toMatchObject({ source: 'stale', models: { gen4_turbo: { maxConcurrent: 3 } } });
  });

  it.each([
    ['answers 500', { status: 500, body: { error: 'Internal server error' } }],
    ['answers an unexpected shape', { status: 200, body: { tier: 'gold' } }],
    ['refuses the key', { status: 401, body: { error: 'Incorrect or missing API key' } }],
  ])('falls back to one generation per model when Runway %s and nothing was read before', async (_what, answer) => {
    const server = await orgServer();
    server.answer = answer;
    const limits = limitsAgainst(server, { now: 0 });

    const reading = await limits.current();

    expect(reading.source).toBe('fallback');
    expect(Object.values(reading.models).every((model) => model.maxConcurrent === 1)).toBe(true);
  });
});
