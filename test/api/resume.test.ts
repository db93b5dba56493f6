import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sampleVideo } from '../../sandbox/runway-output.js';
import { readFixture } from '../../sandbox/seed.js';
import type { JobKey } from '../../lib/ledger/ledger.js';
import { pollMessageSchema, uploadMessageSchema, type Job } from '../../lib/steps/messages.js';
import { SUBMIT_STALE_MS, submitTask, type SubmitOutcome } from '../../lib/steps/submit-task.js';
import { pollJobs, submit, uploadMessages, waitForTaskStatus } from '../support/flow.js';
import {
  RUNWAY_AUTH,
  WORKER_ID,
  closeHarnesses,
  seedItem,
  startHarness,
  type Harness,
  type Mark,
  RUNWAY_WORK,
} from '../support/harness.js';
import { closeExtraWorkers, signedDelivery, startExtraWorker } from '../support/extra-worker.js';
import { reportSettleMs } from '../../lib/deps.js';
import { cronSummarySchema } from '../support/cron-summary.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeHarnesses();
});

const CALLBACK = '/api/runway-callback';
const STEP_UPLOAD = '/api/step-upload';

const summarySchema = cronSummarySchema;

async function cronSummary(harness: Harness): Promise<z.infer<typeof summarySchema>> {
  const answer = await harness.cron();
  expect(answer.status).toBe(200);
  return summarySchema.parse(answer.json);
}

/** What the pipeline has cost so far: Runway creates, upload attempts, reports. */
function effects(harness: Harness, itemId: string) {
  return {
    creates: harness.requests({ service: 'runway', method: 'POST', path: '/v1/image_to_video' }).length,
    uploads: harness.sandbox.storage.uploadAttempts('generated-videos', `videos/${itemId}.mp4`),
    reports: harness.sandbox.app.reports(itemId).length,
  };
}

/** A Runway task made directly in the sandbox, as an earlier run of the worker would have. */
async function createRunwayTask(harness: Harness): Promise<string> {
  const photo = await readFixture('landscape.jpg');
  const response = await fetch(`${harness.sandbox.runwayApiUrl}/v1/image_to_video`, {
    method: 'POST',
    headers: { authorization: RUNWAY_AUTH, 'x-runway-version': '2024-11-06', 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'gen4_turbo',
      promptImage: `data:image/jpeg;base64,${photo.toString('base64')}`,
      ratio: '1104:832',
      duration: 5,
    }),
  });
  expect(response.status).toBe(200);
  return z.object({ id: z.string() }).parse(await response.json()).id;
}

/** Ledger facts of attempt 1 as a run that created the task (and maybe uploaded) left them. */
async function recordTask(harness: Harness, key: JobKey, taskId: string, submittedAt: string): Promise<void> {
  const { ledger } = harness.runtime.deps;
  expect(await ledger.claim(key, 'submitting', { at: submittedAt })).toBe(true);
  expect(
    await ledger.claim(key, 'task', { runway_task_id: taskId, model: 'gen4_turbo', submitted_at: submittedAt, duration: 5, ratio: '1104:832' }),
  ).toBe(true);
}

describe('cron-poll leasing an item whose ledger already holds a live Runway task', () => {
  it('creates no new task, fetches no photo, and publishes a poll for the existing task', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const taskId = await createRunwayTask(harness);
    const submittedAt = new Date(Date.now() - 30_000).toISOString();
    await recordTask(harness, { itemId: item.item_id, attempt: 1 }, taskId, submittedAt);
    const mark = harness.mark();

    const summary = await cronSummary(harness);

    expect(summary).toMatchObject({ leased: 1, submitted: 0, resumed: 1 });
    expect(summary.items).toEqual([{ item_id: item.item_id, outcome: 'resumed', detail: `polling existing Runway task ${taskId}` }]);
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK, since: mark })).toEqual([]);
    expect(harness.requests({ service: 'storage', since: mark })).toEqual([]);
    expect(harness.appCalls('presign', mark)).toEqual([]);
    const published = harness.messages(undefined, mark);
    expect(published.map((message) => message.url)).toEqual([`${harness.url}${CALLBACK}`]);
    expect(published[0]?.headers['upstash-deduplication-id']).toMatch(new RegExp(`^${item.item_id}-1-poll-resume-\\d+$`));
    expect(published[0]?.headers['upstash-delay']).toBe('5s');
    const { job } = pollMessageSchema.parse(JSON.parse(published[0]?.body ?? ''));
    expect(job).toEqual({
      item_id: item.item_id,
      attempt: 1,
      runway_task_id: taskId,
      model: 'gen4_turbo',
      duration: 5,
      ratio: '1104:832',
      submitted_at: Date.parse(submittedAt),
      last_heartbeat_at: job.last_heartbeat_at,
      polls: 0,
      generation: 1,
      // What a new generation would need, from the lease that resumed it.
      source: { photo_storage_path: item.photo_storage_path, prompt_text: item.prompt },
    });
  });

  it('carries the resumed task through to a completed report without a second create', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const taskId = await createRunwayTask(harness);
    await recordTask(harness, { itemId: item.item_id, attempt: 1 }, taskId, new Date().toISOString());
    await cronSummary(harness);
    const [job] = pollJobs(harness, item.item_id);
    await waitForTaskStatus(harness, taskId, 'SUCCEEDED');

    expect((await harness.deliver(CALLBACK, { job })).status).toBe(200);
    const [upload] = uploadMessages(harness, item.item_id);
    expect((await harness.deliver(STEP_UPLOAD, upload)).status).toBe(200);

    expect(effects(harness, item.item_id)).toEqual({ creates: 1, uploads: 1, reports: 1 });
    expect(harness.sandbox.app.item(item.item_id)).toMatchObject({
      status: 'completed',
      video_storage_path: `videos/${item.item_id}.mp4`,
      veo_operation_id: taskId,
    });
  });
});

describe('cron-poll leasing an item whose video is already uploaded', () => {
  it('goes straight to the completed report: no create, no upload presign, no PUT', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const taskId = await createRunwayTask(harness);
    const key = { itemId: item.item_id, attempt: 1 };
    const videoPath = `videos/${item.item_id}.mp4`;
    await recordTask(harness, key, taskId, new Date(Date.now() - 90_000).toISOString());
    await harness.sandbox.storage.putObject('generated-videos', videoPath, sampleVideo(), 'video/mp4');
    // The upload's record: its completed report, claimed and never confirmed, longer ago than a send round can take.
    const claimedAt = new Date(Date.now() - reportSettleMs(harness.runtime.deps.timeouts) - 1_000).toISOString();
    await harness.runtime.deps.ledger.claim(key, 'reported', { status: 'completed', at: claimedAt, video_storage_path: videoPath, veo_operation_id: taskId });
    const mark = harness.mark();

    const summary = await cronSummary(harness);
    const published = harness.messages(undefined, mark);
    const answer = await harness.deliver(STEP_UPLOAD, JSON.parse(published[0]?.body ?? ''));

    expect(summary.items).toEqual([{ item_id: item.item_id, outcome: 'resumed', detail: 'video already uploaded: reporting' }]);
    expect(published.map((message) => message.url)).toEqual([`${harness.url}${STEP_UPLOAD}`]);
    expect(published[0]?.headers['upstash-deduplication-id']).toMatch(new RegExp(`^${item.item_id}-1-upload-resume-\\d+$`));
    expect(uploadMessageSchema.parse(JSON.parse(published[0]?.body ?? ''))).toEqual({
      job: expect.objectContaining({ item_id: item.item_id, attempt: 1, runway_task_id: taskId }) as unknown,
    });
    expect(answer.status).toBe(200);
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK, since: mark })).toEqual([]);
    expect(harness.requests({ service: 'storage', since: mark })).toEqual([]);
    expect(harness.appCalls('presign', mark)).toEqual([]);
    expect(harness.appCalls('report', mark).map((request) => request.json)).toEqual([
      { item_id: item.item_id, worker_id: WORKER_ID, status: 'completed', video_storage_path: videoPath, veo_operation_id: taskId },
    ]);
    expect(effects(harness, item.item_id)).toEqual({ creates: 1, uploads: 0, reports: 1 });
    expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'completed', video_storage_path: videoPath });
  });
});

/** Attempt 1 of a photo Runway refuses: submitted, failed, reported; then put back by the admin page. */
async function reportedThenRetried(): Promise<{ harness: Harness; itemId: string; first: Job }> {
  const item = seedItem('refused.jpg');
  const harness = await startHarness({ items: [item] });
  const first = await submit(harness, item.item_id);
  await waitForTaskStatus(harness, first.runway_task_id, 'FAILED');
  expect((await harness.deliver(CALLBACK, { job: first })).status).toBe(489);
  expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'failed', retry_count: 1 });
  harness.sandbox.app.adminRetry(item.item_id);
  return { harness, itemId: item.item_id, first };
}

describe('an item reported in attempt 1 and put back by an admin retry', () => {
  it('starts attempt 2 with a new Runway task and leaves attempt 1 as it was', async () => {
    const { harness, itemId, first } = await reportedThenRetried();
    const mark = harness.mark();

    const summary = await cronSummary(harness);

    expect(summary.items).toEqual([expect.objectContaining({ item_id: itemId, outcome: 'submitted' })]);
    expect(harness.requests({ service: 'runway', method: 'POST', path: '/v1/image_to_video', since: mark })).toHaveLength(1);
    const [message] = harness.messages(CALLBACK, mark);
    expect(message?.headers['upstash-deduplication-id']).toBe(`${itemId}-2-poll-0`);
    const { job } = pollMessageSchema.parse(JSON.parse(message?.body ?? ''));
    expect(job.attempt).toBe(2);
    expect(job.runway_task_id).not.toBe(first.runway_task_id);
    const { ledger } = harness.runtime.deps;
    expect((await ledger.read({ itemId, attempt: 2 })).task?.runway_task_id).toBe(job.runway_task_id);
    expect((await ledger.read({ itemId, attempt: 1 })).reported).toMatchObject({ status: 'failed' });
    expect((await ledger.latest(itemId))?.attempt).toBe(2);
  });

  // Attempt 1's report claim is older than the settle time, and the heartbeat that should tell
  // whether it landed succeeds — for attempt 2's lease, held under the same worker id. The late
  // delivery then sends attempt 1's `failed` report again, failing attempt 2 while its task runs.
  it('answers a late duplicate of attempt 1\'s poll without reporting anything for attempt 2', async () => {
    const { harness, itemId, first } = await reportedThenRetried();
    await cronSummary(harness);
    const [second] = pollJobs(harness, itemId).filter((job) => job.attempt === 2);
    const tenMinutesLater = await startExtraWorker(harness, { now: () => Date.now() + 10 * 60_000 });
    const mark = harness.mark();

    const answer = await tenMinutesLater.deliver(CALLBACK, { job: first }, { retried: 1 });

    expect([200, 489]).toContain(answer.status);
    expect(harness.appCalls('report', mark)).toEqual([]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'processing', retry_count: 1 });
    expect(harness.sandbox.runway.task(second?.runway_task_id ?? '')?.deleted).toBe(false);
  });
});

describe('duplicate and late deliveries of poll and upload messages', () => {
  it('answers 200 to each repeat and creates, uploads and reports exactly once', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const signingKey = harness.runtime.deps.config.qstashCurrentSigningKey;
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'SUCCEEDED');
    const poll = await signedDelivery(`${harness.url}${CALLBACK}`, { job }, signingKey);

    // The same poll twice: one upload message; the second publish is dropped by deduplication.
    expect((await poll.send()).status).toBe(200);
    expect((await poll.send({ retried: 1 })).status).toBe(200);
    expect(harness.messages(STEP_UPLOAD)).toHaveLength(1);
    expect(harness.qstash.stats().deduplicated).toBe(1);

    // The same upload twice: one PUT, one report.
    const [uploadMessage] = uploadMessages(harness, item.item_id);
    const upload = await signedDelivery(`${harness.url}${STEP_UPLOAD}`, uploadMessage, signingKey);
    expect((await upload.send()).status).toBe(200);
    expect((await upload.send({ retried: 1 })).status).toBe(200);
    expect(effects(harness, item.item_id)).toEqual({ creates: 1, uploads: 1, reports: 1 });
    expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'completed', retry_count: 0 });

    // Late repeats of both after completion: nothing but, at most, a heartbeat asking whether the report landed.
    const mark: Mark = harness.mark();
    expect((await poll.send({ retried: 2 })).status).toBe(200);
    expect((await upload.send({ retried: 2 })).status).toBe(200);
    for (const request of harness.requests({ since: mark })) expect(`${request.service} ${request.path}`).toBe('app /worker/heartbeat');
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(effects(harness, item.item_id)).toEqual({ creates: 1, uploads: 1, reports: 1 });
    expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'completed', retry_count: 0 });
  });

  it('publishes one next poll when a poll of a running task is delivered twice at once', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 300 }, faults: { runway: { neverFinishRate: 1 } } } });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'RUNNING');
    const poll = await signedDelivery(`${harness.url}${CALLBACK}`, { job }, harness.runtime.deps.config.qstashCurrentSigningKey);
    const mark = harness.mark();

    const answers = await Promise.all([poll.send(), poll.send()]);

    expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
    const next = harness.messages(CALLBACK, mark);
    expect(next).toHaveLength(1);
    expect(next[0]?.headers['upstash-deduplication-id']).toBe(`${item.item_id}-1-poll-1`);
    expect(effects(harness, item.item_id)).toEqual({ creates: 1, uploads: 0, reports: 0 });
  });
});

describe('two cron runs racing on the same item (the app lease is not atomic)', () => {
  it('creates exactly one Runway task when both submit it at once', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const { deps } = harness.runtime;
    const lease = await deps.app.nextTask(deps.config.leaseDurationSeconds);
    if (lease.kind !== 'task') throw new Error(`expected a task, got ${lease.kind}`);

    const outcomes: SubmitOutcome[] = await Promise.all([submitTask(deps, lease.task), submitTask(deps, lease.task)]);

    expect(outcomes.map((outcome) => outcome.kind).sort()).toEqual(['skipped', 'submitted']);
    expect(outcomes.find((outcome) => outcome.kind === 'skipped')).toMatchObject({ detail: 'another delivery is submitting this item' });
    expect(effects(harness, item.item_id)).toEqual({ creates: 1, uploads: 0, reports: 0 });
    expect(pollJobs(harness, item.item_id)).toHaveLength(1);
    expect(harness.appCalls('presign')).toHaveLength(1);
  });

  it('resumes instead of creating when the second run starts after the first recorded its task', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const { deps } = harness.runtime;
    const lease = await deps.app.nextTask(deps.config.leaseDurationSeconds);
    if (lease.kind !== 'task') throw new Error(`expected a task, got ${lease.kind}`);

    const firstRun = await submitTask(deps, lease.task);
    const secondRun = await submitTask(deps, lease.task);

    expect(firstRun.kind).toBe('submitted');
    expect(secondRun.kind).toBe('resumed');
    expect(effects(harness, item.item_id)).toEqual({ creates: 1, uploads: 0, reports: 0 });
    const taskIds = new Set(pollJobs(harness, item.item_id).map((job) => job.runway_task_id));
    expect(taskIds.size).toBe(1);
  });
});

describe('an item whose earlier submit stopped between its claim and the Runway create', () => {
  async function claimedOnly(ageMs: number) {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    await harness.runtime.deps.ledger.claim({ itemId: item.item_id, attempt: 1 }, 'submitting', {
      at: new Date(Date.now() - ageMs).toISOString(),
    });
    return { harness, itemId: item.item_id, mark: harness.mark() };
  }

  it('skips it while the claim is fresh: its owner may still be creating the task', async () => {
    const { harness, itemId, mark } = await claimedOnly(5_000);

    const summary = await cronSummary(harness);

    expect(summary.items).toEqual([{ item_id: itemId, outcome: 'skipped', detail: 'another delivery is submitting this item' }]);
    expect(effects(harness, itemId)).toEqual({ creates: 0, uploads: 0, reports: 0 });
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK, since: mark })).toEqual([]);
  });

  it('reports it failed once the claim is stale, rather than risk paying for a second task', async () => {
    const { harness, itemId } = await claimedOnly(SUBMIT_STALE_MS + 10_000);

    const summary = await cronSummary(harness);

    expect(summary.items).toEqual([expect.objectContaining({ item_id: itemId, outcome: 'failed' })]);
    expect(effects(harness, itemId)).toEqual({ creates: 0, uploads: 0, reports: 1 });
    expect(harness.sandbox.app.item(itemId)).toMatchObject({
      status: 'failed',
      error_message: 'runway: submission was interrupted (a task may have been created); retry from the admin page',
    });
  });
});
