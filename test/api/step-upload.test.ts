import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import { describeRequest, readyToUpload, type ReadyToUpload as Ready } from '../support/flow.js';
import {
  RUNWAY_AUTH,
  WORKER_AUTH,
  WORKER_ID,
  closeHarnesses,
  type Harness,
  type Mark,
} from '../support/harness.js';
import { SCRIPTED_FAULT_RATE, scriptedRng } from '../support/scripted-rng.js';
import { storedVideoOf } from '../../lib/ledger/ledger.js';

afterEach(closeHarnesses);

const STEP_UPLOAD = '/api/step-upload';

const presignBodySchema = z.object({ operation: z.string() });

function uploadPresigns(harness: Harness, since?: Mark): RecordedRequest[] {
  return harness.appCalls('presign', since).filter((request) => presignBodySchema.safeParse(request.json).data?.operation === 'upload');
}

async function storedSha256(harness: Harness, videoPath: string): Promise<string> {
  const file = harness.sandbox.storage.filePath('generated-videos', videoPath);
  if (!file) throw new Error(`no stored bytes for ${videoPath}`);
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

function expectOneCompletedReport(ready: Ready): void {
  const reports = ready.harness.appCalls('report');
  expect(reports).toHaveLength(1);
  expect(reports[0]?.headers['authorization']).toBe(WORKER_AUTH);
  expect(reports[0]?.json).toEqual({
    item_id: ready.itemId,
    worker_id: WORKER_ID,
    status: 'completed',
    video_storage_path: ready.videoPath,
    veo_operation_id: ready.taskId,
  });
  expect(ready.harness.sandbox.app.item(ready.itemId)).toMatchObject({
    status: 'completed',
    video_storage_path: ready.videoPath,
    veo_operation_id: ready.taskId,
    retry_count: 0,
  });
}

describe('step-upload for a finished Runway task', () => {
  it('heartbeats, presigns the upload, streams the output with PUT and reports completed, in that order', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId, taskId, videoPath, mark } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([
      'app POST /worker/heartbeat',
      'app POST /worker/presign',
      `runway GET /outputs/${taskId}.mp4`,
      `storage PUT /object/upload/sign/generated-videos/${videoPath}`,
      'app POST /worker/report',
    ]);
    expect(harness.appCalls('heartbeat', mark)[0]?.json).toEqual({ item_id: itemId, worker_id: WORKER_ID, extend_seconds: 600 });
    const [presign] = harness.appCalls('presign', mark);
    expect(presign?.headers['authorization']).toBe(WORKER_AUTH);
    expect(presign?.json).toEqual({ operation: 'upload', video_item_id: itemId, file_extension: 'mp4' });
    const [output] = harness.requests({ service: 'runway', method: 'GET', path: /^\/outputs\//, since: mark });
    expect(message.output_url).toContain(output?.path ?? 'missing');
    // A signed output URL carries its own credentials: the Runway key must not travel with it.
    expect(output?.headers['authorization']).toBeUndefined();
    expect(ready.harness.sandbox.runway.task(taskId)?.polls).toBe(1);
  });

  it('PUTs the bytes with content-type video/mp4 and a content-length, and no credentials but the URL token', async () => {
    const ready = await readyToUpload();
    const { harness, message, taskId, videoPath, mark } = ready;

    await harness.deliver(STEP_UPLOAD, message);

    const [put] = harness.requests({ service: 'storage', method: 'PUT', since: mark });
    const outputBytes = harness.sandbox.runway.task(taskId)?.outputBytes;
    expect(outputBytes).toBeGreaterThan(0);
    expect(put?.path).toMatch(new RegExp(`^/object/upload/sign/generated-videos/${videoPath}\\?token=`));
    expect(put?.headers['content-type']).toBe('video/mp4');
    expect(put?.headers['content-length']).toBe(String(outputBytes));
    expect(put?.headers['authorization']).toBeUndefined();
    expect(put?.bytes).toBe(outputBytes);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)).toMatchObject({
      contentType: 'video/mp4',
      size: outputBytes,
      sha256: harness.sandbox.runway.outputSha256(taskId),
      uploads: 1,
    });
    expect(await storedSha256(harness, videoPath)).toBe(harness.sandbox.runway.outputSha256(taskId));
  });

  it('reports completed with the presigned storage path, the Runway task id as veo_operation_id, and the worker id', async () => {
    const ready = await readyToUpload();

    await ready.harness.deliver(STEP_UPLOAD, ready.message);

    expectOneCompletedReport(ready);
    const record = await ready.harness.runtime.deps.ledger.read({ itemId: ready.itemId, attempt: 1 });
    // The completed report's claim is the upload's record.
    expect(record.uploaded).toBeUndefined();
    expect(record.reported).toMatchObject({ status: 'completed', video_storage_path: ready.videoPath, video_bytes: ready.harness.sandbox.runway.task(ready.taskId)?.outputBytes });
    expect(storedVideoOf(record)).toMatchObject({ storage_path: ready.videoPath, bytes: ready.harness.sandbox.runway.task(ready.taskId)?.outputBytes });
  });

  it('uploads once and reports once when the same message is delivered twice', async () => {
    const ready = await readyToUpload();
    const { harness, message, videoPath } = ready;

    const first = await harness.deliver(STEP_UPLOAD, message);
    const second = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect([first.status, second.status]).toEqual([200, 200]);
    expect(harness.sandbox.storage.uploadAttempts('generated-videos', videoPath)).toBe(1);
    expect(uploadPresigns(harness)).toHaveLength(1);
    expectOneCompletedReport(ready);
  });

  it('stores one video and sends one report when the message is delivered twice at once', async () => {
    const ready = await readyToUpload();
    const { harness, message, taskId, videoPath } = ready;

    const answers = await Promise.all([harness.deliver(STEP_UPLOAD, message), harness.deliver(STEP_UPLOAD, message)]);

    // The loser either finds the work done (200) or asks QStash to come back later (503).
    expect(answers.map((answer) => answer.status)).toContain(200);
    for (const answer of answers) expect([200, 503]).toContain(answer.status);
    expect(harness.sandbox.storage.objects().filter((object) => object.bucket === 'generated-videos')).toHaveLength(1);
    expect(await storedSha256(harness, videoPath)).toBe(harness.sandbox.runway.outputSha256(taskId));
    expectOneCompletedReport(ready);
  });
});

describe('step-upload when the signed upload token has expired', () => {
  it('presigns again, fetches a fresh output URL and stores the video on the second try', async () => {
    const faults = scriptedRng();
    const ready = await readyToUpload({
      sandbox: { runway: { generationMs: 300 }, rng: faults.rng, faults: { storage: { expiredTokenRate: SCRIPTED_FAULT_RATE } } },
    });
    const { harness, message, taskId, videoPath, mark } = ready;
    faults.fireNext();

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([
      'app POST /worker/heartbeat',
      'app POST /worker/presign',
      `runway GET /outputs/${taskId}.mp4`,
      `storage PUT /object/upload/sign/generated-videos/${videoPath}`,
      'app POST /worker/presign',
      `runway GET /v1/tasks/${taskId}`,
      `runway GET /outputs/${taskId}.mp4`,
      `storage PUT /object/upload/sign/generated-videos/${videoPath}`,
      'app POST /worker/report',
    ]);
    expect(uploadPresigns(harness, mark).map((request) => request.json)).toEqual([
      { operation: 'upload', video_item_id: ready.itemId, file_extension: 'mp4' },
      { operation: 'upload', video_item_id: ready.itemId, file_extension: 'mp4' },
    ]);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)).toMatchObject({
      contentType: 'video/mp4',
      sha256: harness.sandbox.runway.outputSha256(taskId),
      uploads: 2,
    });
    expectOneCompletedReport(ready);
  });

  it('answers 503 without storing or reporting anything when the second token has expired too', async () => {
    const ready = await readyToUpload({ sandbox: { runway: { generationMs: 300 }, uploadTokenTtlSeconds: 0 } });
    const { harness, message, videoPath } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(503);
    expect(harness.sandbox.storage.uploadAttempts('generated-videos', videoPath)).toBe(2);
    expect(harness.sandbox.storage.has('generated-videos', videoPath)).toBe(false);
    expect(harness.appCalls('report')).toEqual([]);
    expect(harness.sandbox.app.item(ready.itemId)?.status).toBe('processing');
  });

  it('reports failed on QStash\'s last delivery, with the stage and no URL or token in the message', async () => {
    const ready = await readyToUpload({ sandbox: { runway: { generationMs: 300 }, uploadTokenTtlSeconds: 0 } });
    const { harness, message } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 3 });

    expect(answer.status).toBe(489);
    expect(answer.headers.get('upstash-nonretryable-error')).toBe('true');
    expect(harness.appCalls('report').map((request) => request.json)).toEqual([
      {
        item_id: ready.itemId,
        worker_id: WORKER_ID,
        status: 'failed',
        error_message: 'storage: upload token expired twice',
        veo_operation_id: ready.taskId,
      },
    ]);
  });
});

describe('step-upload when the Runway output URL answers 403', () => {
  it('gets the task again for a fresh output URL and uploads from it', async () => {
    const faults = scriptedRng();
    const ready = await readyToUpload({
      sandbox: { runway: { generationMs: 300 }, rng: faults.rng, faults: { runway: { outputForbiddenRate: SCRIPTED_FAULT_RATE } } },
    });
    const { harness, message, taskId, videoPath, mark } = ready;
    faults.fireNext();

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    const runway = harness.requests({ service: 'runway', since: mark });
    expect(runway.map(describeRequest)).toEqual([
      `runway GET /outputs/${taskId}.mp4`,
      `runway GET /v1/tasks/${taskId}`,
      `runway GET /outputs/${taskId}.mp4`,
    ]);
    expect(runway[1]?.headers['authorization']).toBe(RUNWAY_AUTH);
    expect(runway[1]?.headers['x-runway-version']).toBe('2024-11-06');
    expect(runway[0]?.path).not.toBe(runway[2]?.path);
    expect(message.output_url).toContain(runway[0]?.path ?? 'missing');
    expect(harness.sandbox.storage.object('generated-videos', videoPath)).toMatchObject({
      sha256: harness.sandbox.runway.outputSha256(taskId),
      uploads: 1,
    });
    expectOneCompletedReport(ready);
  });
});

describe('step-upload with a large output video', () => {
  it('streams 20 MB through to storage byte for byte', async () => {
    const ready = await readyToUpload({ sandbox: { runway: { generationMs: 300, outputBytes: 20_000_000 } } });
    const { harness, message, taskId, videoPath, mark } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    const [put] = harness.requests({ service: 'storage', method: 'PUT', since: mark });
    expect(put?.headers['content-length']).toBe('20000000');
    expect(put?.bytes).toBe(20_000_000);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)).toMatchObject({
      contentType: 'video/mp4',
      size: 20_000_000,
      sha256: harness.sandbox.runway.outputSha256(taskId),
    });
    expect(await storedSha256(harness, videoPath)).toBe(harness.sandbox.runway.outputSha256(taskId));
    expectOneCompletedReport(ready);
  });
});

describe('step-upload after the lease was lost', () => {
  it('uploads nothing, reports nothing and marks the job abandoned', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId, videoPath } = ready;
    harness.sandbox.app.adminFail(itemId);
    const mark = harness.mark();

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual(['app POST /worker/heartbeat']);
    expect(harness.sandbox.storage.has('generated-videos', videoPath)).toBe(false);
    const record = await harness.runtime.deps.ledger.read({ itemId, attempt: 1 });
    expect(record.abandoned?.reason).toMatch(/lease lost/);
    expect(record.uploaded).toBeUndefined();
  });
});

describe('step-upload when an earlier delivery stored the video but died before recording it', () => {
  // The PUT landed (storage has videos/<id>.mp4) but the function died before the ledger's
  // `uploaded` fact was written. Upsert is off, so every new upload presign answers 500
  // "Failed to generate upload URL"; on the last delivery the worker reports `failed` for an
  // item whose video is in storage, which the contract forbids (§1.4).
  it('never reports failed for the item, even on the last delivery', async () => {
    const ready = await readyToUpload();
    const { harness, message, videoPath } = ready;
    const output = await fetch(message.output_url ?? '');
    await harness.sandbox.storage.putObject('generated-videos', videoPath, new Uint8Array(await output.arrayBuffer()), 'video/mp4');

    const answer = await harness.deliver(STEP_UPLOAD, message, { retried: 3 });

    expect(harness.appCalls('report').map((request) => request.json)).not.toContainEqual(
      expect.objectContaining({ status: 'failed' }),
    );
    expect(answer.status).not.toBe(489);
    expect(harness.sandbox.app.item(ready.itemId)?.status).not.toBe('failed');
    // The app accepts `completed` once it sees the stored video: the item ends completed.
    expect(harness.appCalls('report').map((request) => request.json)).toEqual([
      expect.objectContaining({ status: 'completed', video_storage_path: videoPath }),
    ]);
    expect(harness.sandbox.app.item(ready.itemId)).toMatchObject({ status: 'completed', video_storage_path: videoPath });
  });
});
