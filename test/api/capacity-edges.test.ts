import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseConfig } from '../../lib/config.js';
import { handleCronGet } from '../../lib/handlers/cron-poll.js';
import { createDeps } from '../../lib/runtime.js';
import {
  CRON_SECRET,
  RUNWAY_WORK,
  WORKER_ID,
  closeHarnesses,
  seedItem,
  silentLogger,
  startHarness,
  workerEnv,
} from '../support/harness.js';
import { countedRng, SCRIPTED_FAULT_RATE } from '../support/scripted-rng.js';
import { cronSummarySchema } from '../support/cron-summary.js';

afterEach(closeHarnesses);

/**
 * Backpressure at its edges (design §2): Runway's limits that cannot be read, and a worker
 * run without backpressure at all (the benchmark's baseline).
 */

const summarySchema = cronSummarySchema.extend({
  capacity: z.object({ limits: z.string(), models: z.record(z.string(), z.record(z.string(), z.unknown())) }).optional(),
});

const queue = (count: number) => Array.from({ length: count }, () => seedItem('landscape.jpg'));

describe('Runway\'s limits unreadable on the first look (GET /v1/organization answers 502)', () => {
  it('leases one task per model, the lowest tier\'s limit, and says the limits are a fallback', async () => {
    const faults = countedRng();
    const harness = await startHarness({
      items: queue(3),
      sandbox: { rng: faults.rng, runway: { generationMs: 60_000 }, faults: { runway: { error502Rate: SCRIPTED_FAULT_RATE } } },
    });
    faults.fireOn(1);

    const answer = await harness.cron();

    expect(answer.status).toBe(200);
    const summary = summarySchema.parse(answer.json);
    expect(summary).toMatchObject({ leased: 1, submitted: 1, stopped: 'capacity', drain_scheduled: true });
    // Nothing is known of today's usage, so the answer names no daily remainder.
    expect(summary.capacity).toMatchObject({ limits: 'fallback' });
    expect(summary.capacity?.models['gen4_turbo']).toEqual({ limit: 1, in_flight: 0, free: 1, paused: false });
    expect(harness.requests({ service: 'runway', path: '/v1/organization' })).toHaveLength(1);
    expect(harness.appCalls('next-task')).toHaveLength(1);
    expect(harness.sandbox.runway.tasks()).toHaveLength(1);
    expect(harness.sandbox.app.items().filter((item) => item.status === 'pending')).toHaveLength(2);
  });
});

describe('a worker running without backpressure', () => {
  it('leases all it can without reading Runway\'s limits, past Runway\'s concurrency, and answers no capacity plan', async () => {
    const items = queue(3);
    const harness = await startHarness({ items, sandbox: { runway: { generationMs: 60_000, concurrency: 1 } } });
    // One item cannot have its photo signed in this run: given back, it hands its slot back too.
    const [unsigned] = items;
    harness.sandbox.app.failNext('presign-download', 3, { itemId: unsigned?.item_id ?? '' });
    const deps = createDeps(parseConfig({ ...workerEnv(harness), CRON_SECRET }), { log: silentLogger(), backpressure: false });
    const request = new Request(`${harness.url}/api/cron-poll`, { headers: { authorization: `Bearer ${CRON_SECRET}` } });

    const answer = await handleCronGet(request, () => deps);

    expect(answer.status).toBe(200);
    const summary = summarySchema.parse(await answer.json());
    expect(summary).toMatchObject({ leased: 3, submitted: 2, released: 1, stopped: 'idle', drain_scheduled: false });
    expect(summary).not.toHaveProperty('capacity');
    expect(summary.items.find((item) => item.outcome === 'released')?.item_id).toBe(unsigned?.item_id);
    expect(harness.requests({ service: 'runway', path: '/v1/organization' })).toEqual([]);
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK, method: 'POST' })).toHaveLength(2);
    expect(harness.appCalls('heartbeat').map((call) => call.json)).toEqual([{ item_id: unsigned?.item_id, worker_id: WORKER_ID, extend_seconds: 0 }]);
    // Two tasks for a limit of one: the second waits THROTTLED, which backpressure exists to avoid.
    expect(harness.sandbox.runway.tasks()).toHaveLength(2);
    expect(harness.sandbox.runway.maxThrottledAtOnce('gen4_turbo')).toBe(1);
  });
});
