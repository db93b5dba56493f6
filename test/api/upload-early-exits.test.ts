import { afterEach, describe, expect, it } from 'vitest';
import { sampleVideo } from '../../sandbox/runway-output.js';
import type { JobKey } from '../../lib/ledger/ledger.js';
import { closeExtraWorkers, startExtraWorker, type ExtraWorker } from '../support/extra-worker.js';
import { closeStandIns, startSocketTrap, startStandIn, type StandInOptions } from '../support/extra-stand-in.js';
import { describeRequest, readyToUpload, type ReadyToUpload } from '../support/flow.js';
import { RUNWAY_AUTH, WORKER_ID, closeHarnesses, type Harness } from '../support/harness.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * The ways step-upload stops short of a plain upload-and-report (design §2 "step-upload"):
 * a closed job, a lost lease, an output that is gone, a presign refused because the video
 * may already be stored, and storage answers the worker cannot take as a stored video.
 */

const STEP_UPLOAD = '/api/step-upload';
const MB = 1024 * 1024;

const keyOf = (ready: ReadyToUpload): JobKey => ({ itemId: ready.itemId, attempt: 1 });

/** What every service received since the message was ready, route per call. */
const traffic = (ready: ReadyToUpload): string[] => ready.harness.requests({ since: ready.mark }).map(describeRequest);

function reportsSent(ready: ReadyToUpload): unknown[] {
  return ready.harness.appCalls('report', ready.mark).map((request) => request.json);
}

function videos(harness: Harness) {
  return harness.sandbox.storage.objects().filter((object) => object.bucket === 'generated-videos');
}

/** A second worker whose app calls go through a stand-in in front of the sandbox app. */
async function workerBehindApp(ready: ReadyToUpload, app: Omit<StandInOptions, 'target'>): Promise<ExtraWorker> {
  const standIn = await startStandIn({ target: ready.harness.sandbox.nextApiUrl, ...app });
  return startExtraWorker(ready.harness, { env: { NEXT_API_URL: standIn.url } });
}

const isUploadPresign = (request: { path: string; json: unknown }): boolean =>
  request.path === '/worker/presign' && JSON.stringify(request.json).includes('"upload"');

/** The video of an earlier delivery whose upload landed but was never recorded. */
async function storedEarlier(ready: ReadyToUpload): Promise<void> {
  await ready.harness.sandbox.storage.putObject('generated-videos', ready.videoPath, sampleVideo(), 'video/mp4');
}

describe('step-upload for a job the ledger marks abandoned', () => {
  it('answers 200 and calls nobody: no heartbeat, no presign, no upload, no report', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId } = ready;
    harness.sandbox.app.adminFail(itemId);
    expect((await harness.deliver(STEP_UPLOAD, message)).status).toBe(200);
    const mark = harness.mark();

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'job abandoned: nothing to do' });
    expect(harness.requests({ since: mark })).toEqual([]);
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(videos(harness)).toEqual([]);
  });
});

describe('step-upload after another worker leased the item', () => {
  it('stops at the heartbeat: presigns nothing, uploads nothing, cancels nothing and leaves their lease alone', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId, taskId } = ready;
    harness.sandbox.app.expireLease(itemId);
    await harness.leaseAs('another-worker');
    const mark = harness.mark();

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'lease lost: not uploading' });
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual(['app POST /worker/heartbeat']);
    expect(harness.appCalls('heartbeat', mark)[0]?.json).toEqual({ item_id: itemId, worker_id: WORKER_ID, extend_seconds: 600 });
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'processing', worker_id: 'another-worker' });
    expect(harness.sandbox.runway.task(taskId)?.deleted).toBe(false);
    expect((await harness.runtime.deps.ledger.read(keyOf(ready))).abandoned?.reason).toBe('lease lost before upload');
  });
});

describe('step-upload when the finished task is gone at Runway', () => {
  it('gets the task once for a fresh output URL, then reports failed without a PUT', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId, taskId } = ready;
    const deleted = await fetch(`${harness.sandbox.runwayApiUrl}/v1/tasks/${taskId}`, {
      method: 'DELETE',
      headers: { authorization: RUNWAY_AUTH, 'x-runway-version': '2024-11-06' },
    });
    expect(deleted.status).toBe(204);
    const mark = harness.mark();

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(489);
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([
      'app POST /worker/heartbeat',
      'app POST /worker/presign',
      `runway GET /outputs/${taskId}.mp4`,
      `runway GET /v1/tasks/${taskId}`,
      'app POST /worker/report',
    ]);
    expect(harness.appCalls('report', mark).map((request) => request.json)).toEqual([
      {
        item_id: itemId,
        worker_id: WORKER_ID,
        status: 'failed',
        error_message: 'runway: the finished task has no output video',
        veo_operation_id: taskId,
      },
    ]);
    expect(videos(harness)).toEqual([]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'failed', retry_count: 1 });
  });
});

describe('step-upload whose output URL answers 503', () => {
  it('answers retry without getting the task again for a fresh URL, and uploads nothing', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId, taskId } = ready;
    const cdn = await startStandIn({
      target: harness.sandbox.runwayApiUrl,
      answer: () => ({ status: 503, json: { error: 'Service Unavailable' } }),
    });
    const outputUrl = new URL(message.output_url ?? '');
    const unavailable = `${cdn.url}${outputUrl.pathname.slice(new URL(harness.sandbox.runwayApiUrl).pathname.length)}${outputUrl.search}`;

    const answer = await harness.deliver(STEP_UPLOAD, { ...message, output_url: unavailable });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: 'output: download answered 503' });
    expect(cdn.requests().map((request) => `${request.method} ${request.path.split('?')[0] ?? ''}`)).toEqual([`GET /outputs/${taskId}.mp4`]);
    expect(traffic(ready)).toEqual(['app POST /worker/heartbeat', 'app POST /worker/presign']);
    expect(harness.appCalls('report', ready.mark)).toEqual([]);
    expect(harness.sandbox.app.item(itemId)?.status).toBe('processing');
  });
});

describe('step-upload whose upload presign is refused because the video is already stored', () => {
  it('sends the completed report under the ledger\'s claim when a duplicate delivery recorded the upload meanwhile', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId } = ready;
    const { ledger } = harness.runtime.deps;
    let duplicateDone = false;
    const claimedWhenSent: boolean[] = [];
    const worker = await workerBehindApp(ready, {
      rewrite: async (request, reply) => {
        // After our heartbeat, a duplicate delivery stores the video and records it, but has not reported yet.
        if (request.path === '/worker/heartbeat' && !duplicateDone) {
          duplicateDone = true;
          await storedEarlier(ready);
          await ledger.claim(keyOf(ready), 'uploaded', { storage_path: ready.videoPath, bytes: sampleVideo().length, at: new Date().toISOString() });
        }
        if (request.path === '/worker/report') claimedWhenSent.push((await ledger.read(keyOf(ready))).reported !== undefined);
        return reply;
      },
    });

    const answer = await worker.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: `completed: ${ready.videoPath}` });
    expect(harness.requests({ service: 'storage', since: ready.mark })).toEqual([]);
    expect(reportsSent(ready)).toEqual([
      { item_id: itemId, worker_id: WORKER_ID, status: 'completed', video_storage_path: ready.videoPath, veo_operation_id: ready.taskId },
    ]);
    // Claimed before it went out: the duplicate, reaching its report, finds the claim and sends none.
    expect(claimedWhenSent).toEqual([true]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'completed', video_storage_path: ready.videoPath });
  });

  it('reports nothing and abandons the job when the item was taken away before the report', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId, taskId } = ready;
    await storedEarlier(ready);
    let taken = false;
    const worker = await workerBehindApp(ready, {
      rewrite: async (request, reply) => {
        if (isUploadPresign(request) && !taken) {
          taken = true;
          harness.sandbox.app.expireLease(itemId);
          await harness.leaseAs('another-worker');
        }
        return reply;
      },
    });

    const answer = await worker.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'lease lost: nothing reported' });
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([{ status: 'completed', httpStatus: 403, applied: false }]);
    expect(harness.requests({ service: 'runway', since: ready.mark }).map(describeRequest)).toEqual([`runway DELETE /v1/tasks/${taskId}`]);
    expect(harness.requests({ service: 'storage', since: ready.mark })).toEqual([]);
    const record = await harness.runtime.deps.ledger.read(keyOf(ready));
    expect(record.abandoned?.reason).toBe('lease lost (report refused)');
    expect(record).not.toHaveProperty('reported');
    expect(record).not.toHaveProperty('uploaded');
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'processing', worker_id: 'another-worker', retry_count: 0 });
  });

  it('answers retry, claiming nothing, when the report\'s answers are lost, and asks the app again next time', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId } = ready;
    await storedEarlier(ready);
    harness.sandbox.app.failNext('report', 3, { itemId });

    const first = await harness.deliver(STEP_UPLOAD, message);

    expect(first.status).toBe(503);
    expect(first.json).toMatchObject({ outcome: 'retry', detail: 'app: the report did not go through; it will be sent again' });
    expect(traffic(ready).filter((call) => call !== 'app POST /worker/presign')).toEqual([
      'app POST /worker/heartbeat',
      ...Array.from({ length: 3 }, () => ['app POST /worker/report', 'app POST /worker/heartbeat']).flat(),
    ]);
    expect(await harness.runtime.deps.ledger.read(keyOf(ready))).toEqual({ itemId, attempt: 1, submitting: expect.anything() as unknown, task: expect.anything() as unknown });
    expect(harness.sandbox.app.item(itemId)?.status).toBe('processing');

    const second = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(second.status).toBe(200);
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([{ status: 'completed', applied: true }]);
    expect(harness.requests({ service: 'storage', since: ready.mark })).toEqual([]);
  });
});

describe('step-upload whose PUT storage refuses for a reason another try cannot fix', () => {
  it('reports failed at once naming the storage code, and stores nothing', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId } = ready;
    // A token signed for another object: storage answers 400 InvalidSignature.
    const foreignToken = new URL(harness.sandbox.storage.signUpload('generated-videos', 'videos/someone-else.mp4')).searchParams.get('token') ?? '';
    const worker = await workerBehindApp(ready, {
      rewrite: (request, reply) => {
        if (!isUploadPresign(request)) return reply;
        const data = (reply.json as { data: { url: string } }).data;
        const url = new URL(data.url);
        url.searchParams.set('token', foreignToken);
        return { status: reply.status, json: { success: true, data: { ...data, url: url.href } } };
      },
    });

    const answer = await worker.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(489);
    expect(harness.requests({ service: 'storage', method: 'PUT', since: ready.mark })).toHaveLength(1);
    expect(videos(harness)).toEqual([]);
    expect(reportsSent(ready)).toEqual([
      {
        item_id: itemId,
        worker_id: WORKER_ID,
        status: 'failed',
        error_message: 'storage: upload refused (statusCode 400 InvalidSignature)',
        veo_operation_id: ready.taskId,
      },
    ]);
    expect((await harness.runtime.deps.ledger.read(keyOf(ready))).uploaded).toBeUndefined();
  });
});

describe('step-upload whose upload target answers success before it has the whole video', () => {
  it('takes it for no upload: answers retry, records nothing and reports nothing', async () => {
    const ready = await readyToUpload({ sandbox: { runway: { generationMs: 300, outputBytes: 12 * MB } } });
    const { harness, message, itemId } = ready;
    const early = await startSocketTrap({
      reply: { contentType: 'application/json', body: Buffer.from(JSON.stringify({ Key: `generated-videos/${ready.videoPath}` })) },
    });
    const worker = await workerBehindApp(ready, {
      rewrite: (request, reply) => {
        if (!isUploadPresign(request)) return reply;
        const data = (reply.json as { data: { url: string } }).data;
        const url = new URL(data.url);
        url.host = `127.0.0.1:${early.port}`;
        return { status: reply.status, json: { success: true, data: { ...data, url: url.href } } };
      },
    });

    const answer = await worker.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({
      outcome: 'retry',
      detail: expect.stringMatching(new RegExp(`^storage: answered success after \\d+ of ${12 * MB} bytes$`)) as unknown,
    });
    expect(early.connections()).toBe(1);
    expect(harness.requests({ service: 'storage', since: ready.mark })).toEqual([]);
    expect(harness.appCalls('report', ready.mark)).toEqual([]);
    expect(await harness.runtime.deps.ledger.read(keyOf(ready))).not.toHaveProperty('uploaded');
    expect(harness.sandbox.app.item(itemId)?.status).toBe('processing');
  });
});
