import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sampleVideo } from '../../sandbox/runway-output.js';
import { reportSettleMs } from '../../lib/deps.js';
import { factPath, type JobKey } from '../../lib/ledger/ledger.js';
import { reportRoundKey } from '../../lib/steps/report.js';
import { closeExtraWorkers, startExtraWorker } from '../support/extra-worker.js';
import { closeStandIns, startStandIn } from '../support/extra-stand-in.js';
import { describeRequest, readyToUpload, submit, waitForTaskStatus, type ReadyToUpload } from '../support/flow.js';
import { WORKER_ID, closeHarnesses, seedItem, startHarness, type Harness, type HarnessOptions, type Mark } from '../support/harness.js';
import { countedRng, SCRIPTED_FAULT_RATE } from '../support/scripted-rng.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * The report after an upload (contract §1.4: not idempotent, never `failed` once the video
 * is stored). A report is claimed in the ledger before it is sent; an answer that does not
 * come back is settled by a heartbeat — 404 once the item has left `processing`, 200 while it
 * is still ours — and a report is only ever sent again in a new send round of the same claim.
 */

const STEP_UPLOAD = '/api/step-upload';
const CALLBACK = '/api/runway-callback';
const NOT_CONFIRMED = 'an earlier report is not confirmed yet';

/** The app's side of what happened since `since`: route per call, in order. */
function appTraffic(harness: Harness, since: Mark): string[] {
  return harness.requests({ service: 'app', since }).map(describeRequest);
}

function completedReport(ready: ReadyToUpload): Record<string, unknown> {
  return { item_id: ready.itemId, worker_id: WORKER_ID, status: 'completed', video_storage_path: ready.videoPath, veo_operation_id: ready.taskId };
}

const keyOf = (ready: ReadyToUpload): JobKey => ({ itemId: ready.itemId, attempt: 1 });

/** Report calls that reached the app for the item since `since`, as sent. */
function reportsSent(ready: ReadyToUpload, since?: Mark): unknown[] {
  return ready.harness.appCalls('report', since).map((request) => request.json);
}

describe('a completed report that the app applies but whose answer is lost', () => {
  it('asks the lease, takes its 404 as the report having landed, and never sends it twice', async () => {
    const faults = countedRng();
    const ready = await readyToUpload({ sandbox: { rng: faults.rng, faults: { app: { lostResponseRate: SCRIPTED_FAULT_RATE } } } });
    const { harness, message, itemId, mark } = ready;
    // One draw per app call: the heartbeat, the upload presign, then the report.
    faults.fireOn(faults.draws() + 3);

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: `completed: ${ready.videoPath}` });
    expect(appTraffic(harness, mark)).toEqual([
      'app POST /worker/heartbeat',
      'app POST /worker/presign',
      'app POST /worker/report',
      'app POST /worker/heartbeat',
    ]);
    expect(reportsSent(ready, mark)).toEqual([completedReport(ready)]);
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([{ status: 'completed', applied: true, responseLost: true }]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'completed', video_storage_path: ready.videoPath });
    const { ledger } = harness.runtime.deps;
    expect((await ledger.read(keyOf(ready))).reported).toMatchObject({ status: 'completed' });
    expect(await ledger.read(reportRoundKey(keyOf(ready), 1))).not.toHaveProperty('abandoned');
  });
});

describe('a completed report that the app answers 500 to once, applying nothing', () => {
  it('sends it again in the same delivery once a heartbeat shows the item is still ours', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId, mark } = ready;
    harness.sandbox.app.failNext('report', 1, { itemId });

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    expect(appTraffic(harness, mark).slice(2)).toEqual(['app POST /worker/report', 'app POST /worker/heartbeat', 'app POST /worker/report']);
    expect(reportsSent(ready, mark)).toEqual([completedReport(ready), completedReport(ready)]);
    // The 500 came before the app's report logic: only the second send reached it.
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([{ status: 'completed', httpStatus: 200, applied: true }]);
  });
});

describe('a completed report whose three sends in one delivery all go unanswered', () => {
  async function allSendsLost(): Promise<ReadyToUpload> {
    const ready = await readyToUpload();
    ready.harness.sandbox.app.failNext('report', 3, { itemId: ready.itemId });
    return ready;
  }

  it('answers retry and records the send round as abandoned in the ledger', async () => {
    const ready = await allSendsLost();
    const { harness, message, itemId } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: 'app: the report did not go through; it will be sent again' });
    expect(reportsSent(ready)).toEqual([completedReport(ready), completedReport(ready), completedReport(ready)]);
    expect(harness.sandbox.app.reports(itemId).filter((report) => report.applied)).toEqual([]);
    const { ledger } = harness.runtime.deps;
    expect((await ledger.read(keyOf(ready))).reported).toMatchObject({ status: 'completed', video_storage_path: ready.videoPath });
    expect((await ledger.read(reportRoundKey(keyOf(ready), 1))).abandoned).toMatchObject({ reason: 'report not confirmed' });
  });

  it('lets the next delivery start round 2 at once and send the report exactly as claimed', async () => {
    const ready = await allSendsLost();
    const { harness, message, itemId } = ready;
    expect((await harness.deliver(STEP_UPLOAD, message)).status).toBe(503);
    const second = harness.mark();

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'report re-sent' });
    // No presign, no PUT: only the heartbeat that proves the report has not landed, and the report.
    expect(harness.requests({ since: second }).map(describeRequest)).toEqual(['app POST /worker/heartbeat', 'app POST /worker/report']);
    expect(reportsSent(ready, second)).toEqual([completedReport(ready)]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'completed', video_storage_path: ready.videoPath });
    const round = await harness.runtime.deps.ledger.read(reportRoundKey(keyOf(ready), 2));
    expect(round.submitting).toBeDefined();
    expect(round.abandoned).toBeUndefined();
  });
});

/** Settle tests let a Retry-After up to the whole settle time through (it is cut to one heartbeat interval). */
const LONG_HEARTBEAT: HarnessOptions = { env: { HEARTBEAT_INTERVAL_SECONDS: '300' } };

const settleMsOf = (harness: Harness): number => reportSettleMs(harness.runtime.deps.timeouts);

/** The wait left, in whole seconds: at most `most`, less by however long the delivery took. */
function expectRetryAfterWithin(headers: Headers, least: number, most: number): void {
  const seconds = Number(headers.get('retry-after'));
  expect(seconds).toBeGreaterThanOrEqual(least);
  expect(seconds).toBeLessThanOrEqual(most);
}
const ago = (ms: number): string => new Date(Date.now() - ms).toISOString();

/**
 * An item whose video is stored and whose completed report a delivery claimed (at the time
 * `claimedAt` picks, given the settle time) and has not confirmed: the item is still processing.
 */
async function reportClaimed(claimedAt: (settleMs: number) => string): Promise<ReadyToUpload> {
  const ready = await readyToUpload(LONG_HEARTBEAT);
  const { harness, videoPath, taskId } = ready;
  const { ledger } = harness.runtime.deps;
  const video = sampleVideo();
  await harness.sandbox.storage.putObject('generated-videos', videoPath, video, 'video/mp4');
  await ledger.claim(keyOf(ready), 'uploaded', { storage_path: videoPath, bytes: video.length, at: new Date().toISOString() });
  await ledger.claim(keyOf(ready), 'reported', {
    status: 'completed',
    at: claimedAt(settleMsOf(harness)),
    video_storage_path: videoPath,
    veo_operation_id: taskId,
  });
  return { ...ready, mark: harness.mark() };
}

describe('a delivery that finds the report claimed a moment ago and not confirmed', () => {
  it('answers retry with the settle time left, after sending nothing but a heartbeat', async () => {
    const ready = await reportClaimed((settleMs) => ago(settleMs - 30_000));
    const { harness, message, itemId, mark } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: NOT_CONFIRMED });
    expectRetryAfterWithin(answer.headers, 25, 30);
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual(['app POST /worker/heartbeat']);
    expect(harness.sandbox.app.item(itemId)?.status).toBe('processing');
    expect(await harness.runtime.deps.ledger.read(reportRoundKey(keyOf(ready), 2))).not.toHaveProperty('submitting');
  });

  it('counts the wait from the start of a re-send round still in flight, not from the claim', async () => {
    const ready = await reportClaimed(() => ago(3_600_000));
    const { harness, message, mark } = ready;
    await harness.runtime.deps.ledger.claim(reportRoundKey(keyOf(ready), 2), 'submitting', { at: ago(settleMsOf(harness) - 20_000) });

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ detail: NOT_CONFIRMED });
    expectRetryAfterWithin(answer.headers, 15, 20);
    expect(harness.appCalls('report', mark)).toEqual([]);
    expect(await harness.runtime.deps.ledger.read(reportRoundKey(keyOf(ready), 3))).not.toHaveProperty('submitting');
  });

  it('waits the whole settle time when the claim\'s time cannot be read', async () => {
    const ready = await reportClaimed(() => 'not a time');
    const { harness, message, mark } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ detail: NOT_CONFIRMED });
    expect(answer.headers.get('retry-after')).toBe(String(settleMsOf(harness) / 1000));
    expect(harness.appCalls('report', mark)).toEqual([]);
  });
});

describe('a delivery that finds a report claimed longer ago than any send round can take', () => {
  it('takes its sender for dead and sends the report again in round 2, once the heartbeat shows it did not land', async () => {
    const ready = await reportClaimed((settleMs) => ago(settleMs + 60_000));
    const { harness, message, itemId, mark } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'report re-sent' });
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual(['app POST /worker/heartbeat', 'app POST /worker/report']);
    expect(reportsSent(ready, mark)).toEqual([completedReport(ready)]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'completed', video_storage_path: ready.videoPath });
    expect((await harness.runtime.deps.ledger.read(reportRoundKey(keyOf(ready), 2))).submitting).toBeDefined();
  });
});

describe('a failed report whose three sends in one delivery all go unanswered', () => {
  it('is sent again on the next delivery exactly as claimed, and the item fails once', async () => {
    const item = seedItem('refused.jpg');
    const harness = await startHarness({ items: [item] });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');
    harness.sandbox.app.failNext('report', 3, { itemId: item.item_id });
    expect((await harness.deliver(CALLBACK, { job })).status).toBe(503);
    const second = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job }, { retried: 1 });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'report re-sent' });
    // No second look at Runway: the claim holds the report to send.
    expect(harness.requests({ since: second }).map(describeRequest)).toEqual(['app POST /worker/heartbeat', 'app POST /worker/report']);
    const sent = harness.appCalls('report').map((request) => request.json);
    expect(sent).toHaveLength(4);
    expect(sent[3]).toEqual({
      item_id: item.item_id,
      worker_id: WORKER_ID,
      status: 'failed',
      error_message: "runway: SAFETY.INPUT.IMAGE — the photo was rejected by Runway's content moderation",
      veo_operation_id: job.runway_task_id,
    });
    expect(new Set(sent.map((body) => JSON.stringify(body))).size).toBe(1);
    expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'failed', retry_count: 1 });
  });
});

describe('a delivery that finds a long-unconfirmed report while the app does not answer heartbeats', () => {
  it('never sends the report blind: answers retry after the heartbeat\'s tries, sending no report', async () => {
    const ready = await reportClaimed(() => ago(3_600_000));
    const { harness, message, itemId, mark } = ready;
    harness.sandbox.app.failNext('heartbeat', 3, { itemId });

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: NOT_CONFIRMED });
    expect(answer.headers.get('retry-after')).toBe(String(settleMsOf(harness) / 1000));
    expect(appTraffic(harness, mark)).toEqual(['app POST /worker/heartbeat', 'app POST /worker/heartbeat', 'app POST /worker/heartbeat']);
    expect(harness.sandbox.app.item(itemId)?.status).toBe('processing');
  });
});

describe('a late upload delivery of attempt 1 after the item came back as attempt 2', () => {
  it('treats attempt 1\'s report as history: sends nothing at all, not even a heartbeat', async () => {
    const ready = await readyToUpload({ sandbox: { maxUploadBytes: 1_000 } });
    const { harness, message, itemId } = ready;
    // Attempt 1 ends reported failed (the video is over the size limit), then an admin puts it back.
    expect((await harness.deliver(STEP_UPLOAD, message)).status).toBe(489);
    harness.sandbox.app.adminRetry(itemId);
    expect((await harness.cron()).json).toMatchObject({ items: [{ item_id: itemId, outcome: 'submitted' }] });
    const attempt2 = await harness.runtime.deps.ledger.read({ itemId, attempt: 2 });
    // Late enough that attempt 1's claim is past the settle time: only the attempt check stops a re-send.
    const later = await startExtraWorker(harness, { now: () => Date.now() + 10 * 60_000 });
    const mark = harness.mark();

    const answer = await later.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'already reported' });
    expect(harness.requests({ since: mark })).toEqual([]);
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'processing', retry_count: 1 });
    expect(harness.sandbox.runway.task(attempt2.task?.runway_task_id ?? '')?.deleted).toBe(false);
  });
});

describe('a poll that fails for good after the video was uploaded', () => {
  it('never reports failed: the failed report is refused and nothing reaches the app', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'SUCCEEDED');
    const key = { itemId: item.item_id, attempt: 1 };
    const videoPath = `videos/${item.item_id}.mp4`;
    let stored = false;
    // Runway's task lookups fail; while the first is under way, an upload delivery stores the video.
    const runway = await startStandIn({
      target: harness.sandbox.runwayApiUrl,
      rewrite: async (request, reply) => {
        if (request.method !== 'GET') return reply;
        if (!stored) {
          stored = true;
          await harness.sandbox.storage.putObject('generated-videos', videoPath, sampleVideo(), 'video/mp4');
          await harness.runtime.deps.ledger.claim(key, 'uploaded', { storage_path: videoPath, bytes: sampleVideo().length, at: new Date().toISOString() });
        }
        return { status: 502, json: { error: 'Bad gateway' } };
      },
    });
    const worker = await startExtraWorker(harness, { env: { RUNWAY_API_URL: runway.url } });
    const mark = harness.mark();

    const answer = await worker.deliver(CALLBACK, { job }, { retried: 3 });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'video already uploaded: not reporting failed' });
    expect(runway.requests().map((request) => `${request.method} ${request.path}`)).toEqual([
      ...Array.from({ length: 3 }, () => `GET /v1/tasks/${job.runway_task_id}`),
      `DELETE /v1/tasks/${job.runway_task_id}`,
    ]);
    expect(harness.appCalls('report', mark)).toEqual([]);
    expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'processing', retry_count: 0 });
    expect((await harness.runtime.deps.ledger.read(key)).reported).toBeUndefined();
  });
});

describe('a completed report the app refuses because it finds no video in storage', () => {
  /**
   * An item whose upload is recorded (its completed report claimed, longer ago than a send
   * round can take, and never confirmed) while its video is not in storage (yet).
   */
  async function videoNotThere(): Promise<ReadyToUpload> {
    const ready = await readyToUpload();
    const at = new Date(Date.now() - reportSettleMs(ready.harness.runtime.deps.timeouts) - 1_000).toISOString();
    await ready.harness.runtime.deps.ledger.claim(keyOf(ready), 'reported', {
      status: 'completed',
      at,
      video_storage_path: ready.videoPath,
      veo_operation_id: ready.taskId,
      video_bytes: 1,
    });
    return ready;
  }

  it('answers retry, uploads nothing again and ends the send round', async () => {
    const ready = await videoNotThere();
    const { harness, message, itemId, mark } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: 'the app finds no video in storage for the completed report' });
    // The heartbeat shows the claimed report never landed: a second round sends it.
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual(['app POST /worker/heartbeat', 'app POST /worker/report']);
    expect(reportsSent(ready, mark)).toEqual([completedReport(ready)]);
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([{ status: 'completed', httpStatus: 500, applied: false }]);
    expect((await harness.runtime.deps.ledger.read(reportRoundKey(keyOf(ready), 2))).abandoned).toBeDefined();
  });

  it('sends the same report again on the next delivery, which lands once the video is there', async () => {
    const ready = await videoNotThere();
    const { harness, message, itemId, videoPath } = ready;
    expect((await harness.deliver(STEP_UPLOAD, message)).status).toBe(503);
    await harness.sandbox.storage.putObject('generated-videos', videoPath, sampleVideo(), 'video/mp4');
    const second = harness.mark();

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(200);
    expect(appTraffic(harness, second)).toEqual(['app POST /worker/heartbeat', 'app POST /worker/report']);
    expect(reportsSent(ready, second)).toEqual([completedReport(ready)]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'completed', video_storage_path: videoPath });
  });
});

describe('a report claim that the ledger cannot read back', () => {
  it('sends no report rather than risk a second one, and leaves the entry as it is', async () => {
    const item = seedItem('refused.jpg');
    const harness = await startHarness({ items: [item] });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');
    const file = path.join(harness.runtime.deps.config.ledgerDir, ...factPath({ itemId: item.item_id, attempt: 1 }, 'reported').split('/'));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, '{"status":"fail');
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'already reported' });
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([`runway GET /v1/tasks/${job.runway_task_id}`]);
    expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'processing', retry_count: 0 });
    expect(await readFile(file, 'utf8')).toBe('{"status":"fail');
  });
});

describe('a send round whose end the ledger cannot record', () => {
  it('answers with the report\'s own failure, not the ledger\'s', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId } = ready;
    harness.sandbox.app.failNext('report', 3, { itemId });
    // The rounds' folder is taken by a plain file: recording round 1 as abandoned fails.
    const roundFile = factPath(reportRoundKey(keyOf(ready), 1), 'abandoned').split('/');
    await writeFile(path.join(harness.runtime.deps.config.ledgerDir, ...roundFile.slice(0, 2)), 'not a folder');

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: 'app: the report did not go through; it will be sent again' });
    expect(reportsSent(ready)).toHaveLength(3);
    expect((await harness.runtime.deps.ledger.read(keyOf(ready))).reported).toMatchObject({ status: 'completed' });
  });
});
