import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { readFixture } from '../../sandbox/seed.js';
import type { JobKey } from '../../lib/ledger/ledger.js';
import { LEASE_CONCURRENCY } from '../../lib/steps/cron-poll.js';
import { pollMessageSchema } from '../../lib/steps/messages.js';
import { pollJobs } from '../support/flow.js';
import { closeStandIns, startStandIn, type StandInRequest } from '../support/extra-stand-in.js';
import { closeExtraWorkers, startExtraWorker } from '../support/extra-worker.js';
import {
  RUNWAY_AUTH,
  WORKER_ID,
  closeHarnesses,
  seedItem,
  startHarness,
  type Answer,
  type Harness,
  type Mark,
} from '../support/harness.js';
import { countedRng, SCRIPTED_FAULT_RATE } from '../support/scripted-rng.js';
import { cronSummarySchema } from '../support/cron-summary.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * The Runway create is the one call that costs money and cannot be repeated safely (contract
 * §2.4): what the worker does when it is refused for the day, answered 5xx, or not answered at
 * all, and how an attempt whose task exists is picked up again (design §2, §4).
 */

const CREATE = '/v1/image_to_video';
const NO_ANSWER_MESSAGE = 'runway: the create request got no answer (a task may exist); not retried to avoid paying twice';

const summarySchema = cronSummarySchema.extend({
  capacity: z
    .object({
      limits: z.string(),
      models: z.record(z.string(), z.object({ free: z.number(), daily_remaining: z.number().optional() })),
    })
    .optional(),
});
type Summary = z.infer<typeof summarySchema>;

function summaryOf(answer: Answer): Summary {
  expect(answer.status).toBe(200);
  return summarySchema.parse(answer.json);
}

const creates = (harness: Harness, since?: Mark) =>
  harness.requests({ service: 'runway', method: 'POST', path: CREATE, ...(since ? { since } : {}) });

const isCreate = (request: StandInRequest): boolean => request.method === 'POST' && request.path === CREATE;

/** A Runway task made directly in the sandbox, as the run that recorded it would have. */
async function createRunwayTask(harness: Harness): Promise<string> {
  const photo = await readFixture('landscape.jpg');
  const response = await fetch(`${harness.sandbox.runwayApiUrl}${CREATE}`, {
    method: 'POST',
    headers: { authorization: RUNWAY_AUTH, 'x-runway-version': '2024-11-06', 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gen4_turbo', promptImage: `data:image/jpeg;base64,${photo.toString('base64')}`, ratio: '1104:832', duration: 5 }),
  });
  expect(response.status).toBe(200);
  return z.object({ id: z.string() }).parse(await response.json()).id;
}

describe('Runway answering 429 (daily generation cap) although the cached limits promised more', () => {
  // Four generations a day: the first run spends them; the second still has the limits it
  // read a moment ago (four left, cached for a minute) and learns of the cap from the creates.
  async function capReachedMidRun() {
    const items = Array.from({ length: 8 }, () => seedItem('landscape.jpg'));
    const harness = await startHarness({ items, sandbox: { runway: { generationMs: 60_000, dailyLimit: 4 } } });
    expect(summaryOf(await harness.cron())).toMatchObject({ submitted: 4, stopped: 'capacity' });
    const mark = harness.mark();
    const summary = summaryOf(await harness.cron());
    return { harness, items, mark, summary };
  }

  it('gives each refused item back at once (extend_seconds 0), reports nothing and publishes nothing', async () => {
    const { harness, mark, summary } = await capReachedMidRun();

    const released = summary.items.map((item) => item.item_id ?? '');
    expect(summary).toMatchObject({ leased: LEASE_CONCURRENCY, submitted: 0, released: LEASE_CONCURRENCY, failed: 0 });
    for (const item of summary.items) {
      expect(item).toEqual({ item_id: expect.any(String) as unknown, outcome: 'released', detail: 'runway: daily generation limit reached' });
    }
    expect(creates(harness, mark)).toHaveLength(LEASE_CONCURRENCY);
    expect(harness.appCalls('heartbeat', mark).map((request) => request.json)).toEqual(
      expect.arrayContaining(released.map((itemId) => ({ item_id: itemId, worker_id: WORKER_ID, extend_seconds: 0 }))),
    );
    expect(harness.appCalls('heartbeat', mark)).toHaveLength(LEASE_CONCURRENCY);
    expect(harness.appCalls('report', mark)).toEqual([]);
    // No poll (no task was made) and no drain run (more creates would be refused too).
    expect(harness.messages(undefined, mark)).toEqual([]);
    for (const itemId of released) {
      expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'processing', retry_count: 0 });
      expect(Date.parse(harness.sandbox.app.item(itemId)?.leased_until ?? '')).toBeLessThanOrEqual(Date.now());
    }
  });

  it('stops leasing for the run, with free slots left by its cached limits and items still queued', async () => {
    const { harness, mark, summary } = await capReachedMidRun();

    expect(summary.stopped).toBe('daily-cap');
    expect(summary.capacity).toMatchObject({ limits: 'cached', models: { gen4_turbo: { free: 4, daily_remaining: 4 } } });
    // Only the leases already under way when the first 429 came back.
    expect(harness.appCalls('next-task', mark)).toHaveLength(LEASE_CONCURRENCY);
    expect(harness.sandbox.app.items().filter((item) => item.status === 'pending')).toHaveLength(1);
  });

  it('pays for nothing twice: no task for a refused item, and its attempt closed without counting a failure', async () => {
    const { harness, summary } = await capReachedMidRun();
    const { ledger } = harness.runtime.deps;

    // The four tasks of the first run, one per item; none for the refused ones.
    const tasks = harness.sandbox.runway.tasks();
    expect(tasks).toHaveLength(4);
    const submittedItems = harness.sandbox.app.items().filter((item) => pollJobs(harness, item.item_id).length > 0);
    expect(submittedItems).toHaveLength(4);
    expect(new Set(submittedItems.map((item) => pollJobs(harness, item.item_id)[0]?.runway_task_id))).toEqual(new Set(tasks.map((task) => task.id)));
    for (const item of summary.items) {
      const record = await ledger.read({ itemId: item.item_id ?? '', attempt: 1 });
      expect(record.task).toBeUndefined();
      expect(record.reported).toBeUndefined();
      expect(record.abandoned).toEqual({ reason: 'runway daily cap', at: expect.any(String) as unknown });
    }
    // Their Runway slots are free again: only the first run's four generations hold one.
    expect((await ledger.slots(0)).inFlight).toHaveLength(4);
  });
});

describe('Runway answering 502 to a create (its gateway failed; no task was made)', () => {
  it('gives the item back after exactly one create, and the next lease starts a fresh attempt', async () => {
    const faults = countedRng();
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({
      items: [item],
      sandbox: { rng: faults.rng, runway: { generationMs: 300 }, faults: { runway: { error502Rate: SCRIPTED_FAULT_RATE } } },
    });
    // Draw 1 is the limits read, draw 2 the first run's create; the second run's limits are cached.
    faults.fireOn(2);

    const first = summaryOf(await harness.cron());

    expect(first.items).toEqual([{ item_id: item.item_id, outcome: 'released', detail: expect.stringMatching(/^runway: create answered 502/) as unknown }]);
    expect(creates(harness)).toHaveLength(1);
    expect(harness.sandbox.runway.tasks()).toEqual([]);
    expect(harness.appCalls('heartbeat').map((request) => request.json)).toEqual([{ item_id: item.item_id, worker_id: WORKER_ID, extend_seconds: 0 }]);
    expect(harness.appCalls('report')).toEqual([]);
    expect(harness.messages()).toEqual([]);
    expect((await harness.runtime.deps.ledger.read({ itemId: item.item_id, attempt: 1 })).abandoned).toMatchObject({
      reason: 'runway create answered 502',
      transient_failures: 1,
    });

    const second = summaryOf(await harness.cron());

    expect(second.items).toEqual([expect.objectContaining({ item_id: item.item_id, outcome: 'submitted' })]);
    expect(creates(harness)).toHaveLength(2);
    const [task] = harness.sandbox.runway.tasks();
    expect(pollJobs(harness, item.item_id)).toEqual([expect.objectContaining({ attempt: 2, runway_task_id: task?.id })]);
  });
});

describe('a create that reached Runway but came back as a gateway timeout (504)', () => {
  it('reports the item failed, never creating again: the task may exist and be billed', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 60_000 } } });
    // Runway made the task; the gateway in front of it gave up on the answer.
    const runway = await startStandIn({
      target: harness.sandbox.runwayApiUrl,
      rewrite: (request, reply) => (isCreate(request) ? { status: 504, json: { error: 'Gateway Timeout' } } : reply),
    });
    const worker = await startExtraWorker(harness, { env: { RUNWAY_API_URL: runway.url } });
    const message = 'runway: create answered 504 (timed out; a task may exist); not retried to avoid paying twice';

    const summary = summaryOf(await worker.cron());

    expect(summary.items).toEqual([{ item_id: item.item_id, outcome: 'failed', detail: message }]);
    expect(creates(harness)).toHaveLength(1);
    expect(harness.sandbox.runway.tasks()).toHaveLength(1);
    expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'failed', retry_count: 1, error_message: message });
    expect(worker.messages()).toEqual([]);

    const later = summaryOf(await worker.cron());
    expect(later).toMatchObject({ leased: 0, stopped: 'idle' });
    expect(creates(harness)).toHaveLength(1);
  });
});

describe('a create that reached Runway but whose answer never came back', () => {
  /**
   * A stand-in in front of the sandbox Runway passes the create on (the task is made and
   * billed) and then holds the answer until the worker's Runway timeout gives up on it.
   * `whileHeld` runs once the task exists, before the hold starts.
   */
  async function createWithoutAnswer(whileHeld: (harness: Harness, itemId: string) => Promise<void> = () => Promise.resolve()) {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 60_000 } } });
    const runway = await startStandIn({
      target: harness.sandbox.runwayApiUrl,
      async rewrite(request, reply) {
        if (!isCreate(request)) return reply;
        await whileHeld(harness, item.item_id);
        return new Promise(() => undefined);
      },
    });
    const worker = await startExtraWorker(harness, { env: { RUNWAY_API_URL: runway.url }, timeouts: { runwayMs: 1_000 } });
    const summary = summaryOf(await worker.cron());
    return { harness, worker, runway, itemId: item.item_id, summary };
  }

  it('reports the item failed with the reason, after exactly one create and no poll', async () => {
    const { harness, worker, runway, itemId, summary } = await createWithoutAnswer();

    expect(summary.items).toEqual([{ item_id: itemId, outcome: 'failed', detail: NO_ANSWER_MESSAGE }]);
    expect(runway.requests().filter(isCreate)).toHaveLength(1);
    expect(creates(harness)).toHaveLength(1);
    // Runway made (and bills) the task; the worker never learned its id, so it polls nothing.
    expect(harness.sandbox.runway.tasks()).toHaveLength(1);
    expect(worker.messages()).toEqual([]);
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([{ status: 'failed', error_message: NO_ANSWER_MESSAGE, applied: true }]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'failed', retry_count: 1, error_message: NO_ANSWER_MESSAGE });
    const record = await harness.runtime.deps.ledger.read({ itemId, attempt: 1 });
    expect(record.submitting).toBeDefined();
    expect(record.task).toBeUndefined();
    expect(record.reported).toMatchObject({ status: 'failed', error_message: NO_ANSWER_MESSAGE });
  });

  it('never creates again for that attempt, whatever later runs lease', async () => {
    const { harness, worker } = await createWithoutAnswer();
    const mark = harness.mark();

    const later = summaryOf(await worker.cron());

    expect(later).toMatchObject({ leased: 0, stopped: 'idle' });
    expect(creates(harness, mark)).toEqual([]);
    expect(harness.sandbox.runway.tasks()).toHaveLength(1);
  });

  it('reports nothing when another worker took the item while the create hung', async () => {
    const { harness, worker, itemId, summary } = await createWithoutAnswer(async (held, id) => {
      held.sandbox.app.expireLease(id);
      await held.leaseAs('other-worker');
    });

    expect(summary.items).toEqual([{ item_id: itemId, outcome: 'failed', detail: `${NO_ANSWER_MESSAGE} (report: lease-lost)` }]);
    // The refused report changed nothing: the item is the other worker's, untouched.
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([{ status: 'failed', httpStatus: 403, applied: false }]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'processing', worker_id: 'other-worker', retry_count: 0 });
    expect(creates(harness)).toHaveLength(1);
    expect(worker.messages()).toEqual([]);
    expect((await harness.runtime.deps.ledger.read({ itemId, attempt: 1 })).abandoned).toMatchObject({ reason: 'lease lost (report refused)' });
  });
});

describe('a create answered with the task id alone (Runway\'s estimatedCost is optional)', () => {
  it('submits and records the task, with no cost in the ledger', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const runway = await startStandIn({
      target: harness.sandbox.runwayApiUrl,
      rewrite: (request, reply) => {
        const created = z.object({ id: z.string() }).safeParse(reply.json);
        return isCreate(request) && created.success ? { status: 200, json: { id: created.data.id } } : reply;
      },
    });
    const worker = await startExtraWorker(harness, { env: { RUNWAY_API_URL: runway.url } });

    const summary = summaryOf(await worker.cron());

    const [task] = harness.sandbox.runway.tasks();
    expect(summary.items).toEqual([{ item_id: item.item_id, outcome: 'submitted', detail: `runway task ${task?.id ?? ''}` }]);
    expect(worker.messages('/api/runway-callback')).toHaveLength(1);
    const recorded = (await harness.runtime.deps.ledger.read({ itemId: item.item_id, attempt: 1 })).task;
    expect(recorded).toMatchObject({ runway_task_id: task?.id, model: 'gen4_turbo', duration: 5, ratio: '1104:832' });
    expect(recorded).not.toHaveProperty('estimated_credits');
  });
});

describe('a created task whose first poll QStash refused to take', () => {
  it('keeps the task in the ledger and the item leased, and the next lease polls that task instead of creating another', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 60_000 } } });
    const refused = await startExtraWorker(harness, { env: { QSTASH_TOKEN: 'not-the-qstash-token' } });

    const summary = summaryOf(await refused.cron());

    const [task] = harness.sandbox.runway.tasks();
    expect(summary.items).toEqual([{ item_id: item.item_id, outcome: 'submitted', detail: `runway task ${task?.id ?? ''}` }]);
    expect(harness.qstash.messages()).toEqual([]);
    expect((await harness.runtime.deps.ledger.read({ itemId: item.item_id, attempt: 1 })).task).toMatchObject({ runway_task_id: task?.id });
    expect(refused.log.records()).toContainEqual(
      expect.objectContaining({ msg: 'could not record or schedule the Runway task; it resumes when the lease lapses' }),
    );
    expect(harness.appCalls('heartbeat')).toEqual([]);
    expect(harness.appCalls('report')).toEqual([]);
    expect(Date.parse(harness.sandbox.app.item(item.item_id)?.leased_until ?? '')).toBeGreaterThan(Date.now());

    harness.sandbox.app.expireLease(item.item_id);
    const next = summaryOf(await harness.cron());

    expect(next.items).toEqual([{ item_id: item.item_id, outcome: 'resumed', detail: `polling existing Runway task ${task?.id ?? ''}` }]);
    expect(creates(harness)).toHaveLength(1);
    expect(pollJobs(harness, item.item_id)).toEqual([expect.objectContaining({ attempt: 1, runway_task_id: task?.id })]);
  });
});

describe('an item leased again while its ledger holds a live Runway task', () => {
  /** Attempt 1's facts as the run that created the task left them. */
  async function recordTask(harness: Harness, key: JobKey, taskId: string, model: string): Promise<void> {
    const { ledger } = harness.runtime.deps;
    const at = new Date(Date.now() - 30_000).toISOString();
    expect(await ledger.claim(key, 'submitting', { at })).toBe(true);
    expect(await ledger.claim(key, 'task', { runway_task_id: taskId, model, submitted_at: at, duration: 5, ratio: '1104:832' })).toBe(true);
  }

  it('polls the paid-for task even when the new lease names no photo, with nothing kept for a new generation', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const taskId = await createRunwayTask(harness);
    await recordTask(harness, { itemId: item.item_id, attempt: 1 }, taskId, 'gen4_turbo');
    const app = await startStandIn({
      target: harness.sandbox.nextApiUrl,
      rewrite: (request, reply) => {
        const lease = z.object({ success: z.literal(true), data: z.record(z.string(), z.unknown()) }).safeParse(reply.json);
        if (request.path !== '/worker/next-task' || !lease.success) return reply;
        return { ...reply, json: { success: true, data: { ...lease.data.data, photo_storage_path: null } } };
      },
    });
    const worker = await startExtraWorker(harness, { env: { NEXT_API_URL: app.url } });
    const mark = harness.mark();

    const summary = summaryOf(await worker.cron());

    expect(summary.items).toEqual([{ item_id: item.item_id, outcome: 'resumed', detail: `polling existing Runway task ${taskId}` }]);
    const [message] = worker.messages('/api/runway-callback');
    const { job } = pollMessageSchema.parse(JSON.parse(message?.body ?? ''));
    expect(job).toMatchObject({ item_id: item.item_id, attempt: 1, runway_task_id: taskId, model: 'gen4_turbo', duration: 5, ratio: '1104:832' });
    expect(job).not.toHaveProperty('source');
    expect(creates(harness, mark)).toEqual([]);
    expect(harness.appCalls('presign', mark)).toEqual([]);
    expect(harness.appCalls('report', mark)).toEqual([]);
  });

  it('polls a task recorded under a model this worker no longer knows as the configured model', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const taskId = await createRunwayTask(harness);
    await recordTask(harness, { itemId: item.item_id, attempt: 1 }, taskId, 'gen3a_turbo');
    const mark = harness.mark();

    const summary = summaryOf(await harness.cron());

    expect(summary.items).toEqual([{ item_id: item.item_id, outcome: 'resumed', detail: `polling existing Runway task ${taskId}` }]);
    expect(pollJobs(harness, item.item_id)).toEqual([
      expect.objectContaining({ runway_task_id: taskId, model: 'gen4_turbo', duration: 5, ratio: '1104:832' }),
    ]);
    expect(creates(harness, mark)).toEqual([]);
  });
});

describe('an attempt whose first ledger claim never landed (a crash left its folder empty)', () => {
  it('is started afresh under the same attempt number, with one create', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    await mkdir(path.join(harness.runtime.deps.config.ledgerDir, 'items', item.item_id, '1'), { recursive: true });

    const summary = summaryOf(await harness.cron());

    const [task] = harness.sandbox.runway.tasks();
    expect(summary.items).toEqual([{ item_id: item.item_id, outcome: 'submitted', detail: `runway task ${task?.id ?? ''}` }]);
    expect(creates(harness)).toHaveLength(1);
    expect(pollJobs(harness, item.item_id)).toEqual([expect.objectContaining({ attempt: 1, runway_task_id: task?.id })]);
    expect((await harness.runtime.deps.ledger.read({ itemId: item.item_id, attempt: 1 })).task).toMatchObject({ runway_task_id: task?.id });
    expect(harness.appCalls('report')).toEqual([]);
  });
});
