import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { allReported } from '../../sandbox/demo/report.js';
import type { Job } from '../../lib/steps/messages.js';
import { pollJobs, waitForTaskStatus } from '../support/flow.js';
import {
  CRON_SECRET,
  DEMO_KEYS,
  closeHarnesses,
  seedItem,
  startHarness,
  until,
  type Harness,
  type HarnessOptions,
} from '../support/harness.js';
import { cronSummarySchema } from '../support/cron-summary.js';

afterEach(closeHarnesses);

/**
 * Backpressure: cron-poll leases no more than Runway can start
 * now — per model, the limit from `GET /v1/organization` minus this worker's generations in
 * flight — and the drain chain takes the rest as slots free.
 */

const capacitySchema = z.object({
  limits: z.string(),
  models: z.record(z.string(), z.object({ limit: z.number(), in_flight: z.number(), free: z.number(), paused: z.boolean() })),
});
const summarySchema = cronSummarySchema.extend({ capacity: capacitySchema.optional() });
type Summary = z.infer<typeof summarySchema>;

async function cron(harness: Harness): Promise<Summary> {
  const answer = await harness.cron();
  expect(answer.status).toBe(200);
  return summarySchema.parse(answer.json);
}

type Concurrency = NonNullable<NonNullable<NonNullable<HarnessOptions['sandbox']>['runway']>['concurrency']>;

/** Items queued oldest first (the sandbox seeds them in order). */
function queue(count: number, overrides: Parameters<typeof seedItem>[1] = {}) {
  return Array.from({ length: count }, () => seedItem('landscape.jpg', overrides));
}

async function limited(concurrency: Concurrency, items: ReturnType<typeof queue>, options: HarnessOptions = {}): Promise<Harness> {
  return startHarness({ ...options, items, sandbox: { runway: { generationMs: 300, concurrency }, ...options.sandbox } });
}

/** Another client of the same Runway account creates a task with the queue's first photo. */
async function otherClientTakesTheSlot(harness: Harness): Promise<string> {
  const photo = await readFile(harness.sandbox.storage.filePath('group-photos', harness.runtime.items[0]?.photo_storage_path ?? '') ?? '');
  const response = await fetch(`${harness.sandbox.runwayApiUrl}/v1/image_to_video`, {
    method: 'POST',
    headers: { authorization: `Bearer ${DEMO_KEYS.runway}`, 'x-runway-version': '2024-11-06', 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gen4_turbo', promptImage: `data:image/jpeg;base64,${photo.toString('base64')}`, ratio: '1104:832', duration: 5 }),
  });
  return z.object({ id: z.string() }).parse(await response.json()).id;
}

const statuses = (harness: Harness) => harness.sandbox.app.items().map((item) => item.status);

describe('a burst of six items against Runway allowing two gen4_turbo generations at once', () => {
  it('leases two, submits two, leaves four untouched in the queue and says why it stopped', async () => {
    const harness = await limited(2, queue(6));

    const summary = await cron(harness);

    expect(summary).toMatchObject({ leased: 2, submitted: 2, stopped: 'capacity' });
    expect(summary.capacity?.models['gen4_turbo']).toEqual({ limit: 2, in_flight: 0, free: 2, paused: false });
    // Not leased and released: never asked for at all.
    expect(harness.appCalls('next-task')).toHaveLength(2);
    expect(harness.appCalls('heartbeat')).toEqual([]);
    expect(statuses(harness).filter((status) => status === 'pending')).toHaveLength(4);
    expect(harness.sandbox.runway.tasks()).toHaveLength(2);
    // More may wait: a drain run is scheduled for when a slot should be free.
    expect(summary.drain_scheduled).toBe(true);
  });

  it('leases nothing on the next run while both generations run, with the limits read once', async () => {
    const harness = await limited(2, queue(6));
    await cron(harness);
    const mark = harness.mark();

    const summary = await cron(harness);

    expect(summary).toMatchObject({ leased: 0, stopped: 'capacity' });
    expect(summary.capacity).toMatchObject({ limits: 'cached', models: { gen4_turbo: { limit: 2, in_flight: 2, free: 0 } } });
    expect(harness.appCalls('next-task', mark)).toEqual([]);
    expect(harness.requests({ service: 'runway', path: '/v1/organization' })).toHaveLength(1);
  });

  it('leases again once a generation has finished and its poll has seen it', async () => {
    const harness = await limited(2, queue(6));
    await cron(harness);
    const [first] = pollJobs(harness, harness.sandbox.app.items().find((item) => item.status === 'processing')?.item_id ?? '');
    await waitForTaskStatus(harness, (first as Job).runway_task_id, 'SUCCEEDED');
    expect((await harness.deliver('/api/runway-callback', { job: first })).status).toBe(200);

    const summary = await cron(harness);

    expect(summary).toMatchObject({ leased: 1, submitted: 1, stopped: 'capacity' });
    expect(summary.capacity?.models['gen4_turbo']).toMatchObject({ in_flight: 1, free: 1 });
  });

  it('schedules its drain run for when the first generation should be done', async () => {
    const harness = await limited(2, queue(6));

    await cron(harness);

    const [drain] = harness.messages('/api/cron-poll');
    expect(JSON.parse(drain?.body ?? '')).toEqual({ reason: 'drain' });
    // gen4_turbo's typical generation (45 s) is past the 30 s at most a capacity stop waits.
    expect(drain?.headers['upstash-delay']).toBe('30s');
  });

  it('completes all six, run after run, no task ever THROTTLED and never more than two running', async () => {
    const harness = await limited(2, queue(6), { delivery: 'auto' });

    // A cron tick every 100 ms, as the local runtime's ticker does every LOCAL_CRON_SECONDS.
    const ticker = setInterval(() => void harness.cron().catch(() => undefined), 100);
    try {
      await until(() => allReported(harness.sandbox, harness.runtime.items), 'every item to be reported', 30_000);
    } finally {
      clearInterval(ticker);
    }

    expect(harness.sandbox.app.items().every((item) => item.status === 'completed')).toBe(true);
    expect(harness.sandbox.runway.tasks()).toHaveLength(6);
    expect(harness.sandbox.runway.maxThrottledAtOnce()).toBe(0);
    expect(harness.sandbox.runway.maxActiveAtOnce('gen4_turbo')).toBeLessThanOrEqual(2);
    // No slot marker is left behind.
    const slots = await harness.runtime.deps.ledger.slots(0);
    expect(slots.inFlight).toEqual([]);
  });
});

describe('an item whose model is known only once it is leased', () => {
  it('is given back at once (extend_seconds 0) when its model has no free slot, and leasing stops', async () => {
    const [veoA, veoB] = queue(2, { inference_provider: 'veo3.1' });
    const harness = await limited({ 'veo3.1': 1 }, [veoA!, veoB!], { sandbox: { runway: { generationMs: 300, concurrency: { 'veo3.1': 1 } } } });

    const summary = await cron(harness);

    expect(summary).toMatchObject({ leased: 2, submitted: 1, released: 1, stopped: 'capacity' });
    const released = summary.items.find((item) => item.outcome === 'released');
    expect(released?.detail).toBe('runway: no free veo3.1 slot now');
    expect(harness.appCalls('heartbeat').map((request) => request.json)).toEqual([
      { item_id: released?.item_id, worker_id: 'runway-worker', extend_seconds: 0 },
    ]);
    expect(harness.sandbox.runway.tasks().map((task) => task.model)).toEqual(['veo3.1']);
    expect(await harness.runtime.deps.ledger.latest(released?.item_id ?? '')).toBeUndefined();
  });
});

describe('a task of ours waiting THROTTLED because another client holds the slot', () => {
  it('pauses leasing for the model until our task runs', async () => {
    const harness = await limited(1, queue(3), { sandbox: { runway: { generationMs: 20_000, concurrency: 1 } } });
    const other = await otherClientTakesTheSlot(harness);
    const first = await cron(harness);
    expect(first).toMatchObject({ submitted: 1 });
    const [ours] = harness.sandbox.runway.tasks().filter((task) => task.id !== other);
    expect(ours?.status).toBe('THROTTLED');
    const job = pollJobs(harness, harness.sandbox.app.items().find((item) => item.status === 'processing')?.item_id ?? '')[0] as Job;
    // Our limit-of-one slot is ours by the ledger's count anyway; show the pause on its own:
    // free the slot as far as the ledger knows, then see the THROTTLED poll pause leasing.
    await harness.runtime.deps.ledger.releaseSlot({ itemId: job.item_id, attempt: 1 }, 'gen4_turbo');

    expect((await harness.deliver('/api/runway-callback', { job })).status).toBe(200);
    const paused = await cron(harness);

    expect(paused).toMatchObject({ leased: 0, stopped: 'capacity', capacity: { models: { gen4_turbo: { paused: true, free: 0 } } } });

    // The other client's task goes away; ours runs; its next poll lifts the pause.
    await fetch(`${harness.sandbox.runwayApiUrl}/v1/tasks/${other}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${DEMO_KEYS.runway}`, 'x-runway-version': '2024-11-06' },
    });
    await until(() => harness.sandbox.runway.task(job.runway_task_id)?.status === 'RUNNING', 'our task to run');
    const [next] = pollJobs(harness, job.item_id).slice(-1);
    expect((await harness.deliver('/api/runway-callback', { job: next })).status).toBe(200);
    const resumed = await cron(harness);
    expect(resumed.capacity?.models['gen4_turbo']).toMatchObject({ paused: false });
  });
});

describe('a task that waited THROTTLED and then ran out of time', () => {
  it('is reported timed out with a note that it waited for Runway\'s concurrency limit', async () => {
    const harness = await limited(1, queue(1), { env: { RUNWAY_TIMEOUT_SECONDS: '2' }, sandbox: { runway: { generationMs: 20_000, concurrency: 1 } } });
    const headers = { authorization: `Bearer ${DEMO_KEYS.runway}`, 'x-runway-version': '2024-11-06' };
    const other = await otherClientTakesTheSlot(harness);
    await cron(harness);
    const itemId = harness.runtime.items[0]?.item_id ?? '';
    const [job] = pollJobs(harness, itemId);
    expect((await harness.deliver('/api/runway-callback', { job })).status).toBe(200);
    await fetch(`${harness.sandbox.runwayApiUrl}/v1/tasks/${other}`, { method: 'DELETE', headers });
    const [, throttledLook] = pollJobs(harness, itemId);
    expect(throttledLook).toMatchObject({ last_status: 'THROTTLED', throttled: true });
    await until(() => Date.now() - (job as Job).submitted_at > 2_100 && harness.sandbox.runway.task((job as Job).runway_task_id)?.status !== 'THROTTLED', 'the timeout to pass');

    expect((await harness.deliver('/api/runway-callback', { job: throttledLook })).status).toBe(489);

    expect(harness.sandbox.app.reports(itemId)).toMatchObject([
      { status: 'failed', error_message: expect.stringMatching(/^runway: timed out after 2 s \(last status (PENDING|RUNNING); it waited THROTTLED for Runway's concurrency limit\)$/) as unknown },
    ]);
  });
});

describe('Runway limits that leave nothing to start today', () => {
  it('gives its first lease back when the daily generation cap is used up, and leases nothing on the runs after', async () => {
    const harness = await startHarness({ items: queue(2), sandbox: { runway: { generationMs: 300, dailyLimit: 0 } } });

    const summary = await cron(harness);

    // The first lease comes before the plan (an idle queue costs nothing else): given back untouched.
    expect(summary).toMatchObject({ leased: 1, released: 1, submitted: 0, stopped: 'capacity' });
    expect(summary.capacity?.models['gen4_turbo']).toMatchObject({ free: 0 });
    expect(harness.appCalls('next-task')).toHaveLength(1);
    expect(harness.appCalls('heartbeat').map((request) => request.json)).toEqual([
      { item_id: summary.items[0]?.item_id, worker_id: 'runway-worker', extend_seconds: 0 },
    ]);
    expect(harness.requests({ service: 'runway', path: '/v1/image_to_video' })).toEqual([]);

    // Runway is known full now: the next run plans before it leases.
    const mark = harness.mark();
    expect(await cron(harness)).toMatchObject({ leased: 0, stopped: 'capacity' });
    expect(harness.appCalls('next-task', mark)).toEqual([]);
  });
});

describe('cron-poll asked by hand', () => {
  it('answers with the capacity it planned from, for a person reading it', async () => {
    const harness = await limited(3, queue(1));

    const answer = await fetch(`${harness.url}/api/cron-poll?limit=1`, { headers: { authorization: `Bearer ${CRON_SECRET}` } });

    const summary = summarySchema.parse(await answer.json());
    expect(summary.capacity).toMatchObject({ limits: 'fresh', models: { gen4_turbo: { limit: 3, in_flight: 0, free: 3 } } });
  });
});
