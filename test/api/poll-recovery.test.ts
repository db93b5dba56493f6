import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sampleVideo } from '../../sandbox/runway-output.js';
import { throttledPath } from '../../lib/ledger/ledger.js';
import { pollMessageSchema, type Job } from '../../lib/steps/messages.js';
import { closeExtraWorkers, startExtraWorker } from '../support/extra-worker.js';
import { closeStandIns, startStandIn, type StandInOptions } from '../support/extra-stand-in.js';
import { describeRequest, submit, waitForTaskStatus } from '../support/flow.js';
import { WORKER_ID, closeHarnesses, seedItem, startHarness, type Harness, type HarnessOptions, type Mark } from '../support/harness.js';
import { countedRng, SCRIPTED_FAULT_RATE, type CountedRng } from '../support/scripted-rng.js';
import { reportSettleMs } from '../../lib/deps.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * runway-callback when the look at the Runway task does not go as planned (design §2
 * "runway-callback", "Errors and retries"): lookups that fail, on QStash's last delivery or
 * for good, a task cancelled behind our back, a video already uploaded, and a ledger or a
 * Runway cancel that fails on the way.
 */

const CALLBACK = '/api/runway-callback';

interface Polling {
  readonly harness: Harness;
  readonly itemId: string;
  readonly job: Job;
}

/** One submitted item whose Runway task runs and never finishes. */
async function running(options: HarnessOptions = {}): Promise<Polling> {
  const item = seedItem('landscape.jpg');
  const harness = await startHarness({
    ...options,
    items: [item],
    sandbox: { runway: { generationMs: 300 }, ...options.sandbox, faults: { runway: { ...options.sandbox?.faults?.runway, neverFinishRate: 1 } } },
  });
  const job = await submit(harness, item.item_id);
  await waitForTaskStatus(harness, job.runway_task_id, 'RUNNING');
  return { harness, itemId: item.item_id, job };
}

/** A running item whose Runway API answers 502 on the draws a test picks (one per /v1 call). */
async function runningWithFlakyRunway(): Promise<Polling & { faults: CountedRng }> {
  const faults = countedRng();
  const polling = await running({ sandbox: { rng: faults.rng, faults: { runway: { error502Rate: SCRIPTED_FAULT_RATE } } } });
  return { ...polling, faults };
}

/** The next `count` Runway API calls answer 502. */
function failNextRunwayCalls(faults: CountedRng, count: number): void {
  const first = faults.draws() + 1;
  faults.fireOn(...Array.from({ length: count }, (_, index) => first + index));
}

const runwayTraffic = (harness: Harness, since: Mark): string[] =>
  harness.requests({ service: 'runway', since }).map(describeRequest);

function lookups(job: Job, count: number): string[] {
  return Array.from({ length: count }, () => `runway GET /v1/tasks/${job.runway_task_id}`);
}

function failedReport(job: Job, message: string): Record<string, unknown> {
  return { item_id: job.item_id, worker_id: WORKER_ID, status: 'failed', error_message: message, veo_operation_id: job.runway_task_id };
}

const LOOKUP_502 = 'runway: task lookup answered 502 (Bad gateway)';

describe('runway-callback whose task lookups Runway answers 502', () => {
  it('answers retry before QStash\'s last delivery: no cancel, no report, no next poll', async () => {
    const { harness, job, faults } = await runningWithFlakyRunway();
    failNextRunwayCalls(faults, 3);
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job }, { retried: 2 });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: LOOKUP_502 });
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual(lookups(job, 3));
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(harness.sandbox.runway.task(job.runway_task_id)?.deleted).toBe(false);
  });

  it('on the last delivery cancels the task and reports failed with the lookup error', async () => {
    const { harness, job, faults } = await runningWithFlakyRunway();
    failNextRunwayCalls(faults, 3);
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job }, { retried: 3 });

    expect(answer.status).toBe(489);
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([
      ...lookups(job, 3),
      `runway DELETE /v1/tasks/${job.runway_task_id}`,
      'app POST /worker/report',
    ]);
    expect(harness.appCalls('report', mark).map((request) => request.json)).toEqual([failedReport(job, LOOKUP_502)]);
    expect(harness.sandbox.runway.task(job.runway_task_id)?.deleted).toBe(true);
    expect(harness.sandbox.app.item(job.item_id)).toMatchObject({ status: 'failed', retry_count: 1, error_message: LOOKUP_502 });
    expect(harness.messages(undefined, mark)).toEqual([]);
  });

  it('on the last delivery still reports failed when the cancel fails as well', async () => {
    const { harness, job, faults } = await runningWithFlakyRunway();
    failNextRunwayCalls(faults, 6);
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job }, { retried: 3 });

    expect(answer.status).toBe(489);
    expect(runwayTraffic(harness, mark)).toEqual([
      ...lookups(job, 3),
      ...Array.from({ length: 3 }, () => `runway DELETE /v1/tasks/${job.runway_task_id}`),
    ]);
    expect(harness.appCalls('report', mark).map((request) => request.json)).toEqual([failedReport(job, LOOKUP_502)]);
    expect(harness.sandbox.runway.task(job.runway_task_id)?.deleted).toBe(false);
  });
});

/** A second worker whose Runway calls go through a stand-in in front of the sandbox Runway. */
async function workerBehindRunway(harness: Harness, runway: Omit<StandInOptions, 'target'>) {
  const standIn = await startStandIn({ target: harness.sandbox.runwayApiUrl, ...runway });
  const worker = await startExtraWorker(harness, { env: { RUNWAY_API_URL: standIn.url } });
  return { standIn, worker };
}

const isLookup = (request: { method: string; path: string }): boolean => request.method === 'GET' && request.path.startsWith('/v1/tasks/');

describe('runway-callback whose task lookup Runway refuses for good (401)', () => {
  it('does not wait for the last delivery: cancels and reports failed at once', async () => {
    const { harness, job } = await running();
    const { standIn, worker } = await workerBehindRunway(harness, {
      answer: (request) => (isLookup(request) ? { status: 401, json: { error: 'Incorrect or missing API key' } } : undefined),
    });
    const mark = harness.mark();

    const answer = await worker.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(standIn.requests().map((request) => `${request.method} ${request.path}`)).toEqual([
      `GET /v1/tasks/${job.runway_task_id}`,
      `DELETE /v1/tasks/${job.runway_task_id}`,
    ]);
    expect(harness.appCalls('report', mark).map((request) => request.json)).toEqual([
      failedReport(job, 'runway: task lookup answered 401 (Incorrect or missing API key)'),
    ]);
    expect(harness.sandbox.app.item(job.item_id)).toMatchObject({ status: 'failed', retry_count: 1 });
  });
});

describe('runway-callback for a task Runway reports CANCELLED', () => {
  it('reports failed as cancelled, cancels nothing and starts no new generation', async () => {
    const { harness, job } = await running();
    const { standIn, worker } = await workerBehindRunway(harness, {
      rewrite: (request, reply) => {
        if (!isLookup(request)) return reply;
        const { progress: _progress, ...task } = reply.json as Record<string, unknown>;
        return { status: reply.status, json: { ...task, status: 'CANCELLED' } };
      },
    });
    const mark = harness.mark();

    const answer = await worker.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(standIn.requests().map((request) => `${request.method} ${request.path}`)).toEqual([`GET /v1/tasks/${job.runway_task_id}`]);
    expect(harness.requests({ service: 'runway', since: mark }).map(describeRequest)).toEqual([`runway GET /v1/tasks/${job.runway_task_id}`]);
    expect(harness.appCalls('presign', mark)).toEqual([]);
    expect(harness.appCalls('report', mark).map((request) => request.json)).toEqual([failedReport(job, 'runway: task was cancelled')]);
    expect(harness.messages(undefined, mark)).toEqual([]);
  });
});

describe('runway-callback for a job whose video is stored and whose completed report never landed', () => {
  it('looks at nothing at Runway and uploads nothing: it sends the claimed report again', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'SUCCEEDED');
    // An upload delivery stored the video and claimed its completed report (the upload's
    // record), then died before the report went out, longer ago than a send round can take.
    const videoPath = `videos/${item.item_id}.mp4`;
    await harness.sandbox.storage.putObject('generated-videos', videoPath, sampleVideo(), 'video/mp4');
    const claimedAt = new Date(Date.now() - reportSettleMs(harness.runtime.deps.timeouts) - 1_000).toISOString();
    await harness.runtime.deps.ledger.claim({ itemId: item.item_id, attempt: 1 }, 'reported', {
      status: 'completed',
      at: claimedAt,
      video_storage_path: videoPath,
      veo_operation_id: job.runway_task_id,
      video_bytes: sampleVideo().length,
    });
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'report re-sent' });
    // A heartbeat shows the report did not land (the item is still ours); then it is sent.
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual(['app POST /worker/heartbeat', 'app POST /worker/report']);
    expect(harness.appCalls('report', mark).map((request) => request.json)).toEqual([
      { item_id: item.item_id, worker_id: WORKER_ID, status: 'completed', video_storage_path: videoPath, veo_operation_id: job.runway_task_id },
    ]);
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)?.uploads).toBe(0);
  });
});

describe('runway-callback when the ledger cannot clear the model\'s THROTTLED note', () => {
  it('polls on as usual: publishes the next poll and keeps the throttled wait in the job', async () => {
    const { harness, job } = await running();
    // The note's name is taken by a folder: removing it fails.
    const note = path.join(harness.runtime.deps.config.ledgerDir, ...throttledPath(job.model).split('/'));
    await mkdir(path.join(note, 'in-the-way'), { recursive: true });
    const waited: Job = { ...job, last_status: 'THROTTLED', throttled: true };
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job: waited });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', status: 'RUNNING' });
    const published = harness.messages(CALLBACK, mark);
    expect(published).toHaveLength(1);
    expect(pollMessageSchema.parse(JSON.parse(published[0]?.body ?? '')).job).toMatchObject({
      polls: 1,
      last_status: 'RUNNING',
      throttled: true,
    });
  });
});

describe('runway-callback after the lease was lost, while Runway cannot cancel the task', () => {
  it('still closes the job as abandoned and reports nothing', async () => {
    const { harness, job, faults } = await runningWithFlakyRunway();
    harness.sandbox.app.adminFail(job.item_id);
    // The lookup goes through; the three tries of the cancel answer 502.
    faults.fireOn(faults.draws() + 2, faults.draws() + 3, faults.draws() + 4);
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job: { ...job, last_heartbeat_at: Date.now() - 200_000 } });

    expect(answer.status).toBe(200);
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([
      `runway GET /v1/tasks/${job.runway_task_id}`,
      'app POST /worker/heartbeat',
      ...Array.from({ length: 3 }, () => `runway DELETE /v1/tasks/${job.runway_task_id}`),
    ]);
    expect(harness.sandbox.runway.task(job.runway_task_id)?.deleted).toBe(false);
    const record = await harness.runtime.deps.ledger.read({ itemId: job.item_id, attempt: 1 });
    expect(record.abandoned?.reason).toBe('lease lost (heartbeat 404)');
    expect(record.reported).toBeUndefined();
    expect(harness.messages(undefined, mark)).toEqual([]);
  });
});
