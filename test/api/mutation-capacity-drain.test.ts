import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { readFixture } from '../../sandbox/seed.js';
import { CRON_BUDGET_MS, DRAIN_DEDUP_WINDOW_MS, LEASE_CONCURRENCY, runCronPoll } from '../../lib/steps/cron-poll.js';
import type { Job } from '../../lib/steps/messages.js';
import { pollJobs, submit, waitForTaskStatus } from '../support/flow.js';
import { closeStandIns, startStandIn } from '../support/extra-stand-in.js';
import { closeExtraWorkers, startExtraWorker } from '../support/extra-worker.js';
import {
  RUNWAY_AUTH,
  WORKER_ID,
  closeHarnesses,
  seedItem,
  startHarness,
  type Answer,
  type Harness,
  type HarnessOptions,
} from '../support/harness.js';
import { cronSummarySchema } from '../support/cron-summary.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * How cron-poll hands out Runway slots within one run (a slot given back is leased again),
 * when it keeps the drain chain going and how long that chain waits, and the deduplication
 * ids of the messages that chain the steps, as QStash receives them.
 */

const modelSummary = z.object({ limit: z.number(), in_flight: z.number(), free: z.number(), paused: z.boolean() });
const summarySchema = cronSummarySchema.extend({
  capacity: z.object({ limits: z.string(), models: z.record(z.string(), modelSummary) }).optional(),
});
type Summary = z.infer<typeof summarySchema>;

function summaryOf(answer: Answer): Summary {
  expect(answer.status).toBe(200);
  return summarySchema.parse(answer.json);
}

type Concurrency = NonNullable<NonNullable<NonNullable<HarnessOptions['sandbox']>['runway']>['concurrency']>;

function queue(count: number, overrides: Parameters<typeof seedItem>[1] = {}) {
  return Array.from({ length: count }, () => seedItem('landscape.jpg', overrides));
}

async function limited(concurrency: Concurrency, items: ReturnType<typeof queue>): Promise<Harness> {
  return startHarness({ items, sandbox: { runway: { generationMs: 60_000, concurrency } } });
}

const drainBucket = (ms: number): number => Math.floor(ms / DRAIN_DEDUP_WINDOW_MS);

describe('a queue behind Runway allowing one gen4_turbo generation at once', () => {
  it('drains on after leasing, not after a cron run that leased nothing, and a drain run waits for the oldest generation in flight', async () => {
    const harness = await limited(1, queue(3));
    const before = Date.now();

    const first = summaryOf(await harness.cron());

    const after = Date.now();
    expect(first).toMatchObject({ leased: 1, submitted: 1, stopped: 'capacity', drain_scheduled: true });
    const [drain] = harness.messages('/api/cron-poll');
    expect(drain?.headers['upstash-delay']).toBe('30s');
    // One drain per 1 s bucket of the clock: a second run in the same bucket is deduplicated by QStash.
    const dedupId = drain?.headers['upstash-deduplication-id'] ?? '';
    expect([`cron-drain-${drainBucket(before)}`, `cron-drain-${drainBucket(after)}`]).toContain(dedupId);

    // A cron tick 10 s later (another drain bucket, another process) leases before it plans,
    // finds no free slot and gives its lease back untouched: it took nothing on, so no drain.
    const tick = await startExtraWorker(harness, { now: () => Date.now() + 10_000 });
    const idle = summaryOf(await tick.cron());
    expect(idle).toMatchObject({ leased: 1, released: 1, submitted: 0, stopped: 'capacity', drain_scheduled: false });
    expect(tick.messages()).toEqual([]);

    // A drain message 20 s after the generation started keeps the chain going, and waits
    // until that generation should be done (gen4_turbo's typical 45 s), not the 30 s at most.
    const drainer = await startExtraWorker(harness, { now: () => Date.now() + 20_000 });
    const drained = summaryOf(await drainer.deliver('/api/cron-poll', { reason: 'drain' }));
    expect(drained).toMatchObject({ leased: 0, stopped: 'capacity', drain_scheduled: true });
    expect(drained.capacity?.models['gen4_turbo']).toMatchObject({ in_flight: 1, free: 0 });
    const chained = drainer.messages('/api/cron-poll');
    expect(chained).toHaveLength(1);
    expect(chained[0]?.headers['upstash-delay']).toMatch(/^2[45]s$/);
    // The drain run planned before it leased: the tick's lease is the only one besides the first.
    expect(harness.appCalls('next-task')).toHaveLength(2);
  });
});

describe('one lease at a time with two free gen4_turbo slots', () => {
  it('leases again with the slot of an item it gave back', async () => {
    const items = queue(3);
    const harness = await limited(2, items);
    const [givenBack] = items;
    harness.sandbox.app.failNext('presign-download', 3, { itemId: givenBack?.item_id ?? '' });
    const worker = await startExtraWorker(harness);

    const summary = await runCronPoll(worker.deps, { concurrency: 1 });

    expect(summary).toMatchObject({ leased: 3, submitted: 2, released: 1, stopped: 'capacity' });
    expect(summary.items.map((item) => item.outcome)).toEqual(['released', 'submitted', 'submitted']);
    expect(harness.appCalls('next-task')).toHaveLength(3);
    expect(harness.sandbox.runway.tasks()).toHaveLength(2);
    expect(harness.appCalls('heartbeat').map((call) => call.json)).toEqual([
      { item_id: givenBack?.item_id, worker_id: WORKER_ID, extend_seconds: 0 },
    ]);
  });
});

describe('one lease at a time with one gen4_turbo and one veo3.1 slot, the oldest item for veo3.1', () => {
  it('trades the gen4_turbo slot it held for the veo3.1 item, leases a gen4_turbo item with it, and counts each model\'s generations apart', async () => {
    const [veo] = queue(1, { inference_provider: 'veo3.1' });
    const [turbo] = queue(1);
    const harness = await limited({ gen4_turbo: 1, 'veo3.1': 1 }, [veo!, turbo!]);
    const worker = await startExtraWorker(harness);

    const summary = await runCronPoll(worker.deps, { concurrency: 1 });

    expect(summary).toMatchObject({ leased: 2, submitted: 2, stopped: 'capacity' });
    expect(harness.sandbox.runway.tasks().map((task) => task.model).sort()).toEqual(['gen4_turbo', 'veo3.1']);

    // A drain run plans before it leases.
    const next = summaryOf(await harness.deliver('/api/cron-poll', { reason: 'drain' }));

    expect(next).toMatchObject({ leased: 0, stopped: 'capacity' });
    expect(next.capacity?.models['gen4_turbo']).toEqual({ limit: 1, in_flight: 1, free: 0, paused: false });
    expect(next.capacity?.models['veo3.1']).toEqual({ limit: 1, in_flight: 1, free: 0, paused: false });
  });
});

describe('a run over a queue of one item', () => {
  it('asks for no more leases once the others got idle answers, schedules no drain, and answers its real duration', async () => {
    const harness = await startHarness({ items: queue(1), sandbox: { runway: { generationMs: 60_000 } } });
    const before = Date.now();

    const summary = summaryOf(await harness.cron());

    const elapsedMs = Date.now() - before;
    expect(summary).toMatchObject({ leased: 1, submitted: 1, stopped: 'idle', drain_scheduled: false });
    expect(harness.appCalls('next-task')).toHaveLength(LEASE_CONCURRENCY);
    expect(harness.messages('/api/cron-poll')).toEqual([]);
    expect(summary.duration_ms).toBeGreaterThanOrEqual(0);
    expect(summary.duration_ms).toBeLessThanOrEqual(elapsedMs);
  });

  it('asks QStash for nothing but the submitted item\'s first poll, no drain publish at all', async () => {
    const harness = await startHarness({ items: queue(1), sandbox: { runway: { generationMs: 60_000 } } });
    const qstash = await startStandIn({ target: harness.runtime.deps.config.qstashUrl });
    const worker = await startExtraWorker(harness, { env: { QSTASH_URL: qstash.url } });

    const summary = summaryOf(await worker.cron());

    expect(summary).toMatchObject({ leased: 1, submitted: 1, stopped: 'idle', drain_scheduled: false });
    // The one publish is the submitted item's first poll.
    expect(qstash.requests().map((request) => request.path)).toEqual([`/v2/publish/${worker.url}/api/runway-callback`]);
  });

  it('counts an item reported failed (an empty photo) in `failed`', async () => {
    const [item] = queue(1);
    const harness = await startHarness({ items: [item!] });
    await harness.sandbox.storage.putObject('group-photos', item?.photo_storage_path ?? '', new Uint8Array());

    const summary = summaryOf(await harness.cron());

    expect(summary).toMatchObject({ leased: 1, submitted: 0, failed: 1, stopped: 'idle' });
    expect(harness.sandbox.app.reports(item?.item_id ?? '')).toMatchObject([{ status: 'failed', error_message: 'photo: the file is empty' }]);
  });
});

describe('a run whose clock reaches the time budget exactly', () => {
  it('still leases: only a run past its budget stops', async () => {
    const harness = await startHarness({ items: queue(LEASE_CONCURRENCY + 1), sandbox: { runway: { generationMs: 60_000 } } });
    const frozen = Date.now();
    const worker = await startExtraWorker(harness, {
      now: () => frozen + (harness.appCalls('next-task').length > 0 ? CRON_BUDGET_MS : 0),
    });

    const summary = summaryOf(await worker.cron());

    expect(summary).toMatchObject({ leased: LEASE_CONCURRENCY + 1, submitted: LEASE_CONCURRENCY + 1, stopped: 'idle' });
    expect(summary.duration_ms).toBe(CRON_BUDGET_MS);
  });
});

describe('the deduplication ids of the poll messages', () => {
  it('names the generation in the first poll of a second generation', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    harness.sandbox.runway.failNextTasks({ code: 'INTERNAL' });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');

    expect((await harness.deliver('/api/runway-callback', { job })).status).toBe(200);

    const polls = harness.messages('/api/runway-callback');
    expect(pollJobs(harness, item.item_id).map((polled) => polled.generation)).toEqual([1, 2]);
    expect(polls.map((message) => message.headers['upstash-deduplication-id'])).toEqual([
      `${item.item_id}-1-poll-0`,
      `${item.item_id}-1-poll-g2-0`,
    ]);
  });

  it('buckets a resumed attempt\'s poll by the minute it was resumed in', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const photo = await readFixture('landscape.jpg');
    const created = await fetch(`${harness.sandbox.runwayApiUrl}/v1/image_to_video`, {
      method: 'POST',
      headers: { authorization: RUNWAY_AUTH, 'x-runway-version': '2024-11-06', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gen4_turbo', promptImage: `data:image/jpeg;base64,${photo.toString('base64')}`, ratio: '1104:832', duration: 5 }),
    });
    const taskId = z.object({ id: z.string() }).parse(await created.json()).id;
    const key = { itemId: item.item_id, attempt: 1 };
    const submittedAt = new Date(Date.now() - 30_000).toISOString();
    const { ledger } = harness.runtime.deps;
    expect(await ledger.claim(key, 'submitting', { at: submittedAt })).toBe(true);
    expect(
      await ledger.claim(key, 'task', { runway_task_id: taskId, model: 'gen4_turbo', submitted_at: submittedAt, duration: 5, ratio: '1104:832' }),
    ).toBe(true);
    const before = Math.floor(Date.now() / 60_000);

    const summary = summaryOf(await harness.cron());

    const after = Math.floor(Date.now() / 60_000);
    expect(summary.items).toMatchObject([{ item_id: item.item_id, outcome: 'resumed' }]);
    const [poll] = harness.messages('/api/runway-callback');
    expect((pollJobs(harness, item.item_id)[0] as Job).runway_task_id).toBe(taskId);
    expect([`${item.item_id}-1-poll-resume-${before}`, `${item.item_id}-1-poll-resume-${after}`]).toContain(
      poll?.headers['upstash-deduplication-id'],
    );
  });
});
