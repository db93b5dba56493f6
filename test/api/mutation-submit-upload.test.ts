import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { sampleVideo } from '../../sandbox/runway-output.js';
import { readFixture } from '../../sandbox/seed.js';
import { pollMessageSchema, type Job } from '../../lib/steps/messages.js';
import { closeExtraWorkers, startExtraWorker } from '../support/extra-worker.js';
import { closeStandIns, startStandIn, type StandIn } from '../support/extra-stand-in.js';
import { describeRequest, readyToUpload, submit, waitForTaskStatus } from '../support/flow.js';
import { closeHarnesses, seedItem, startHarness, type Harness } from '../support/harness.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * Edges of submit-task, regenerate and step-upload that only show in what the worker answers or
 * publishes: the wait it asks QStash for while another delivery starts a generation, the
 * model a resumed task is polled as, a failed task with nothing to start again from, and
 * why cron-poll gave an item back, and a storage refusal another try may fix.
 */

const CALLBACK = '/api/runway-callback';
const INTERNAL_FAILURE = 'runway: INTERNAL — a temporary internal failure at Runway';

const creates = (harness: Harness) => harness.requests({ service: 'runway', method: 'POST', path: '/v1/image_to_video' });

/** One item whose first Runway task has FAILED with `INTERNAL`, its poll job in hand. */
async function firstGenerationFails(): Promise<{ harness: Harness; itemId: string; job: Job }> {
  const item = seedItem('landscape.jpg');
  const harness = await startHarness({ items: [item] });
  harness.sandbox.runway.failNextTasks({ code: 'INTERNAL' });
  const job = await submit(harness, item.item_id);
  await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');
  return { harness, itemId: item.item_id, job };
}


/**
 * A storage that answers every request 503 SlowDown, and an app in front of the sandbox's
 * whose presigned URLs of one kind point at it.
 */
async function storageAnswering503(harness: Harness, kind: 'upload' | 'download'): Promise<{ storage: StandIn; app: StandIn }> {
  const storage = await startStandIn({
    target: harness.sandbox.nextApiUrl,
    answer: () => ({ status: 503, json: { statusCode: '503', error: 'SlowDown', message: 'Please reduce your request rate' } }),
  });
  const app = await startStandIn({
    target: harness.sandbox.nextApiUrl,
    rewrite: (request, reply) => {
      if (request.path !== '/worker/presign' || !JSON.stringify(request.json).includes(`"${kind}"`)) return reply;
      const data = (reply.json as { data: { url: string } }).data;
      const url = new URL(data.url);
      url.host = new URL(storage.url).host;
      return { status: reply.status, json: { success: true, data: { ...data, url: url.href } } };
    },
  });
  return { storage, app };
}

describe('runway-callback when generation 2 was claimed 100 s ago by a delivery still creating it', () => {
  it('asks QStash to come back when the claim turns stale (about 20 s), touching neither the app nor Runway\'s create', async () => {
    const { harness, itemId, job } = await firstGenerationFails();
    await harness.runtime.deps.ledger.claim(
      { itemId, attempt: 1, generation: 2 },
      'submitting',
      { at: new Date(Date.now() - 100_000).toISOString() },
    );
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: 'a new generation is being started' });
    // 120 s stale limit − 100 s age, rounded up; the default heartbeat interval does not cut it.
    const retryAfterSeconds = Number(answer.headers.get('retry-after'));
    expect(retryAfterSeconds).toBeGreaterThanOrEqual(18);
    expect(retryAfterSeconds).toBeLessThanOrEqual(20);
    // No heartbeat, no photo presign: the claim is found before anything else is done.
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([`runway GET /v1/tasks/${job.runway_task_id}`]);
    expect(creates(harness)).toHaveLength(1);
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
  });
});

describe('runway-callback for a transiently failed task whose job carries no source to start again from', () => {
  it('reports the Runway failure at once and creates no new generation', async () => {
    const { harness, itemId, job } = await firstGenerationFails();
    const { source: _source, ...withoutSource } = job;

    const answer = await harness.deliver(CALLBACK, { job: withoutSource });

    expect(answer.status).toBe(489);
    expect(creates(harness)).toHaveLength(1);
    expect(harness.appCalls('presign').filter((request) => JSON.stringify(request.json).includes('"download"'))).toHaveLength(1);
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([
      { status: 'failed', error_message: INTERNAL_FAILURE, veo_operation_id: job.runway_task_id },
    ]);
  });
});

describe('cron-poll resuming a task the ledger records under a model other than the configured one', () => {
  it('publishes the poll with the task\'s own model (gen4.5), not the default gen4_turbo', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const key = { itemId: item.item_id, attempt: 1 };
    const submittedAt = new Date(Date.now() - 30_000).toISOString();
    const { ledger } = harness.runtime.deps;
    expect(await ledger.claim(key, 'submitting', { at: submittedAt })).toBe(true);
    expect(
      await ledger.claim(key, 'task', { runway_task_id: 'task-on-gen45', model: 'gen4.5', submitted_at: submittedAt, duration: 5, ratio: '1280:720' }),
    ).toBe(true);

    const answer = await harness.cron();

    expect(answer.json).toMatchObject({ items: [{ item_id: item.item_id, outcome: 'resumed' }] });
    const polls = harness.messages(CALLBACK).map((message) => pollMessageSchema.parse(JSON.parse(message.body)).job);
    expect(polls).toMatchObject([{ item_id: item.item_id, runway_task_id: 'task-on-gen45', model: 'gen4.5', duration: 5, ratio: '1280:720' }]);
    expect(creates(harness)).toEqual([]);
  });
});

describe('cron-poll leasing a task for another worker (inference_provider wan_local)', () => {
  it('says in the run summary which provider it gave back', async () => {
    const harness = await startHarness({ items: [] });
    await harness.sandbox.storage.putObject('group-photos', 'gpu-group/gpu-photo_original.jpg', await readFixture('landscape.jpg'));
    const gpu = harness.sandbox.app.addItem({
      group_id: 'gpu-group',
      photo_id: 'gpu-photo',
      prompt: 'A slow pan across a quiet lake.',
      photo_storage_path: 'gpu-group/gpu-photo_original.jpg',
      frame_num: 121,
      inference_provider: 'wan_local',
    });

    const answer = await harness.cron();

    expect(answer.json).toMatchObject({
      stopped: 'not-ours',
      items: [{ item_id: gpu.item_id, outcome: 'released', detail: 'provider wan_local is not a Runway task' }],
    });
  });
});

describe('step-upload whose PUT storage answers 503 SlowDown, a refusal another try may fix', () => {
  it('answers retry naming the storage answer, and neither reports nor records anything', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId } = ready;
    const { storage, app } = await storageAnswering503(harness, 'upload');
    const worker = await startExtraWorker(harness, { env: { NEXT_API_URL: app.url } });

    const answer = await worker.deliver('/api/step-upload', message);

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: 'storage: upload refused (statusCode 503 SlowDown)' });
    expect(storage.requests().map((request) => request.method)).toEqual(['PUT']);
    expect(harness.appCalls('report', ready.mark)).toEqual([]);
    expect(await harness.runtime.deps.ledger.read({ itemId, attempt: 1 })).not.toHaveProperty('uploaded');
    expect(harness.sandbox.app.item(itemId)?.status).toBe('processing');
  });
});

describe('step-upload whose presign is refused because an earlier delivery stored the video unrecorded', () => {
  it('answers done saying the video was stored by an earlier delivery, with no PUT', async () => {
    const ready = await readyToUpload();
    const { harness, message, videoPath } = ready;
    await harness.sandbox.storage.putObject('generated-videos', videoPath, Buffer.from('\0\0\0\x18ftypmp42 stored earlier'), 'video/mp4');

    const answer = await harness.deliver('/api/step-upload', message);

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: `completed: ${videoPath} (stored by an earlier delivery)` });
    expect(harness.requests({ service: 'storage', method: 'PUT', since: ready.mark })).toEqual([]);
    expect(harness.sandbox.app.reports(ready.itemId)).toMatchObject([{ status: 'completed', video_storage_path: videoPath }]);
  });
});

describe('cron-poll whose photo download answers 503 on three runs in a row', () => {
  it('gives the item back twice, then reports the download failure itself, not a missing photo', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const { storage, app } = await storageAnswering503(harness, 'download');
    const worker = await startExtraWorker(harness, { env: { NEXT_API_URL: app.url } });

    const outcomes: unknown[] = [];
    for (let run = 0; run < 3; run += 1) {
      const answer = await worker.cron();
      outcomes.push((answer.json as { items: { outcome: string }[] }).items.map((entry) => entry.outcome));
    }

    expect(outcomes).toEqual([['released'], ['released'], ['failed']]);
    expect(storage.requests().length).toBeGreaterThanOrEqual(3);
    expect(creates(harness)).toEqual([]);
    const reports = harness.sandbox.app.reports(item.item_id);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ status: 'failed', error_message: expect.stringMatching(/^photo: download answered 503/) as unknown });
    expect(reports[0]?.error_message).not.toBe('photo: not found (the app could not sign a download URL)');
  });
});

describe('cron-poll whose app refuses the photo\'s download presign with 422, a refusal no retry fixes', () => {
  it('reports the app\'s refusal at once rather than giving the item back as an unsigned photo', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const app = await startStandIn({
      target: harness.sandbox.nextApiUrl,
      answer: (request) =>
        request.path === '/worker/presign' && JSON.stringify(request.json).includes('"download"')
          ? { status: 422, json: { success: false, error: 'storage_path is not a photo of this group' } }
          : undefined,
    });
    const worker = await startExtraWorker(harness, { env: { NEXT_API_URL: app.url } });

    const answer = await worker.cron();

    expect(answer.json).toMatchObject({ items: [{ item_id: item.item_id, outcome: 'failed' }] });
    expect(creates(harness)).toEqual([]);
    const reports = harness.sandbox.app.reports(item.item_id);
    expect(reports).toMatchObject([{ status: 'failed', error_message: expect.stringMatching(/^app: /) as unknown }]);
  });
});

/** A second worker whose Runway task reads come back changed by `edit`. */
async function workerSeeingTasksAs(harness: Harness, edit: (task: Record<string, unknown>) => void) {
  const runway = await startStandIn({
    target: harness.sandbox.runwayApiUrl,
    rewrite: (request, reply) => {
      if (request.method !== 'GET' || !request.path.startsWith('/v1/tasks/')) return reply;
      const task = { ...(reply.json as Record<string, unknown>) };
      edit(task);
      return { status: reply.status, json: task };
    },
  });
  return startExtraWorker(harness, { env: { RUNWAY_API_URL: runway.url } });
}

/** A second worker whose Runway task reads come back without the fields `strip` names. */
function workerSeeingTasksWithout(harness: Harness, strip: readonly string[]) {
  return workerSeeingTasksAs(harness, (task) => {
    for (const field of strip) delete task[field];
  });
}

describe('runway-callback for a transiently failed task Runway gives no cost figure for', () => {
  it('still starts generation 2, recording the failed task without credits', async () => {
    const { harness, itemId, job } = await firstGenerationFails();
    const worker = await workerSeeingTasksWithout(harness, ['cost', 'estimatedCost']);

    const answer = await worker.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: expect.stringMatching(/^generation 2 started: task /) as unknown });
    expect(creates(harness)).toHaveLength(2);
    const claim = (await harness.runtime.deps.ledger.read({ itemId, attempt: 1, generation: 2 })).submitting;
    expect(claim?.replaces).toEqual({ runway_task_id: job.runway_task_id, failure_code: 'INTERNAL' });
  });
});

describe('step-upload with no output URL in its message, for a finished task Runway lists no output for', () => {
  it('reports failed saying the finished task has no output video, with no PUT', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId } = ready;
    const worker = await workerSeeingTasksWithout(harness, ['output']);
    const { output_url: _outputUrl, ...withoutUrl } = message;

    const answer = await worker.deliver('/api/step-upload', withoutUrl);

    expect(answer.status).toBe(489);
    expect(harness.requests({ service: 'storage', method: 'PUT', since: ready.mark })).toEqual([]);
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([
      { status: 'failed', error_message: 'runway: the finished task has no output video', veo_operation_id: ready.taskId },
    ]);
  });
});

describe('step-upload whose output is served chunked, with no content-length', () => {
  it('stores the whole video and reports completed on the first delivery', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId, videoPath } = ready;
    const video = sampleVideo();
    const cdn = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4' });
      res.write(video.subarray(0, 1024));
      res.end(video.subarray(1024));
    });
    await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = cdn.address() as AddressInfo;

      const answer = await harness.deliver('/api/step-upload', { ...message, output_url: `http://127.0.0.1:${port}/outputs/chunked.mp4` });

      expect(answer.status).toBe(200);
      expect(answer.json).toMatchObject({ outcome: 'done', detail: `completed: ${videoPath}` });
      expect(harness.sandbox.storage.object('generated-videos', videoPath)?.size).toBe(video.length);
      expect(harness.sandbox.app.reports(itemId)).toMatchObject([{ status: 'completed', video_storage_path: videoPath }]);
    } finally {
      await new Promise<void>((resolve) => cdn.close(() => resolve()));
    }
  });
});

describe('runway-callback for a task Runway lists as CANCELLED while still naming a transient failure code', () => {
  it('reports it failed and starts no new generation: only a FAILED task earns one', async () => {
    const { harness, itemId, job } = await firstGenerationFails();
    const worker = await workerSeeingTasksAs(harness, (task) => {
      task['status'] = 'CANCELLED';
    });

    const answer = await worker.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(creates(harness)).toHaveLength(1);
    const reports = harness.sandbox.app.reports(itemId);
    expect(reports).toMatchObject([{ status: 'failed', veo_operation_id: job.runway_task_id }]);
    expect(reports[0]?.error_message).not.toBe(INTERNAL_FAILURE);
  });
});
