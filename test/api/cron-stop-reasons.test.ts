import { mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseConfig } from '../../lib/config.js';
import { handleCronGet } from '../../lib/handlers/cron-poll.js';
import { createDeps } from '../../lib/runtime.js';
import { CRON_BUDGET_MS, LEASE_CONCURRENCY } from '../../lib/steps/cron-poll.js';
import { pollMessageSchema } from '../../lib/steps/messages.js';
import { pollJobs } from '../support/flow.js';
import { closeStandIns, startStandIn } from '../support/extra-stand-in.js';
import { closeExtraWorkers, startExtraWorker } from '../support/extra-worker.js';
import {
  CRON_SECRET,
  RUNWAY_WORK,
  WORKER_ID,
  closeHarnesses,
  seedItem,
  silentLogger,
  startHarness,
  workerEnv,
  type Answer,
  type Harness,
} from '../support/harness.js';
import { cronSummarySchema } from '../support/cron-summary.js';

const scratch: string[] = [];

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
  await Promise.all(scratch.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/**
 * Why a cron-poll run stops leasing, as its answer says, and what each stop leaves behind:
 * which calls the app, Runway and QStash received, and where the queue's items stand.
 */

const summarySchema = cronSummarySchema.extend({ capacity: z.unknown().optional() });
type Summary = z.infer<typeof summarySchema>;

function summaryOf(answer: Answer): Summary {
  expect(answer.status).toBe(200);
  return summarySchema.parse(answer.json);
}

function queue(count: number) {
  return Array.from({ length: count }, () => seedItem('landscape.jpg'));
}

const statuses = (harness: Harness) => harness.sandbox.app.items().map((item) => item.status);
const count = (harness: Harness, status: string) => statuses(harness).filter((value) => value === status).length;

/** A ledger directory whose `entry` (`slots` or `items`) is a symlink to itself: every read of it fails with ELOOP. */
async function ledgerWithBrokenEntry(entry: 'slots' | 'items'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'runway-broken-ledger-'));
  scratch.push(dir);
  await symlink(entry, path.join(dir, entry));
  return dir;
}

describe('a run over an empty queue', () => {
  it('costs one lease call and nothing else: no Runway limits, no ledger, nothing published', async () => {
    const harness = await startHarness({ items: [] });

    const summary = summaryOf(await harness.cron());

    expect(summary).toMatchObject({ leased: 0, stopped: 'idle', drain_scheduled: false, items: [] });
    expect(summary).not.toHaveProperty('capacity');
    expect(harness.requests()).toEqual([expect.objectContaining({ service: 'app', path: '/worker/next-task' })]);
    expect(harness.messages()).toEqual([]);
    expect(await readdir(harness.runtime.deps.config.ledgerDir).catch(() => [])).toEqual([]);
  });
});

describe('a run asked for ?limit=0', () => {
  it('stops at its cap before asking anyone anything, and answers without a capacity plan', async () => {
    const harness = await startHarness({ items: queue(2) });

    const summary = summaryOf(await harness.cron('?limit=0'));

    expect(summary).toMatchObject({ leased: 0, stopped: 'cap', drain_scheduled: false, items: [] });
    expect(summary).not.toHaveProperty('capacity');
    expect(harness.requests()).toEqual([]);
    expect(harness.messages()).toEqual([]);
    expect(statuses(harness)).toEqual(['pending', 'pending']);
  });
});

describe('a run whose time budget runs out while it leases', () => {
  it('finishes the leases under way, leases no more, and leaves the rest queued for the next run', async () => {
    const harness = await startHarness({ items: queue(5), sandbox: { runway: { generationMs: 60_000 } } });
    // The worker's clock jumps past the budget as soon as the app sees its first lease.
    const worker = await startExtraWorker(harness, {
      now: () => Date.now() + (harness.appCalls('next-task').length > 0 ? CRON_BUDGET_MS + 1_000 : 0),
    });

    const summary = summaryOf(await worker.cron());

    // The run's first lease comes alone; by the time the others would lease, the budget is spent.
    expect(summary).toMatchObject({ leased: 1, submitted: 1, stopped: 'budget', drain_scheduled: false });
    expect(summary.duration_ms).toBeGreaterThan(CRON_BUDGET_MS);
    expect(harness.appCalls('next-task')).toHaveLength(1);
    expect(harness.sandbox.runway.tasks()).toHaveLength(1);
    expect(worker.messages('/api/runway-callback')).toHaveLength(1);
    expect(worker.messages('/api/cron-poll')).toEqual([]);
    expect(count(harness, 'pending')).toBe(4);
  });
});

describe('the app failing the lease', () => {
  it('stops the run at the app\'s 500 answers without retrying a lease, leaving the queue as it was', async () => {
    const harness = await startHarness({ items: queue(2) });
    harness.sandbox.app.failNext('next-task', 1);

    const summary = summaryOf(await harness.cron());

    expect(summary).toMatchObject({ leased: 0, errors: 0, stopped: 'app-error', drain_scheduled: false, items: [] });
    // One try: next-task leases, so a retry could take a second item.
    expect(harness.appCalls('next-task')).toHaveLength(1);
    expect(harness.appCalls('presign')).toEqual([]);
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK })).toEqual([]);
    expect(harness.messages()).toEqual([]);
    expect(statuses(harness)).toEqual(['pending', 'pending']);
  });

  it('stops the run at a 200 answer that is not the app\'s envelope', async () => {
    const harness = await startHarness({ items: queue(2) });
    const app = await startStandIn({
      target: harness.sandbox.nextApiUrl,
      answer: (request) => (request.path === '/worker/next-task' ? { status: 200, json: { tasks: [] } } : undefined),
    });
    const worker = await startExtraWorker(harness, { env: { NEXT_API_URL: app.url } });

    const summary = summaryOf(await worker.cron());

    expect(summary).toMatchObject({ leased: 0, stopped: 'app-error', items: [] });
    expect(app.requests().map((request) => request.path)).toEqual(['/worker/next-task']);
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK })).toEqual([]);
    expect(worker.messages()).toEqual([]);
    expect(statuses(harness)).toEqual(['pending', 'pending']);
  });

  it('skips a lease answer that is not a usable task and goes on leasing', async () => {
    const items = queue(LEASE_CONCURRENCY + 2);
    const harness = await startHarness({ items, sandbox: { runway: { generationMs: 60_000 } } });
    let rewritten = 0;
    const app = await startStandIn({
      target: harness.sandbox.nextApiUrl,
      rewrite: (request, reply) => {
        if (request.path !== '/worker/next-task' || rewritten > 0) return reply;
        rewritten += 1;
        return { status: 200, json: { success: true, data: { item_id: 42 } } };
      },
    });
    const worker = await startExtraWorker(harness, { env: { NEXT_API_URL: app.url } });

    const summary = summaryOf(await worker.cron());

    expect(summary).toMatchObject({ leased: items.length, submitted: items.length - 1, skipped: 1, stopped: 'idle' });
    expect(summary.items.filter((item) => item.outcome === 'skipped')).toEqual([
      { item_id: null, outcome: 'skipped', detail: expect.stringMatching(/^invalid task: item_id: /) as unknown },
    ]);
    // The item behind the unusable answer stays leased (nothing can name it); the others are submitted.
    expect(count(harness, 'processing')).toBe(items.length);
    expect(harness.sandbox.runway.tasks()).toHaveLength(items.length - 1);
    const polled = worker.messages('/api/runway-callback').map((message) => pollMessageSchema.parse(JSON.parse(message.body)).job);
    expect(polled.map((job) => job.runway_task_id).sort()).toEqual(harness.sandbox.runway.tasks().map((task) => task.id).sort());
    expect(items.filter((item) => polled.some((job) => job.item_id === item.item_id))).toHaveLength(items.length - 1);
    expect(harness.appCalls('heartbeat')).toEqual([]);
    expect(harness.appCalls('report')).toEqual([]);
  });
});

describe('a ledger that cannot be read', () => {
  it('gives its first lease back at once and leases no more when the generations in flight cannot be counted', async () => {
    const harness = await startHarness({ items: queue(2) });
    const worker = await startExtraWorker(harness, { env: { LEDGER_DIR: await ledgerWithBrokenEntry('slots') } });

    const summary = summaryOf(await worker.cron());

    expect(summary).toMatchObject({ leased: 1, released: 1, submitted: 0, stopped: 'ledger-error', drain_scheduled: false });
    const [released] = summary.items;
    expect(released).toEqual({ item_id: expect.any(String) as unknown, outcome: 'released', detail: 'leasing stopped (ledger-error)' });
    expect(summary).not.toHaveProperty('capacity');
    expect(harness.appCalls('next-task')).toHaveLength(1);
    expect(harness.appCalls('heartbeat').map((call) => call.json)).toEqual([{ item_id: released?.item_id, worker_id: WORKER_ID, extend_seconds: 0 }]);
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK })).toEqual([]);
    expect(worker.messages()).toEqual([]);
    expect(count(harness, 'pending')).toBe(1);
  });

  it('leases nothing on a drain run when the generations in flight cannot be counted', async () => {
    const harness = await startHarness({ items: queue(2) });
    const worker = await startExtraWorker(harness, { env: { LEDGER_DIR: await ledgerWithBrokenEntry('slots') } });

    const summary = summaryOf(await worker.deliver('/api/cron-poll', { reason: 'drain' }));

    expect(summary).toMatchObject({ leased: 0, stopped: 'ledger-error', drain_scheduled: false, items: [] });
    expect(harness.appCalls('next-task')).toEqual([]);
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK })).toEqual([]);
    expect(statuses(harness)).toEqual(['pending', 'pending']);
  });

  it('stops leasing once a leased item cannot be looked up, leaving the leased ones to lapse and the rest queued', async () => {
    const harness = await startHarness({ items: queue(5) });
    const worker = await startExtraWorker(harness, { env: { LEDGER_DIR: await ledgerWithBrokenEntry('items') } });

    const summary = summaryOf(await worker.cron());

    expect(summary).toMatchObject({ leased: LEASE_CONCURRENCY, errors: LEASE_CONCURRENCY, submitted: 0, stopped: 'submit-error' });
    for (const item of summary.items) {
      expect(item).toEqual({ item_id: expect.any(String) as unknown, outcome: 'error', detail: expect.stringMatching(/^UpstreamError: ledger directory: (mkdir|list) .* failed \(ELOOP\)$/) as unknown });
    }
    expect(harness.appCalls('next-task')).toHaveLength(LEASE_CONCURRENCY);
    expect(harness.appCalls('presign')).toEqual([]);
    expect(harness.appCalls('heartbeat')).toEqual([]);
    expect(harness.appCalls('report')).toEqual([]);
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK })).toEqual([]);
    expect(worker.messages()).toEqual([]);
    expect(count(harness, 'processing')).toBe(LEASE_CONCURRENCY);
    expect(count(harness, 'pending')).toBe(5 - LEASE_CONCURRENCY);
  });
});

describe('a run at its cap while QStash refuses every publish', () => {
  it('still answers 200, with no drain scheduled and the submitted task in the ledger', async () => {
    const harness = await startHarness({ items: queue(2), sandbox: { runway: { generationMs: 60_000 } } });
    const worker = await startExtraWorker(harness, { env: { MAX_TASKS_PER_RUN: '1', QSTASH_TOKEN: 'not-the-qstash-token' } });

    const summary = summaryOf(await worker.cron());

    expect(summary).toMatchObject({ leased: 1, submitted: 1, stopped: 'cap', drain_scheduled: false });
    expect(harness.qstash.messages()).toEqual([]);
    expect(worker.log.records()).toContainEqual(
      expect.objectContaining({ msg: 'could not schedule the next drain run; the cron will pick up the rest' }),
    );
    const [task] = harness.sandbox.runway.tasks();
    const submitted = harness.sandbox.app.items().find((item) => item.status === 'processing');
    expect((await harness.runtime.deps.ledger.read({ itemId: submitted?.item_id ?? '', attempt: 1 })).task).toMatchObject({ runway_task_id: task?.id });
    expect(count(harness, 'pending')).toBe(1);
  });
});

describe('a run that crashed', () => {
  it('does not hold up the next run of the same process', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 60_000 } } });
    let clockBroken = true;
    const deps = createDeps(parseConfig({ ...workerEnv(harness), CRON_SECRET }), {
      log: silentLogger(),
      now: () => {
        if (clockBroken) throw new Error('clock unavailable');
        return Date.now();
      },
    });
    const cron = () => handleCronGet(new Request(`${harness.url}/api/cron-poll`, { headers: { authorization: `Bearer ${CRON_SECRET}` } }), () => deps);

    await expect(cron()).rejects.toThrow('clock unavailable');
    expect(harness.requests()).toEqual([]);
    clockBroken = false;
    const answer = await cron();

    expect(answer.status).toBe(200);
    expect(summarySchema.parse(await answer.json())).toMatchObject({ leased: 1, submitted: 1, stopped: 'idle' });
    expect(pollJobs(harness, item.item_id)).toHaveLength(1);
  });
});
