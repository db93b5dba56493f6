import { afterEach, describe, expect, it } from 'vitest';
import { createAppApi, VIDEO_MAY_EXIST, type AppApi } from '../../lib/clients/app-api.js';
import { UpstreamError } from '../../lib/errors.js';
import { closeLoopbacks, dropConnection, inTurn, jsonOf, rejectionOf, reply, serveScript, type Loopback, type Script } from './loopback.js';

const WORKER_KEY = 'wk_test_0123456789';
const TASK = {
  item_id: 'item-1',
  group_id: 'group-1',
  photo_id: 'photo-1',
  prompt: 'The waves roll in slowly',
  leased_until: '2026-11-01T00:10:00.000Z',
  photo_storage_path: 'group-1/photo-1_original.jpg',
  frame_num: 121,
};

afterEach(closeLoopbacks);

async function appAnswering(script: Script): Promise<{ app: AppApi; server: Loopback }> {
  const server = await serveScript(script);
  const app = createAppApi({ baseUrl: `${server.url}/api`, workerApiKey: WORKER_KEY, workerId: 'worker-a', workerType: 'runway', timeoutMs: 5_000 });
  return { app, server };
}

const ok = (data: unknown): Script => reply(200, { success: true, data });
const failure = (status: number, error: string): Script => reply(status, { success: false, error });

async function upstreamErrorOf(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await rejectionOf(promise);
  expect(error).toBeInstanceOf(UpstreamError);
  return error as UpstreamError;
}

describe('leasing a task (next-task)', () => {
  it('posts the worker id, type and lease with the Worker key, and returns the task', async () => {
    const { app, server } = await appAnswering(ok(TASK));

    expect(await app.nextTask(600)).toEqual({ kind: 'task', task: TASK });

    const [request] = server.received;
    expect(request).toMatchObject({ method: 'POST', url: '/api/worker/next-task' });
    expect(request?.headers.authorization).toBe(`Worker ${WORKER_KEY}`);
    expect(jsonOf(request)).toEqual({ worker_id: 'worker-a', worker_type: 'runway', lease_duration_seconds: 600 });
  });

  it.each([
    ['null data', { success: true, data: null }],
    ['no data at all', { success: true }],
  ])('is idle on %s', async (_label, body) => {
    const { app } = await appAnswering(reply(200, body));

    expect(await app.nextTask(600)).toEqual({ kind: 'idle' });
  });

  it('hands back a task without a usable item id as invalid, naming the field', async () => {
    const { app } = await appAnswering(ok({ ...TASK, item_id: '' }));

    const answer = await app.nextTask(600);

    expect(answer).toMatchObject({ kind: 'invalid', itemId: undefined });
    expect(answer.kind === 'invalid' ? answer.problem : '').toMatch(/^item_id: /);
  });

  it('hands back data that is not an object as an invalid task', async () => {
    const { app } = await appAnswering(ok('item-1'));

    const answer = await app.nextTask(600);

    expect(answer).toMatchObject({ kind: 'invalid', itemId: undefined });
    expect(answer.kind === 'invalid' ? answer.problem : '').toMatch(/^task: /);
  });

  it('fails as retryable on a 200 whose envelope says it failed', async () => {
    const { app } = await appAnswering(reply(200, { success: false, error: 'Failed to assign task' }));

    const error = await upstreamErrorOf(app.nextTask(600));

    expect(error).toMatchObject({ message: 'app: next-task answered 200 without a success envelope', status: 200, retryable: true });
  });

  it('fails as retryable on a 200 that is not JSON', async () => {
    const { app } = await appAnswering(reply(200, '<html>maintenance</html>'));

    const error = await upstreamErrorOf(app.nextTask(600));

    expect(error).toMatchObject({ message: 'app: next-task answered 200 without a success envelope', retryable: true });
  });

  it("quotes the app's error on a 500 and never asks again, as a retry could lease a second item", async () => {
    const { app, server } = await appAnswering(failure(500, 'Failed to fetch tasks'));

    const error = await upstreamErrorOf(app.nextTask(600));

    expect(error).toMatchObject({ message: 'app: next-task answered 500 (Failed to fetch tasks)', status: 500, retryable: true });
    expect(server.received).toHaveLength(1);
  });

  it('fails as final on a refused key (401)', async () => {
    const { app } = await appAnswering(failure(401, 'Unauthorized'));

    const error = await upstreamErrorOf(app.nextTask(600));

    expect(error).toMatchObject({ message: 'app: next-task answered 401 (Unauthorized)', status: 401, retryable: false });
  });

  it('does not ask again when the connection drops', async () => {
    const { app, server } = await appAnswering(dropConnection);

    const error = await upstreamErrorOf(app.nextTask(600));

    expect(error).toMatchObject({ service: 'app', retryable: true, code: 'network' });
    expect(server.received).toHaveLength(1);
  });
});

describe('presigning the photo download', () => {
  it('asks for the storage path and returns the signed URL', async () => {
    const { app, server } = await appAnswering(ok({ url: 'https://ref.supabase.co/sign/p.jpg?token=t', expires_in: 3600 }));

    expect(await app.presignDownload('group-1/photo-1_original.jpg')).toEqual({ url: 'https://ref.supabase.co/sign/p.jpg?token=t' });
    expect(jsonOf(server.received[0])).toEqual({ operation: 'download', storage_path: 'group-1/photo-1_original.jpg' });
  });

  it('names a missing photo (the app\'s "Failed to generate download URL") with code not-found', async () => {
    const { app } = await appAnswering(failure(500, 'Failed to generate download URL'));

    const error = await upstreamErrorOf(app.presignDownload('group-1/gone.jpg'));

    expect(error).toMatchObject({ message: 'app: no photo to sign a download URL for', status: 500, code: 'not-found' });
  });

  it('takes any other 500 as an outage: retried, then failed without a code', async () => {
    const { app, server } = await appAnswering(failure(500, 'Internal server error'));

    const error = await upstreamErrorOf(app.presignDownload('group-1/p.jpg'));

    expect(error).toMatchObject({ message: 'app: presign download answered 500 (Internal server error)', retryable: true, code: undefined });
    expect(server.received).toHaveLength(3);
  });

  it('retries after a 502 and returns the URL of the next answer', async () => {
    const { app, server } = await appAnswering(inTurn(reply(502, 'Bad Gateway'), ok({ url: 'https://ref.supabase.co/p.jpg?token=t' })));

    expect(await app.presignDownload('group-1/p.jpg')).toEqual({ url: 'https://ref.supabase.co/p.jpg?token=t' });
    expect(server.received).toHaveLength(2);
  });

  it('fails as retryable when the data holds no URL', async () => {
    const { app } = await appAnswering(ok({ expires_in: 3600 }));

    const error = await upstreamErrorOf(app.presignDownload('group-1/p.jpg'));

    expect(error).toMatchObject({ message: 'app: presign download answered an unexpected shape', status: 200, retryable: true });
  });
});

describe('presigning the video upload', () => {
  it('asks for an mp4 upload for the item and returns the URL and storage path', async () => {
    const { app, server } = await appAnswering(ok({ url: 'https://ref.supabase.co/upload?token=t', storage_path: 'videos/item-1.mp4', expires_in: 3600 }));

    expect(await app.presignUpload('item-1')).toEqual({ url: 'https://ref.supabase.co/upload?token=t', storagePath: 'videos/item-1.mp4' });
    expect(jsonOf(server.received[0])).toEqual({ operation: 'upload', video_item_id: 'item-1', file_extension: 'mp4' });
  });

  it('says the video may already exist when the app answers "Failed to generate upload URL" (upsert is off)', async () => {
    const { app } = await appAnswering(failure(500, 'Failed to generate upload URL'));

    const error = await upstreamErrorOf(app.presignUpload('item-1'));

    expect(error).toMatchObject({ message: 'app: presign upload answered 500 (Failed to generate upload URL)', code: VIDEO_MAY_EXIST, retryable: true });
  });

  it('fails without that code on another 500', async () => {
    const { app } = await appAnswering(failure(500, 'Internal server error'));

    const error = await upstreamErrorOf(app.presignUpload('item-1'));

    expect(error).toMatchObject({ message: 'app: presign upload answered 500 (Internal server error)', code: undefined });
  });

  it('fails as retryable when the data holds no storage path', async () => {
    const { app } = await appAnswering(ok({ url: 'https://ref.supabase.co/upload?token=t' }));

    const error = await upstreamErrorOf(app.presignUpload('item-1'));

    expect(error).toMatchObject({ message: 'app: presign upload answered an unexpected shape', retryable: true });
  });
});

describe('extending the lease (heartbeat)', () => {
  it('sends the item, worker and extension, and returns the new lease end', async () => {
    const { app, server } = await appAnswering(ok({ leased_until: '2026-11-01T00:20:00.000Z' }));

    expect(await app.heartbeat('item-1', 600)).toEqual({ kind: 'extended', leasedUntil: '2026-11-01T00:20:00.000Z' });
    expect(jsonOf(server.received[0])).toEqual({ item_id: 'item-1', worker_id: 'worker-a', extend_seconds: 600 });
  });

  it('reports the lease as lost on a 404', async () => {
    const { app } = await appAnswering(failure(404, 'Failed to extend lease. Task may not exist or be assigned to another worker.'));

    expect(await app.heartbeat('item-1', 600)).toEqual({ kind: 'lost' });
  });

  it('retries when the connection drops, and returns the next answer', async () => {
    const { app, server } = await appAnswering(inTurn(dropConnection, ok({ leased_until: '2026-11-01T00:20:00.000Z' })));

    expect(await app.heartbeat('item-1', 600)).toMatchObject({ kind: 'extended' });
    expect(server.received).toHaveLength(2);
  });

  it('fails as retryable when the answer holds no lease end', async () => {
    const { app } = await appAnswering(ok({ leased: true }));

    const error = await upstreamErrorOf(app.heartbeat('item-1', 600));

    expect(error).toMatchObject({ message: 'app: heartbeat answered an unexpected shape', retryable: true });
  });
});

describe('reporting the outcome', () => {
  const COMPLETED = { item_id: 'item-1', status: 'completed', video_storage_path: 'videos/item-1.mp4', veo_operation_id: 'task-1' } as const;

  it('sends the report with the worker id and takes a success envelope as reported', async () => {
    const { app, server } = await appAnswering(ok({ message: 'Task completed', item_id: 'item-1' }));

    expect(await app.report(COMPLETED)).toEqual({ kind: 'reported' });
    expect(jsonOf(server.received[0])).toEqual({ ...COMPLETED, worker_id: 'worker-a' });
  });

  it.each([
    [403, 'Worker ID mismatch'],
    [404, 'Task not found'],
  ])('takes a %i (%s) as a lost lease', async (status, error) => {
    const { app } = await appAnswering(failure(status, error));

    expect(await app.report(COMPLETED)).toEqual({ kind: 'lost', status });
  });

  it('says the video is missing when the app cannot sign it ("Failed to generate video URL")', async () => {
    const { app } = await appAnswering(failure(500, 'Failed to generate video URL'));

    expect(await app.report(COMPLETED)).toEqual({ kind: 'video-missing' });
  });

  it('fails on another 500 and sends the report only once (it is not idempotent)', async () => {
    const { app, server } = await appAnswering(failure(500, 'Internal server error'));

    const error = await upstreamErrorOf(app.report(COMPLETED));

    expect(error).toMatchObject({ message: 'app: report answered 500 (Internal server error)', status: 500, retryable: true });
    expect(server.received).toHaveLength(1);
  });

  it('fails when a 200 comes without a success envelope', async () => {
    const { app } = await appAnswering(reply(200, { success: false }));

    const error = await upstreamErrorOf(app.report(COMPLETED));

    expect(error).toMatchObject({ message: 'app: report answered 200 without a success envelope' });
  });
});

describe('checking the worker key (preflight)', () => {
  it('sends an empty heartbeat and takes a 400 as the key accepted', async () => {
    const { app, server } = await appAnswering(failure(400, 'item_id is required'));

    expect(await app.checkKey()).toEqual({ ok: true, detail: 'key accepted' });
    expect(server.received[0]?.url).toBe('/api/worker/heartbeat');
    expect(jsonOf(server.received[0])).toEqual({});
  });

  it('takes a 401 as the key rejected', async () => {
    const { app } = await appAnswering(failure(401, 'Unauthorized'));

    expect(await app.checkKey()).toEqual({ ok: false, detail: 'key rejected (401)', status: 401 });
  });

  it('names any other answer', async () => {
    const { app } = await appAnswering(reply(200, { success: true, data: { leased_until: 'x' } }));

    expect(await app.checkKey()).toEqual({ ok: false, detail: 'unexpected answer 200', status: 200 });
  });
});
