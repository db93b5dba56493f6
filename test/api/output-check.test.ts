import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { CDN_ERROR_PAGE } from '../../sandbox/runway-output.js';
import type { UploadMessage } from '../../lib/steps/messages.js';
import { describeRequest, readyToUpload } from '../support/flow.js';
import { closeHarnesses, WORKER_ID } from '../support/harness.js';
import { SCRIPTED_FAULT_RATE, scriptedRng } from '../support/scripted-rng.js';
import { storedVideoOf } from '../../lib/ledger/ledger.js';

/**
 * Only a video is stored as the video: a CDN can answer Runway's output URL with 200 and an
 * HTML page. step-upload checks the output's Content-Type and first bytes before the upload
 * starts, gets the task again once for a fresh URL, and otherwise reports the item failed.
 */

afterEach(closeHarnesses);

const STEP_UPLOAD = '/api/step-upload';

describe('step-upload when every output URL of the task serves an HTML page', () => {
  it('gets the task once more, then reports failed naming the content type and size, and never PUTs anything', async () => {
    const ready = await readyToUpload({ sandbox: { faults: { runway: { htmlOutputRate: 1 } } } });
    const { harness, message, itemId, taskId, mark } = ready;
    expect(CDN_ERROR_PAGE.length).toBeGreaterThan(1150);
    expect(CDN_ERROR_PAGE.length).toBeLessThan(1250);

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(489);
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([
      'app POST /worker/heartbeat',
      'app POST /worker/presign',
      `runway GET /outputs/${taskId}.mp4`,
      `runway GET /v1/tasks/${taskId}`,
      `runway GET /outputs/${taskId}.mp4`,
      'app POST /worker/report',
    ]);
    const outputs = harness.requests({ service: 'runway', path: /^\/outputs\//, since: mark });
    expect(outputs[0]?.path).not.toBe(outputs[1]?.path);
    expect(harness.sandbox.runway.task(taskId)?.htmlOutputsServed).toBe(2);
    expect(harness.requests({ service: 'storage', since: mark })).toEqual([]);
    expect(harness.sandbox.storage.objects().filter((object) => object.bucket === 'generated-videos')).toEqual([]);
    expect(harness.appCalls('report').map((request) => request.json)).toEqual([
      {
        item_id: itemId,
        worker_id: WORKER_ID,
        status: 'failed',
        error_message: "output: Runway's output is not a video (text/html, 1.2 KB)",
        veo_operation_id: taskId,
      },
    ]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'failed', retry_count: 1 });
    const record = await harness.runtime.deps.ledger.read({ itemId, attempt: 1 });
    expect(record.uploaded).toBeUndefined();
  });

  it('does the same when the upload message carried no output URL', async () => {
    const ready = await readyToUpload({ sandbox: { faults: { runway: { htmlOutputRate: 1 } } } });
    const { harness, message, taskId, mark } = ready;
    const withoutUrl: UploadMessage = { job: message.job };

    const answer = await harness.deliver(STEP_UPLOAD, withoutUrl);

    expect(answer.status).toBe(489);
    expect(harness.requests({ service: 'runway', since: mark }).map(describeRequest)).toEqual([
      `runway GET /v1/tasks/${taskId}`,
      `runway GET /outputs/${taskId}.mp4`,
      `runway GET /v1/tasks/${taskId}`,
      `runway GET /outputs/${taskId}.mp4`,
    ]);
    expect(harness.requests({ service: 'storage', since: mark })).toEqual([]);
    expect(harness.appCalls('report').map((request) => request.json)).toEqual([
      expect.objectContaining({ status: 'failed', error_message: "output: Runway's output is not a video (text/html, 1.2 KB)" }),
    ]);
  });
});

describe('step-upload when only the first fetch of an output URL serves an HTML page', () => {
  it('stores the real video from a fresh URL after exactly one extra task GET, and reports completed', async () => {
    // The fault is drawn per URL: fired for the URL in the message, not for the fresh one.
    const faults = scriptedRng();
    const ready = await readyToUpload({ sandbox: { rng: faults.rng, faults: { runway: { htmlOutputFirstFetchRate: SCRIPTED_FAULT_RATE } } } });
    const { harness, message, itemId, taskId, videoPath, mark } = ready;
    faults.fireNext();
    const tasksBefore = harness.requests({ service: 'runway', path: new RegExp(`^/v1/tasks/${taskId}`) }).length;

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([
      'app POST /worker/heartbeat',
      'app POST /worker/presign',
      `runway GET /outputs/${taskId}.mp4`,
      `runway GET /v1/tasks/${taskId}`,
      `runway GET /outputs/${taskId}.mp4`,
      `storage PUT /object/upload/sign/generated-videos/${videoPath}`,
      'app POST /worker/report',
    ]);
    expect(harness.requests({ service: 'runway', path: new RegExp(`^/v1/tasks/${taskId}`) })).toHaveLength(tasksBefore + 1);
    expect(harness.sandbox.runway.task(taskId)?.htmlOutputsServed).toBe(1);
    const stored = harness.sandbox.storage.object('generated-videos', videoPath);
    expect(stored).toMatchObject({ contentType: 'video/mp4', sha256: harness.sandbox.runway.outputSha256(taskId), uploads: 1 });
    const file = harness.sandbox.storage.filePath('generated-videos', videoPath) ?? '';
    const bytes = await readFile(file);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(harness.sandbox.runway.outputSha256(taskId));
    expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
    expect(harness.appCalls('report').map((request) => request.json)).toEqual([
      { item_id: itemId, worker_id: WORKER_ID, status: 'completed', video_storage_path: videoPath, veo_operation_id: taskId },
    ]);
  });
});

describe('step-upload with a real video output', () => {
  it('sends every byte of the output, the sniffed first ones included, and exactly its Content-Length', async () => {
    const ready = await readyToUpload({ sandbox: { runway: { generationMs: 300, outputBytes: 3 * 1024 * 1024 + 5 } } });
    const { harness, message, taskId, videoPath, mark } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    const [put] = harness.requests({ service: 'storage', method: 'PUT', since: mark });
    expect(put?.headers['content-length']).toBe(String(3 * 1024 * 1024 + 5));
    expect(put?.bytes).toBe(3 * 1024 * 1024 + 5);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)).toMatchObject({
      size: 3 * 1024 * 1024 + 5,
      sha256: harness.sandbox.runway.outputSha256(taskId),
    });
    const record = await harness.runtime.deps.ledger.read({ itemId: ready.itemId, attempt: 1 });
    expect(storedVideoOf(record)?.bytes).toBe(3 * 1024 * 1024 + 5);
  });
});
