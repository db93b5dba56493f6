import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startSandbox } from '../../sandbox/index.js';
import type { Sandbox, SandboxOptions } from '../../sandbox/index.js';
import { demoItems, readFixture, seedSandbox } from '../../sandbox/seed.js';
import { APP_500_ERRORS, type AppFaultRoute, type NewItem } from '../../sandbox/app-api.js';
import { SCRIPTED_FAULT_RATE, scriptedRng } from '../support/scripted-rng.js';
import { until } from '../support/wait.js';

const WORKER_KEY = 'test-worker-key';
const AUTH = `Worker ${WORKER_KEY}`;

const opened: { sandbox: Sandbox; dataDir: string }[] = [];

async function start(overrides: Partial<SandboxOptions> = {}): Promise<Sandbox> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sandbox-app-'));
  const sandbox = await startSandbox({ workerApiKey: WORKER_KEY, runwayApiKey: 'test-runway-key', dataDir, ...overrides });
  opened.push({ sandbox, dataDir });
  return sandbox;
}

afterEach(async () => {
  for (const { sandbox, dataDir } of opened.splice(0)) {
    await sandbox.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});

interface Answer {
  readonly status: number;
  readonly json: unknown;
}

async function call(
  sandbox: Sandbox,
  route: string,
  body: unknown,
  init: { readonly auth?: string | null; readonly method?: string; readonly raw?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const auth = init.auth === undefined ? AUTH : init.auth;
  if (auth !== null) headers['authorization'] = auth;
  const method = init.method ?? 'POST';
  const response = await fetch(`${sandbox.nextApiUrl}/worker/${route}`, {
    method,
    headers,
    ...(method === 'GET' || method === 'HEAD' ? {} : { body: init.raw ?? JSON.stringify(body) }),
    signal: AbortSignal.timeout(5000),
  });
  const text = await response.text();
  return { status: response.status, json: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

const taskSchema = z.object({
  item_id: z.string(),
  group_id: z.string(),
  photo_id: z.string(),
  prompt: z.string(),
  leased_until: z.string(),
  photo_storage_path: z.string(),
  frame_num: z.number().nullable(),
  inference_provider: z.string().optional(),
});
const leaseAnswer = z.object({ success: z.literal(true), data: taskSchema });
const urlAnswer = z.object({ success: z.literal(true), data: z.object({ url: z.string(), expires_in: z.number() }) });
const uploadAnswer = z.object({
  success: z.literal(true),
  data: z.object({ url: z.string(), storage_path: z.string(), expires_in: z.number() }),
});
const heartbeatAnswer = z.object({ success: z.literal(true), data: z.object({ leased_until: z.string() }) });

async function lease(sandbox: Sandbox, workerId: string, extra: Record<string, unknown> = {}): Promise<z.infer<typeof taskSchema>> {
  const answer = await call(sandbox, 'next-task', { worker_id: workerId, worker_type: 'runway', ...extra });
  expect(answer.status).toBe(200);
  return leaseAnswer.parse(answer.json).data;
}

let itemCounter = 0;
function newItem(overrides: Partial<NewItem> = {}): NewItem {
  itemCounter += 1;
  const group = `group-${itemCounter}`;
  const photo = `photo-${itemCounter}`;
  return {
    item_id: `item-${itemCounter}`,
    group_id: group,
    photo_id: photo,
    prompt: 'A gentle breeze moves through the trees as the camera slowly pans across the sunlit meadow toward the river.',
    photo_storage_path: `${group}/${photo}_original.jpg`,
    frame_num: 121,
    ...overrides,
  };
}

function secondsFromNow(iso: string): number {
  return (Date.parse(iso) - Date.now()) / 1000;
}

async function uploadVideo(sandbox: Sandbox, itemId: string): Promise<string> {
  const presigned = uploadAnswer.parse(
    (await call(sandbox, 'presign', { operation: 'upload', video_item_id: itemId, file_extension: 'mp4' })).json,
  ).data;
  const put = await fetch(presigned.url, { method: 'PUT', headers: { 'content-type': 'video/mp4' }, body: Buffer.from('fake mp4 bytes') });
  expect(put.status).toBe(200);
  return presigned.storage_path;
}

describe('any worker route', () => {
  it('answers 401 Unauthorized in the envelope to a missing, Bearer or wrong key', async () => {
    const sandbox = await start();
    for (const auth of [null, `Bearer ${WORKER_KEY}`, 'Worker wrong-key', `worker ${WORKER_KEY}`]) {
      const answer = await call(sandbox, 'next-task', { worker_id: 'w1' }, { auth });
      expect(answer).toEqual({ status: 401, json: { success: false, error: 'Unauthorized' } });
    }
  });

  it('answers 405 to every method other than POST, before checking the key', async () => {
    const sandbox = await start();
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
      const answer = await call(sandbox, 'heartbeat', {}, { method, auth: null });
      expect(answer.status).toBe(405);
      expect(answer.json).toMatchObject({ success: false });
    }
  });

  it('answers 404 in the envelope for a route the app does not have', async () => {
    const sandbox = await start();
    const answer = await call(sandbox, 'lease', { worker_id: 'w1' });
    expect(answer).toEqual({ status: 404, json: { success: false, error: 'Not found' } });
  });

  it('answers 500 Internal server error to a body that is not JSON', async () => {
    const sandbox = await start();
    for (const route of ['next-task', 'presign', 'heartbeat', 'report']) {
      const answer = await call(sandbox, route, undefined, { raw: '{"worker_id": ' });
      expect(answer).toEqual({ status: 500, json: { success: false, error: 'Internal server error' } });
    }
  });

  it('ignores unknown fields', async () => {
    const sandbox = await start();
    sandbox.app.addItem(newItem());
    const task = await lease(sandbox, 'w1', { surprise: true, runway_task_id: 'x' });
    expect(task.item_id).toBe(`item-${itemCounter}`);
  });

  it('records every request with its path, headers and parsed JSON body', async () => {
    const sandbox = await start();
    await call(sandbox, 'next-task', { worker_id: 'w1', worker_type: 'runway' });
    const [recorded] = sandbox.requests();
    expect(recorded).toMatchObject({
      service: 'app',
      method: 'POST',
      path: '/worker/next-task',
      json: { worker_id: 'w1', worker_type: 'runway' },
    });
    expect(recorded?.headers['authorization']).toBe(AUTH);
  });
});

describe('next-task', () => {
  it('answers 400 worker_id is required without a worker_id', async () => {
    const sandbox = await start();
    sandbox.app.addItem(newItem());
    expect(await call(sandbox, 'next-task', {})).toEqual({ status: 400, json: { success: false, error: 'worker_id is required' } });
    expect(sandbox.app.items()[0]?.status).toBe('pending');
  });

  it('answers success with null data when nothing is leasable', async () => {
    const sandbox = await start();
    expect(await call(sandbox, 'next-task', { worker_id: 'w1' })).toEqual({ status: 200, json: { success: true, data: null } });
  });

  it('leases the oldest pending item with exactly the contract fields and a 600 s default lease', async () => {
    const sandbox = await start();
    const newer = sandbox.app.addItem(newItem({ created_at: '2026-11-02T10:00:00.000Z' }));
    const older = sandbox.app.addItem(newItem({ created_at: '2026-11-01T10:00:00.000Z', frame_num: null }));

    const answer = await call(sandbox, 'next-task', { worker_id: 'w1' });
    const task = leaseAnswer.parse(answer.json).data;
    expect(Object.keys(task).sort()).toEqual(
      ['item_id', 'group_id', 'photo_id', 'prompt', 'leased_until', 'photo_storage_path', 'frame_num'].sort(),
    );
    expect(task).toMatchObject({ item_id: older.item_id, frame_num: null, photo_storage_path: older.photo_storage_path });
    expect(secondsFromNow(task.leased_until)).toBeGreaterThan(595);
    expect(secondsFromNow(task.leased_until)).toBeLessThanOrEqual(600);
    expect(sandbox.app.item(older.item_id)).toMatchObject({ status: 'processing', worker_id: 'w1' });

    expect((await lease(sandbox, 'w2')).item_id).toBe(newer.item_id);
  });

  it('includes inference_provider only when the item has one', async () => {
    const sandbox = await start();
    sandbox.app.addItem(newItem({ inference_provider: 'runway_veo3.1' }));
    expect((await lease(sandbox, 'w1')).inference_provider).toBe('runway_veo3.1');
  });

  it('honours lease_duration_seconds', async () => {
    const sandbox = await start();
    sandbox.app.addItem(newItem());
    const task = await lease(sandbox, 'w1', { lease_duration_seconds: 60 });
    expect(secondsFromNow(task.leased_until)).toBeGreaterThan(55);
    expect(secondsFromNow(task.leased_until)).toBeLessThanOrEqual(60);
  });

  it('does not hand out an item whose lease is running, and re-leases it to anyone once the lease expired', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    expect((await call(sandbox, 'next-task', { worker_id: 'w2' })).json).toEqual({ success: true, data: null });

    sandbox.app.expireLease(item.item_id);
    expect((await lease(sandbox, 'w2')).item_id).toBe(item.item_id);
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'processing', worker_id: 'w2', retry_count: 0 });
  });

  it('skips items whose retry_count reached 3', async () => {
    const sandbox = await start();
    sandbox.app.addItem(newItem({ retry_count: 3 }));
    const two = sandbox.app.addItem(newItem({ retry_count: 2 }));
    expect((await lease(sandbox, 'w1')).item_id).toBe(two.item_id);
    expect((await call(sandbox, 'next-task', { worker_id: 'w1' })).json).toEqual({ success: true, data: null });
  });

  it('never hands out failed or completed items until an admin retry puts a failed one back to pending', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    await call(sandbox, 'report', { item_id: item.item_id, worker_id: 'w1', status: 'failed', error_message: 'runway: boom' });
    expect((await call(sandbox, 'next-task', { worker_id: 'w1' })).json).toEqual({ success: true, data: null });

    sandbox.app.adminRetry(item.item_id);
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'pending', retry_count: 1, worker_id: null });
    expect((await lease(sandbox, 'w1')).item_id).toBe(item.item_id);
  });
});

describe('heartbeat', () => {
  it('answers 400 to an empty body when the key is right, and 401 when it is wrong', async () => {
    const sandbox = await start();
    const bare = async (auth: string): Promise<number> => {
      const response = await fetch(`${sandbox.nextApiUrl}/worker/heartbeat`, { method: 'POST', headers: { authorization: auth } });
      return response.status;
    };
    expect(await bare(AUTH)).toBe(400);
    expect(await bare('Worker nope')).toBe(401);
    expect(await call(sandbox, 'heartbeat', {})).toEqual({
      status: 400,
      json: { success: false, error: 'item_id and worker_id are required' },
    });
  });

  it('sets leased_until from now, so a short extension shortens the lease', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    const answer = await call(sandbox, 'heartbeat', { item_id: item.item_id, worker_id: 'w1', extend_seconds: 30 });
    const { leased_until } = heartbeatAnswer.parse(answer.json).data;
    expect(secondsFromNow(leased_until)).toBeGreaterThan(25);
    expect(secondsFromNow(leased_until)).toBeLessThanOrEqual(30);
    expect(sandbox.app.item(item.item_id)?.leased_until).toBe(leased_until);
  });

  it('extends by 300 s when extend_seconds is absent', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    const answer = await call(sandbox, 'heartbeat', { item_id: item.item_id, worker_id: 'w1' });
    expect(secondsFromNow(heartbeatAnswer.parse(answer.json).data.leased_until)).toBeGreaterThan(295);
  });

  it('releases the lease at once with extend_seconds 0', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    await call(sandbox, 'heartbeat', { item_id: item.item_id, worker_id: 'w1', extend_seconds: 0 });
    expect((await lease(sandbox, 'w2')).item_id).toBe(item.item_id);
  });

  it('answers 404 once the lease is lost: another worker took the item, an admin failed it, or it is unknown', async () => {
    const sandbox = await start();
    const taken = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    sandbox.app.expireLease(taken.item_id);
    await lease(sandbox, 'w2');
    const lost = await call(sandbox, 'heartbeat', { item_id: taken.item_id, worker_id: 'w1', extend_seconds: 600 });
    expect(lost).toEqual({ status: 404, json: { success: false, error: `Failed to extend lease for item ${taken.item_id}` } });

    const failed = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    sandbox.app.adminFail(failed.item_id);
    expect((await call(sandbox, 'heartbeat', { item_id: failed.item_id, worker_id: 'w1' })).status).toBe(404);
    expect((await call(sandbox, 'heartbeat', { item_id: 'no-such-item', worker_id: 'w1' })).status).toBe(404);
  });

  it('answers 404 after the item was reported, which tells a worker its lost report took effect', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    await call(sandbox, 'report', { item_id: item.item_id, worker_id: 'w1', status: 'failed', error_message: 'x' });
    expect((await call(sandbox, 'heartbeat', { item_id: item.item_id, worker_id: 'w1' })).status).toBe(404);
  });
});

describe('report', () => {
  it('answers 404 for an unknown item and 403 Worker ID mismatch for another worker', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    expect((await call(sandbox, 'report', { item_id: 'nope', worker_id: 'w1', status: 'failed' })).status).toBe(404);
    expect(await call(sandbox, 'report', { item_id: item.item_id, worker_id: 'w2', status: 'failed' })).toEqual({
      status: 403,
      json: { success: false, error: 'Worker ID mismatch' },
    });
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'processing', retry_count: 0 });
  });

  it('refuses completed without video_storage_path, or while the object is not in storage', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    const base = { item_id: item.item_id, worker_id: 'w1', status: 'completed' };
    expect((await call(sandbox, 'report', base)).status).toBe(400);
    expect(await call(sandbox, 'report', { ...base, video_storage_path: `videos/${item.item_id}.mp4` })).toEqual({
      status: 500,
      json: { success: false, error: 'Failed to generate video URL' },
    });
    expect(sandbox.app.item(item.item_id)?.status).toBe('processing');
  });

  it('completes an item whose video is in storage, keeping a 7-day URL and the Runway task id', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    const storagePath = await uploadVideo(sandbox, item.item_id);
    const answer = await call(sandbox, 'report', {
      item_id: item.item_id,
      worker_id: 'w1',
      status: 'completed',
      video_storage_path: storagePath,
      veo_operation_id: 'runway-task-1',
      runway_task_id: 'runway-task-1',
    });
    expect(answer).toEqual({ status: 200, json: { success: true, data: { message: 'Video item marked as completed', item_id: item.item_id } } });
    const stored = sandbox.app.item(item.item_id);
    expect(stored).toMatchObject({ status: 'completed', video_storage_path: storagePath, veo_operation_id: 'runway-task-1' });
    expect(stored?.video_url).toContain(`/storage/v1/object/sign/generated-videos/${storagePath}?token=`);
    const video = await fetch(stored?.video_url ?? '');
    expect(await video.text()).toBe('fake mp4 bytes');
  });

  it('stores the error and counts an attempt for each failed report, even a repeated one', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    const failed = { item_id: item.item_id, worker_id: 'w1', status: 'failed', error_message: 'runway: INTERNAL' };
    expect((await call(sandbox, 'report', failed)).status).toBe(200);
    expect((await call(sandbox, 'report', failed)).status).toBe(200);
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'failed', retry_count: 2, error_message: 'runway: INTERNAL' });
    expect(sandbox.app.reports(item.item_id).map((entry) => entry.applied)).toEqual([true, true]);
  });

  it('turns a completed item into a failed one when failed is reported after completed', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    const storagePath = await uploadVideo(sandbox, item.item_id);
    await call(sandbox, 'report', { item_id: item.item_id, worker_id: 'w1', status: 'completed', video_storage_path: storagePath });
    await call(sandbox, 'report', { item_id: item.item_id, worker_id: 'w1', status: 'failed', error_message: 'late' });
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'failed', retry_count: 1, error_message: 'late' });
    expect(sandbox.app.item(item.item_id)?.reports.map((entry) => entry.status)).toEqual(['completed', 'failed']);
  });

  it('accepts a report after the lease expired, because it checks neither status nor lease', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    sandbox.app.expireLease(item.item_id);
    expect((await call(sandbox, 'report', { item_id: item.item_id, worker_id: 'w1', status: 'failed' })).status).toBe(200);
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'failed', error_message: 'Unknown error', retry_count: 1 });
  });

  it('records rejected reports too, with the status the app answered', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    await call(sandbox, 'report', { item_id: item.item_id, worker_id: 'w2', status: 'failed' });
    expect(sandbox.app.reports(item.item_id)).toMatchObject([{ worker_id: 'w2', httpStatus: 403, applied: false }]);
  });
});

describe('presign', () => {
  it('signs a GET for an existing photo that returns its bytes', async () => {
    const sandbox = await start();
    const [seed] = demoItems();
    if (!seed) throw new Error('no demo items');
    await seedSandbox(sandbox, [seed]);
    const answer = await call(sandbox, 'presign', { operation: 'download', storage_path: seed.photo_storage_path });
    const { url, expires_in } = urlAnswer.parse(answer.json).data;
    expect(expires_in).toBe(3600);
    expect(url.startsWith(`${sandbox.storageUrl}/object/sign/group-photos/${seed.photo_storage_path}?token=`)).toBe(true);
    const photo = await fetch(url);
    expect(photo.headers.get('content-type')).toBe('image/jpeg');
    expect(Buffer.from(await photo.arrayBuffer()).equals(await readFixture(seed.photo))).toBe(true);
  });

  it('answers 500 Failed to generate download URL for a missing photo', async () => {
    const sandbox = await start();
    expect(await call(sandbox, 'presign', { operation: 'download', storage_path: 'g/p_original.jpg' })).toEqual({
      status: 500,
      json: { success: false, error: 'Failed to generate download URL' },
    });
  });

  it('signs an upload to videos/<id>.mp4 once, and refuses a second presign after the upload', async () => {
    const sandbox = await start();
    const first = await call(sandbox, 'presign', { operation: 'upload', video_item_id: 'item-x', file_extension: 'mp4' });
    const data = uploadAnswer.parse(first.json).data;
    expect(data.storage_path).toBe('videos/item-x.mp4');
    expect(data.expires_in).toBe(3600);
    expect(data.url.startsWith(`${sandbox.storageUrl}/object/upload/sign/generated-videos/videos/item-x.mp4?token=`)).toBe(true);

    // Signing again before anything was uploaded is allowed.
    expect((await call(sandbox, 'presign', { operation: 'upload', video_item_id: 'item-x', file_extension: 'mp4' })).status).toBe(200);
    await uploadVideo(sandbox, 'item-x');
    expect(await call(sandbox, 'presign', { operation: 'upload', video_item_id: 'item-x', file_extension: 'mp4' })).toEqual({
      status: 500,
      json: { success: false, error: 'Failed to generate upload URL' },
    });
  });

  it('answers 400 to an unknown operation', async () => {
    const sandbox = await start();
    expect((await call(sandbox, 'presign', { operation: 'delete' })).status).toBe(400);
  });
});

describe('the seeded demo queue', () => {
  it('holds three photos in storage and three pending items, leased oldest first', async () => {
    const sandbox = await start();
    const items = demoItems();
    await seedSandbox(sandbox, items);
    expect(sandbox.storage.objects().filter((object) => object.bucket === 'group-photos')).toHaveLength(3);
    expect(items.map((item) => item.frame_num)).toEqual([121, 73, null]);
    expect(items.some((item) => item.photo_storage_path.endsWith('_original.JPG'))).toBe(true);
    for (const item of items) {
      expect(item.photo_storage_path).toBe(`${item.group_id}/${item.photo_id}_original.${item.photo_storage_path.split('.').pop() ?? ''}`);
      expect(item.prompt.length).toBeGreaterThanOrEqual(120);
      expect(item.prompt.length).toBeLessThanOrEqual(180);
    }
    const leased = [await lease(sandbox, 'w1'), await lease(sandbox, 'w1'), await lease(sandbox, 'w1')];
    expect(leased.map((task) => task.item_id)).toEqual(items.map((item) => item.item_id));
  });
});

describe('faults at rate 1', () => {
  it('answers 500 without leasing anything when error500Rate is 1', async () => {
    const sandbox = await start({ faults: { app: { error500Rate: 1 } } });
    const item = sandbox.app.addItem(newItem());
    expect(await call(sandbox, 'next-task', { worker_id: 'w1' })).toEqual({
      status: 500,
      json: { success: false, error: 'Failed to fetch tasks' },
    });
    expect(sandbox.app.item(item.item_id)?.status).toBe('pending');
  });

  it('holds the request for hangMs, then drops the connection without applying it, when timeoutRate is 1', async () => {
    const sandbox = await start({ faults: { app: { timeoutRate: 1, hangMs: 300 } } });
    const item = sandbox.app.addItem(newItem());
    const startedAt = Date.now();
    await expect(call(sandbox, 'next-task', { worker_id: 'w1' })).rejects.toThrow();
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(250);
    expect(sandbox.app.item(item.item_id)?.status).toBe('pending');
  });

  it('applies the change but loses the answer when lostResponseRate is 1', async () => {
    const sandbox = await start({ faults: { app: { lostResponseRate: 1 } } });
    const item = sandbox.app.addItem(newItem());
    const outcome = await call(sandbox, 'next-task', { worker_id: 'w1' }).then(
      (answer) => answer.status,
      () => 'connection lost',
    );
    expect([502, 'connection lost']).toContain(outcome);
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'processing', worker_id: 'w1' });

    const reported = await call(sandbox, 'report', { item_id: item.item_id, worker_id: 'w1', status: 'failed' }).then(
      (answer) => answer.status,
      () => 'connection lost',
    );
    expect([502, 'connection lost']).toContain(reported);
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'failed', retry_count: 1 });
    expect(sandbox.app.reports(item.item_id)).toMatchObject([{ applied: true, responseLost: true, httpStatus: 200 }]);
  });

  it('closes promptly even while a request is being held', async () => {
    const sandbox = await start({ faults: { app: { timeoutRate: 1 } } });
    const pending = call(sandbox, 'next-task', { worker_id: 'w1' }).catch(() => 'dropped');
    // Recorded on arrival; the hold follows without a pause.
    await until(() => sandbox.requests().length === 1, 'the request to arrive');
    const startedAt = Date.now();
    opened.splice(opened.findIndex((entry) => entry.sandbox === sandbox), 1);
    await sandbox.close();
    expect(Date.now() - startedAt).toBeLessThan(2000);
    expect(await pending).toBe('dropped');
  });
});

const errorAnswer = z.object({ success: z.literal(false), error: z.string() });

/** One call of each fault route for `item` (leased by w1), with the error each answered. */
async function callEveryRoute(sandbox: Sandbox, itemId: string, photoPath: string): Promise<Record<AppFaultRoute, Answer>> {
  return {
    'next-task': await call(sandbox, 'next-task', { worker_id: 'w2' }),
    'presign-download': await call(sandbox, 'presign', { operation: 'download', storage_path: photoPath }),
    'presign-upload': await call(sandbox, 'presign', { operation: 'upload', video_item_id: itemId, file_extension: 'mp4' }),
    heartbeat: await call(sandbox, 'heartbeat', { item_id: itemId, worker_id: 'w1', extend_seconds: 5 }),
    report: await call(sandbox, 'report', { item_id: itemId, worker_id: 'w1', status: 'failed', error_message: 'x' }),
  };
}

describe('the real app’s 500 answers', () => {
  it('answers each route’s own 500 body with error500Rate 1, and applies nothing', async () => {
    const sandbox = await start({ faults: { app: { error500Rate: 1 } } });
    const item = sandbox.app.addItem(newItem());
    await sandbox.storage.putObject('group-photos', item.photo_storage_path, Buffer.from('jpeg'));

    const answers = await callEveryRoute(sandbox, item.item_id, item.photo_storage_path);

    expect(answers).toEqual({
      'next-task': { status: 500, json: { success: false, error: 'Failed to fetch tasks' } },
      'presign-download': { status: 500, json: { success: false, error: 'Failed to generate download URL' } },
      'presign-upload': { status: 500, json: { success: false, error: 'Failed to generate upload URL' } },
      heartbeat: { status: 500, json: { success: false, error: 'Internal server error' } },
      report: { status: 500, json: { success: false, error: 'Failed to update task' } },
    });
    expect(APP_500_ERRORS).toEqual(
      Object.fromEntries(Object.entries(answers).map(([route, answer]) => [route, errorAnswer.parse(answer.json).error])),
    );
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'pending', worker_id: null, retry_count: 0, leased_until: null });
    expect(sandbox.app.reports()).toEqual([]);
  });

  it('tells a transient download-presign failure from a missing photo by nothing but the photo being there', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await sandbox.storage.putObject('group-photos', item.photo_storage_path, Buffer.from('jpeg'));
    sandbox.app.failNext('presign-download', 1);

    const transient = await call(sandbox, 'presign', { operation: 'download', storage_path: item.photo_storage_path });
    const missing = await call(sandbox, 'presign', { operation: 'download', storage_path: 'g/none_original.jpg' });

    expect(transient).toEqual(missing);
    expect((await call(sandbox, 'presign', { operation: 'download', storage_path: item.photo_storage_path })).status).toBe(200);
  });
});

describe('runs of consecutive 500s (error500RunLength)', () => {
  it('fails the next calls for the same route and item without a draw, and leaves other items alone', async () => {
    const faults = scriptedRng();
    const sandbox = await start({ rng: faults.rng, faults: { app: { error500Rate: SCRIPTED_FAULT_RATE, error500RunLength: 3 } } });
    const a = sandbox.app.addItem(newItem());
    const b = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    await lease(sandbox, 'w1');
    const heartbeat = (itemId: string) => call(sandbox, 'heartbeat', { item_id: itemId, worker_id: 'w1', extend_seconds: 30 });
    const leaseOf = (itemId: string) => sandbox.app.item(itemId)?.leased_until;
    const leaseOfA = leaseOf(a.item_id);

    faults.fireNext();
    const statuses = [
      (await heartbeat(a.item_id)).status,
      (await heartbeat(b.item_id)).status,
      (await heartbeat(a.item_id)).status,
      (await heartbeat(a.item_id)).status,
    ];
    expect(leaseOf(a.item_id)).toBe(leaseOfA);
    statuses.push((await heartbeat(a.item_id)).status);

    expect(statuses).toEqual([500, 200, 500, 500, 200]);
    expect(secondsFromNow(leaseOf(a.item_id) ?? '')).toBeLessThan(31);
  });

  it('runs over the route alone for next-task, which names no item', async () => {
    const faults = scriptedRng();
    const sandbox = await start({ rng: faults.rng, faults: { app: { error500Rate: SCRIPTED_FAULT_RATE, error500RunLength: 2 } } });
    const item = sandbox.app.addItem(newItem());

    faults.fireNext();
    const first = await call(sandbox, 'next-task', { worker_id: 'w1' });
    const second = await call(sandbox, 'next-task', { worker_id: 'w2' });
    expect(sandbox.app.item(item.item_id)?.status).toBe('pending');
    const third = await call(sandbox, 'next-task', { worker_id: 'w3' });

    expect([first, second].map((answer) => answer.json)).toEqual([
      { success: false, error: 'Failed to fetch tasks' },
      { success: false, error: 'Failed to fetch tasks' },
    ]);
    expect(leaseAnswer.parse(third.json).data.item_id).toBe(item.item_id);
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'processing', worker_id: 'w3' });
  });
});

describe('failNext', () => {
  it('fails the next reports of one item with the real body, applying nothing, then lets them through', async () => {
    const sandbox = await start();
    const a = sandbox.app.addItem(newItem());
    const b = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    await lease(sandbox, 'w1');
    sandbox.app.failNext('report', 2, { itemId: a.item_id });
    const report = (itemId: string) => call(sandbox, 'report', { item_id: itemId, worker_id: 'w1', status: 'failed', error_message: 'boom' });

    const forB = await report(b.item_id);
    const forA = [await report(a.item_id), await report(a.item_id)];
    expect(sandbox.app.item(a.item_id)).toMatchObject({ status: 'processing', retry_count: 0, error_message: null });
    const third = await report(a.item_id);

    expect(forB.status).toBe(200);
    expect(forA).toEqual([
      { status: 500, json: { success: false, error: 'Failed to update task' } },
      { status: 500, json: { success: false, error: 'Failed to update task' } },
    ]);
    expect(third.status).toBe(200);
    expect(sandbox.app.item(a.item_id)).toMatchObject({ status: 'failed', retry_count: 1 });
    expect(sandbox.app.reports(a.item_id).map((entry) => entry.applied)).toEqual([true]);
  });

  it('matches a download presign to the items with that photo', async () => {
    const sandbox = await start();
    const a = sandbox.app.addItem(newItem());
    const b = sandbox.app.addItem(newItem());
    for (const item of [a, b]) await sandbox.storage.putObject('group-photos', item.photo_storage_path, Buffer.from('jpeg'));
    sandbox.app.failNext('presign-download', 1, { itemId: a.item_id });

    const forB = await call(sandbox, 'presign', { operation: 'download', storage_path: b.photo_storage_path });
    const forA = await call(sandbox, 'presign', { operation: 'download', storage_path: a.photo_storage_path });
    const again = await call(sandbox, 'presign', { operation: 'download', storage_path: a.photo_storage_path });

    expect([forB.status, forA.status, again.status]).toEqual([200, 500, 200]);
    expect(forA.json).toEqual({ success: false, error: 'Failed to generate download URL' });
  });

  it('fails the next calls of a route whatever the item when no item is given, and only that route', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1');
    sandbox.app.failNext('presign-upload', 2);

    const download = await call(sandbox, 'presign', { operation: 'download', storage_path: 'g/none_original.jpg' });
    const uploads = [
      await call(sandbox, 'presign', { operation: 'upload', video_item_id: item.item_id, file_extension: 'mp4' }),
      await call(sandbox, 'presign', { operation: 'upload', video_item_id: 'another-item', file_extension: 'mp4' }),
      await call(sandbox, 'presign', { operation: 'upload', video_item_id: item.item_id, file_extension: 'mp4' }),
    ];
    const heartbeat = await call(sandbox, 'heartbeat', { item_id: item.item_id, worker_id: 'w1' });

    // The missing photo's own 500, not a scripted one.
    expect(download.json).toEqual({ success: false, error: 'Failed to generate download URL' });
    expect(uploads.map((answer) => answer.status)).toEqual([500, 500, 200]);
    expect(uploads[0]?.json).toEqual({ success: false, error: 'Failed to generate upload URL' });
    expect(heartbeat.status).toBe(200);
  });

  it('leaves a lease untouched while its heartbeats are failed', async () => {
    const sandbox = await start();
    const item = sandbox.app.addItem(newItem());
    await lease(sandbox, 'w1', { lease_duration_seconds: 600 });
    const before = sandbox.app.item(item.item_id)?.leased_until;
    sandbox.app.failNext('heartbeat', 1, { itemId: item.item_id });

    const answer = await call(sandbox, 'heartbeat', { item_id: item.item_id, worker_id: 'w1', extend_seconds: 0 });

    expect(answer).toEqual({ status: 500, json: { success: false, error: 'Internal server error' } });
    expect(sandbox.app.item(item.item_id)).toMatchObject({ status: 'processing', leased_until: before });
  });
});
