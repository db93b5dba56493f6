import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobKey } from '../../lib/ledger/ledger.js';
import { pollMessageSchema, type Job } from '../../lib/steps/messages.js';
import { closeExtraWorkers, startExtraWorker, type ExtraWorker } from '../support/extra-worker.js';
import { closeStandIns, startStandIn, type StandInReply } from '../support/extra-stand-in.js';
import { finishedUpload, submit, uploadMessages, waitForTaskStatus } from '../support/flow.js';
import { DEMO_KEYS, closeHarnesses, seedItem, startHarness, type Answer, type Harness } from '../support/harness.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * What the report, the item lookup and runway-callback show the app, QStash and an operator
 * in the cases the other suites leave open: the poll's answer and schedule, the THROTTLED
 * note and flag, a task gone after its timeout, the report's send rounds in `?item=`, and
 * generations of an older attempt read back from the ledger.
 */

const CALLBACK = '/api/runway-callback';
const STEP_UPLOAD = '/api/step-upload';
const RUNWAY_HEADERS = { authorization: `Bearer ${DEMO_KEYS.runway}`, 'x-runway-version': '2024-11-06' };

interface Polling {
  readonly harness: Harness;
  readonly itemId: string;
  readonly job: Job;
}

/** One submitted item whose Runway task runs and never finishes. */
async function running(): Promise<Polling> {
  const item = seedItem('landscape.jpg');
  const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 300 }, faults: { runway: { neverFinishRate: 1 } } } });
  const job = await submit(harness, item.item_id);
  await waitForTaskStatus(harness, job.runway_task_id, 'RUNNING');
  return { harness, itemId: item.item_id, job };
}

/** An extra worker whose Runway answers every look at a task with `task` (everything else goes to the sandbox). */
async function workerSeeingTask(harness: Harness, task: Record<string, unknown>): Promise<ExtraWorker> {
  const runway = await startStandIn({
    target: harness.sandbox.runwayApiUrl,
    answer: (request): StandInReply | undefined =>
      request.method === 'GET' && request.path.startsWith('/v1/tasks/') ? { status: 200, json: { id: request.path.slice('/v1/tasks/'.length), ...task } } : undefined,
  });
  return startExtraWorker(harness, { env: { RUNWAY_API_URL: runway.url } });
}

const publishedJobs = (worker: ExtraWorker): Job[] =>
  worker.messages(CALLBACK).map((message) => pollMessageSchema.parse(JSON.parse(message.body)).job);

interface LookedUpAttempt {
  readonly generations: readonly Record<string, unknown>[];
  readonly report?: { readonly outcome: string };
}

function attemptsOf(answer: Answer): readonly LookedUpAttempt[] {
  expect(answer.status).toBe(200);
  return (answer.json as { attempts: LookedUpAttempt[] }).attempts;
}

describe('runway-callback for a task still running', () => {
  it("answers QStash with the status and the next look, scheduled from Runway's progress and the time since submit", async () => {
    const { harness, job } = await running();
    const worker = await workerSeeingTask(harness, { status: 'RUNNING', progress: 0.5 });
    // Half done after 10 s: about 10 s to go, looked at a little early (0.9 × 10 + 2).
    const look: Job = { ...job, polls: 1, submitted_at: Date.now() - 10_000, last_heartbeat_at: Date.now() };

    const answer = await worker.deliver(CALLBACK, { job: look });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'RUNNING: next look in 11 s', status: 'RUNNING', next_poll_seconds: 11 });
    expect(publishedJobs(worker)).toMatchObject([{ polls: 2, last_status: 'RUNNING' }]);
  });

  it('answers "lease lost" when the heartbeat finds the item taken away, cancelling the task', async () => {
    const { harness, job } = await running();
    harness.sandbox.app.adminFail(job.item_id);

    const answer = await harness.deliver(CALLBACK, { job: { ...job, last_heartbeat_at: Date.now() - 200_000 } });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'lease lost: Runway task cancelled' });
    expect(harness.sandbox.runway.task(job.runway_task_id)?.deleted).toBe(true);
  });
});

describe('runway-callback and the THROTTLED state', () => {
  it('marks the next poll of a task seen THROTTLED as having waited for a slot', async () => {
    const { harness, job } = await running();
    const worker = await workerSeeingTask(harness, { status: 'THROTTLED' });

    expect((await worker.deliver(CALLBACK, { job: { ...job, last_heartbeat_at: Date.now() } })).status).toBe(200);

    expect(publishedJobs(worker)).toMatchObject([{ last_status: 'THROTTLED', throttled: true }]);
  });

  it("leaves the model's THROTTLED note alone when a task that never waited is polled RUNNING", async () => {
    const { harness, job } = await running();
    const { ledger } = harness.runtime.deps;
    // Another task of ours, of the same model, was just seen THROTTLED.
    await ledger.markThrottled(job.model);

    const answer = await harness.deliver(CALLBACK, { job: { ...job, last_status: 'RUNNING', last_heartbeat_at: Date.now() } });

    expect(answer.json).toMatchObject({ outcome: 'done', status: 'RUNNING' });
    expect((await ledger.slots(0)).throttledAtMs[job.model]).toEqual(expect.any(Number));
  });
});

describe('runway-callback for a task Runway no longer has, past its timeout', () => {
  it('reports it timed out (not cancelled), naming the last status and the THROTTLED wait', async () => {
    const { harness, job } = await running();
    await fetch(`${harness.sandbox.runwayApiUrl}/v1/tasks/${job.runway_task_id}`, { method: 'DELETE', headers: RUNWAY_HEADERS });
    const timeoutSeconds = harness.runtime.deps.config.runwayTimeoutSeconds;
    const late: Job = { ...job, submitted_at: Date.now() - (timeoutSeconds + 60) * 1000, last_status: 'RUNNING', throttled: true };

    const answer = await harness.deliver(CALLBACK, { job: late });

    const message = `runway: timed out after ${timeoutSeconds} s (last status RUNNING; it waited THROTTLED for Runway's concurrency limit)`;
    expect(answer.status).toBe(489);
    expect(answer.json).toMatchObject({ outcome: 'stop', detail: `reported failed: ${message}` });
    expect(harness.sandbox.app.reports(job.item_id)).toMatchObject([{ status: 'failed', error_message: message }]);
  });
});

describe('runway-callback for a task that failed for good', () => {
  it('answers 489 naming the failure it reported', async () => {
    const item = seedItem('refused.jpg');
    const harness = await startHarness({ items: [item] });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    const [report] = harness.sandbox.app.reports(item.item_id);
    expect(report?.error_message).toMatch(/^runway: SAFETY\.INPUT\.IMAGE/);
    expect(answer.json).toMatchObject({ outcome: 'stop', detail: `reported failed: ${report?.error_message ?? ''}` });
  });
});

describe('runway-callback for a first generation that cost what Runway estimated', () => {
  it('hands the video over without writing a cost fact to the ledger', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });

    const upload = await finishedUpload(harness, item.item_id);

    const task = harness.sandbox.runway.task(upload.job.runway_task_id);
    const record = await harness.runtime.deps.ledger.read({ itemId: item.item_id, attempt: 1 });
    expect(record.task?.estimated_credits).toBe(task?.credits);
    expect(record.cost).toBeUndefined();
  });
});

describe('the item lookup of a report and its send rounds', () => {
  it("shows a round without an answer as not confirmed, then the re-send as round 2, and keeps each item's rounds its own", async () => {
    const lost = seedItem('landscape.jpg');
    const fine = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [lost, fine] });
    const lostUpload = await finishedUpload(harness, lost.item_id);
    await finishedUpload(harness, fine.item_id);
    const [fineUpload] = uploadMessages(harness, fine.item_id);
    harness.sandbox.app.failNext('report', 3, { itemId: lost.item_id });
    expect((await harness.deliver(STEP_UPLOAD, lostUpload)).status).toBe(503);
    expect((await harness.deliver(STEP_UPLOAD, fineUpload)).status).toBe(200);

    expect(attemptsOf(await harness.cron(`?item=${lost.item_id}`))[0]?.report?.outcome).toBe(
      'not confirmed (round 1 got no answer; the next delivery sends it again)',
    );
    expect(attemptsOf(await harness.cron(`?item=${fine.item_id}`))[0]?.report?.outcome).toBe('sent');

    expect((await harness.deliver(STEP_UPLOAD, lostUpload, { retried: 1 })).status).toBe(200);

    expect(attemptsOf(await harness.cron(`?item=${lost.item_id}`))[0]?.report?.outcome).toBe('sent again (round 2)');
    expect(attemptsOf(await harness.cron(`?item=${fine.item_id}`))[0]?.report?.outcome).toBe('sent');
  });
});

describe("the item lookup of Runway's live word on an open task", () => {
  it('shows the progress and failure code exactly as Runway gave them', async () => {
    const { harness, itemId } = await running();
    const worker = await workerSeeingTask(harness, { status: 'FAILED', progress: 0.5, failureCode: 'INTERNAL' });

    const [attempt] = attemptsOf(await worker.cron(`?item=${itemId}`));

    expect(attempt?.generations[0]?.['runway']).toEqual({ status: 'FAILED', progress: 0.5, failure_code: 'INTERNAL' });
  });
});

describe('the item lookup of an older attempt with every generation it may have', () => {
  it('lists all four, the last one claimed but never created at Runway', async () => {
    const harness = await startHarness();
    const { ledger } = harness.runtime.deps;
    const itemId = randomUUID();
    const at = new Date().toISOString();
    const task = (generation: number) => ({ runway_task_id: `task-${generation}`, model: 'gen4_turbo', submitted_at: at, duration: 5, ratio: '1280:720' });
    const first: JobKey = { itemId, attempt: 1 };
    await ledger.claim(first, 'submitting', { at });
    await ledger.claim(first, 'task', task(1));
    for (const generation of [2, 3, 4]) {
      await ledger.claim({ ...first, generation }, 'submitting', { at, replaces: { runway_task_id: `task-${generation - 1}`, failure_code: 'INTERNAL' } });
      if (generation < 4) await ledger.claim({ ...first, generation }, 'task', task(generation));
    }
    await ledger.claim(first, 'reported', { status: 'failed', at, error_message: 'runway: could not create the task' });
    await ledger.claim({ itemId, attempt: 2 }, 'submitting', { at });

    const attempts = attemptsOf(await harness.cron(`?item=${itemId}`));

    expect(attempts).toHaveLength(2);
    expect(attempts[0]?.generations.map((generation) => [generation['generation'], generation['runway_task_id']])).toEqual([
      [1, 'task-1'],
      [2, 'task-2'],
      [3, 'task-3'],
      [4, undefined],
    ]);
    expect(attempts[0]?.generations[3]).toMatchObject({ generation: 4, submitting_at: at });
  });
});
