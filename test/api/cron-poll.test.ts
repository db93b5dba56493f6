import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { readFixture } from '../../sandbox/seed.js';
import { parseConfig } from '../../lib/config.js';
import { handleCronGet } from '../../lib/handlers/cron-poll.js';
import { createDeps } from '../../lib/runtime.js';
import { pollMessageSchema } from '../../lib/steps/messages.js';
import {
  CRON_SECRET,
  DEV_QSTASH,
  RUNWAY_AUTH,
  WORKER_AUTH,
  WORKER_ID,
  closeHarnesses,
  seedItem,
  silentLogger,
  startHarness,
  workerEnv,
  type Harness,
} from '../support/harness.js';
import { jpeg } from '../support/images.js';
import { createBodySchema } from '../support/runway-create.js';
import { expectCleanJpeg } from '../support/sent-photo.js';
import { cronItemSchema, cronSummarySchema } from '../support/cron-summary.js';

afterEach(closeHarnesses);

const summarySchema = cronSummarySchema.extend({
  items: z.array(
    cronItemSchema.extend({
      runway_task_id: z.string().optional(),
      model: z.string().optional(),
      duration: z.number().optional(),
      ratio: z.string().optional(),
    }),
  ),
});
type Summary = z.infer<typeof summarySchema>;


async function cronSummary(harness: Harness, query = ''): Promise<Summary> {
  const answer = await harness.cron(query);
  expect(answer.status).toBe(200);
  return summarySchema.parse(answer.json);
}

function creates(harness: Harness) {
  return harness.requests({ service: 'runway', method: 'POST', path: '/v1/image_to_video' });
}

function onlyCreateBody(harness: Harness): z.infer<typeof createBodySchema> {
  const all = creates(harness);
  expect(all).toHaveLength(1);
  return createBodySchema.parse(all[0]?.json);
}


describe('cron-poll called without the cron secret', () => {
  it.each([
    ['no Authorization header', null],
    ['a wrong bearer token', 'Bearer not-the-secret'],
    ['the secret under another scheme', `Worker ${CRON_SECRET}`],
    ['a prefix of the secret', `Bearer ${CRON_SECRET.slice(0, -1)}`],
  ])('answers 401 to %s and leases nothing', async (_label, authorization) => {
    const harness = await startHarness({ items: [seedItem('landscape.jpg')] });

    const answer = await harness.cron('', authorization);

    expect(answer.status).toBe(401);
    expect(answer.json).toMatchObject({ outcome: 'unauthorized' });
    expect(harness.requests()).toEqual([]);
    expect(harness.messages()).toEqual([]);
  });

  it('answers 401 when the server has no CRON_SECRET, whatever the caller sends', async () => {
    const harness = await startHarness({ items: [seedItem('landscape.jpg')] });
    for (const cronSecret of [undefined, '', '   ']) {
      const deps = createDeps(parseConfig({ ...workerEnv(harness), CRON_SECRET: cronSecret }), { log: silentLogger() });
      expect(deps.config.cronSecret).toBeUndefined();
      for (const authorization of ['Bearer ', 'Bearer undefined', `Bearer ${CRON_SECRET}`, '']) {
        const request = new Request(`${harness.url}/api/cron-poll`, { headers: { authorization } });
        const answer = await handleCronGet(request, () => deps);
        expect(answer.status).toBe(401);
        expect(await answer.json()).toMatchObject({ outcome: 'unauthorized' });
      }
    }
    expect(harness.requests()).toEqual([]);
    expect(harness.messages()).toEqual([]);
  });
});

describe('cron-poll with one landscape photo queued', () => {
  it('leases with POST /worker/next-task, the Worker key and exactly the documented body', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });

    await cronSummary(harness);

    const leases = harness.appCalls('next-task');
    // One lease that got the item, one that found the queue empty.
    expect(leases.length).toBeGreaterThanOrEqual(2);
    for (const lease of leases) {
      expect(lease.method).toBe('POST');
      expect(lease.headers['authorization']).toBe(WORKER_AUTH);
      expect(lease.headers['content-type']).toMatch(/^application\/json/);
      expect(lease.json).toEqual({ worker_id: WORKER_ID, worker_type: 'runway', lease_duration_seconds: 600 });
    }
  });

  it('asks the app to sign a download of exactly the photo path it leased', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });

    await cronSummary(harness);

    const presigns = harness.appCalls('presign');
    expect(presigns).toHaveLength(1);
    expect(presigns[0]?.headers['authorization']).toBe(WORKER_AUTH);
    expect(presigns[0]?.json).toEqual({ operation: 'download', storage_path: item.photo_storage_path });
    const downloads = harness.requests({ service: 'storage', method: 'GET' });
    expect(downloads).toHaveLength(1);
    expect(downloads[0]?.path.split('?')[0]).toBe(`/object/sign/group-photos/${item.photo_storage_path}`);
  });

  it('creates the Runway task with the key, the pinned version and only the fields gen4_turbo takes', async () => {
    const item = seedItem('landscape.jpg', { frame_num: 121 });
    const harness = await startHarness({ items: [item] });

    await cronSummary(harness);

    const [create] = creates(harness);
    expect(create?.headers['authorization']).toBe(RUNWAY_AUTH);
    expect(create?.headers['x-runway-version']).toBe('2024-11-06');
    expect(create?.headers['content-type']).toMatch(/^application\/json/);
    const body = onlyCreateBody(harness);
    expect(Object.keys(body).sort()).toEqual(['duration', 'model', 'promptImage', 'promptText', 'ratio']);
    expect(body).toMatchObject({ model: 'gen4_turbo', ratio: '1104:832', duration: 5, promptText: item.prompt });
    // The photo re-encoded as it was seen: same size (it needs no fitting), no metadata.
    const sent = await expectCleanJpeg(body.promptImage);
    expect({ width: sent.width, height: sent.height }).toEqual({ width: 320, height: 240 });
    expect(sent.bytes.equals(await readFixture('landscape.jpg'))).toBe(false);
  });

  it('publishes the first poll to runway-callback, deduplicated per item, attempt and step, 5-60 s out', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const before = Date.now();

    const summary = await cronSummary(harness);

    const [task] = harness.sandbox.runway.tasks();
    const messages = harness.messages();
    expect(messages).toHaveLength(1);
    const [message] = messages;
    expect(message?.url).toBe(`${harness.url}/api/runway-callback`);
    expect(message?.method).toBe('POST');
    expect(message?.headers['content-type']).toMatch(/^application\/json/);
    const { job } = pollMessageSchema.parse(JSON.parse(message?.body ?? ''));
    expect(job).toEqual({
      item_id: item.item_id,
      attempt: 1,
      runway_task_id: task?.id,
      model: 'gen4_turbo',
      duration: 5,
      ratio: '1104:832',
      submitted_at: job.submitted_at,
      last_heartbeat_at: job.submitted_at,
      polls: 0,
      generation: 1,
      // What the report needs to price the video travels along: no ledger read for it.
      estimated_credits: task?.credits,
      source: { photo_storage_path: item.photo_storage_path, prompt_text: item.prompt },
    });
    expect(job.estimated_credits).toBe(25);
    expect(job.submitted_at).toBeGreaterThanOrEqual(before);
    expect(job.submitted_at).toBeLessThanOrEqual(Date.now());
    expect(message?.headers['upstash-deduplication-id']).toBe(`${item.item_id}-1-poll-0`);
    const delay = /^(\d+)s$/.exec(message?.headers['upstash-delay'] ?? '');
    expect(delay).not.toBeNull();
    expect(Number(delay?.[1])).toBeGreaterThanOrEqual(5);
    expect(Number(delay?.[1])).toBeLessThanOrEqual(60);
    expect(summary.items).toEqual([
      {
        item_id: item.item_id,
        outcome: 'submitted',
        detail: `runway task ${task?.id ?? ''}`,
        runway_task_id: task?.id,
        model: 'gen4_turbo',
        duration: 5,
        ratio: '1104:832',
      },
    ]);
  });
});

describe('cron-poll choosing ratio and duration from the photo and frame_num', () => {
  it.each([
    { photo: 'landscape.jpg', frame_num: 121, ratio: '1104:832', duration: 5 },
    { photo: 'portrait-exif6.jpg', frame_num: 73, ratio: '720:1280', duration: 3 },
    { photo: 'landscape.jpg', frame_num: null, ratio: '1104:832', duration: 5 },
    { photo: 'landscape.jpg', frame_num: 241, ratio: '1104:832', duration: 10 },
  ] as const)('sends $photo with frame_num $frame_num as ratio $ratio and $duration s', async (row) => {
    const item = seedItem(row.photo, { frame_num: row.frame_num });
    const harness = await startHarness({ items: [item] });

    await cronSummary(harness);

    const body = onlyCreateBody(harness);
    expect(body).toMatchObject({ model: 'gen4_turbo', ratio: row.ratio, duration: row.duration });
    expect(body).not.toHaveProperty('audio');
    // Upright as displayed: the EXIF-6 portrait's stored 320x180 pixels arrive as 180x320.
    const sent = await expectCleanJpeg(body.promptImage);
    expect({ width: sent.width, height: sent.height }).toEqual(row.ratio === '720:1280' ? { width: 180, height: 320 } : { width: 320, height: 240 });
  });

  it('on veo3.1 snaps 121 frames to 6 s, picks a 16:9 size and asks for no audio', async () => {
    const item = seedItem('landscape.jpg', { frame_num: 121 });
    const harness = await startHarness({ items: [item], env: { RUNWAY_MODEL: 'veo3.1' } });

    await cronSummary(harness);

    const body = onlyCreateBody(harness);
    expect(Object.keys(body).sort()).toEqual(['audio', 'duration', 'model', 'promptImage', 'promptText', 'ratio']);
    expect(body).toMatchObject({ model: 'veo3.1', duration: 6, ratio: '1280:720', audio: false, promptText: item.prompt });
    const [message] = harness.messages('/api/runway-callback');
    expect(pollMessageSchema.parse(JSON.parse(message?.body ?? '')).job).toMatchObject({
      model: 'veo3.1',
      duration: 6,
      ratio: '1280:720',
    });
  });

  it('on veo3.1 gives the EXIF-rotated portrait a 720:1280 video', async () => {
    const item = seedItem('portrait-exif6.jpg', { frame_num: 73 });
    const harness = await startHarness({ items: [item], env: { RUNWAY_MODEL: 'veo3.1' } });

    await cronSummary(harness);

    expect(onlyCreateBody(harness)).toMatchObject({ model: 'veo3.1', duration: 4, ratio: '720:1280', audio: false });
  });
});

describe('cron-poll with three photos queued', () => {
  const threeItems = () => [
    seedItem('landscape.jpg'),
    seedItem('portrait-exif6.jpg', { frame_num: 73 }),
    seedItem('refused.jpg', { frame_num: null }),
  ];

  it('answers a summary of what it leased and submitted, and stops when the queue is idle', async () => {
    const items = threeItems();
    const harness = await startHarness({ items });

    const summary = await cronSummary(harness);

    expect(summary).toMatchObject({
      leased: 3,
      submitted: 3,
      resumed: 0,
      released: 0,
      failed: 0,
      skipped: 0,
      errors: 0,
      stopped: 'idle',
      drain_scheduled: false,
    });
    expect(summary.duration_ms).toBeGreaterThanOrEqual(0);
    const taskIds = harness.sandbox.runway.tasks().map((task) => task.id);
    expect(summary.items.map((entry) => entry.item_id).sort()).toEqual(items.map((item) => item.item_id).sort());
    for (const entry of summary.items) {
      expect(entry.outcome).toBe('submitted');
      expect(taskIds).toContain(entry.runway_task_id);
    }
    expect(harness.messages('/api/runway-callback')).toHaveLength(3);
    expect(harness.messages('/api/cron-poll')).toEqual([]);
  });

  it('leases exactly one with ?limit=1 and leaves the other two pending', async () => {
    const items = threeItems();
    const harness = await startHarness({ items });

    const summary = await cronSummary(harness, '?limit=1');

    expect(summary).toMatchObject({ leased: 1, submitted: 1, drain_scheduled: false });
    expect(harness.messages('/api/cron-poll')).toEqual([]);
    expect(harness.appCalls('next-task')).toHaveLength(1);
    expect(creates(harness)).toHaveLength(1);
    const statuses = harness.sandbox.app.items().map((item) => item.status);
    expect(statuses.filter((status) => status === 'pending')).toHaveLength(2);
    expect(harness.sandbox.app.item(items[0]?.item_id ?? '')?.status).toBe('processing');
  });

  it('rejects a limit that is not a whole number with 400 and leases nothing', async () => {
    const harness = await startHarness({ items: threeItems() });

    const answer = await harness.cron('?limit=two');

    expect(answer.status).toBe(400);
    expect(harness.requests()).toEqual([]);
  });

  it('at MAX_TASKS_PER_RUN=2 leases two and schedules a delayed drain POST to itself', async () => {
    const harness = await startHarness({ items: threeItems(), env: { MAX_TASKS_PER_RUN: '2' } });

    const summary = await cronSummary(harness);

    expect(summary).toMatchObject({ leased: 2, submitted: 2, stopped: 'cap', drain_scheduled: true });
    expect(harness.appCalls('next-task')).toHaveLength(2);
    const drains = harness.messages('/api/cron-poll');
    expect(drains).toHaveLength(1);
    expect(drains[0]?.method).toBe('POST');
    expect(JSON.parse(drains[0]?.body ?? '')).toEqual({ reason: 'drain' });
    // The queue most likely holds more: the next run comes as soon as QStash can deliver it.
    expect(drains[0]?.headers['upstash-delay']).toBe('1s');
    expect(drains[0]?.headers['upstash-deduplication-id']).toMatch(/^cron-drain-\d+$/);
    expect(harness.sandbox.app.items().filter((item) => item.status === 'pending')).toHaveLength(1);
  });

  it('schedules one drain when two capped runs finish in the same moment', async () => {
    const items = [...threeItems(), seedItem('landscape.jpg')];
    const harness = await startHarness({ items });
    const frozen = Date.now();
    const deps = createDeps(parseConfig({ ...workerEnv(harness), MAX_TASKS_PER_RUN: '2', CRON_SECRET }), {
      log: silentLogger(),
      now: () => frozen,
    });
    const run = async (): Promise<Summary> => {
      const request = new Request(`${harness.url}/api/cron-poll`, { headers: { authorization: `Bearer ${CRON_SECRET}` } });
      const answer = await handleCronGet(request, () => deps);
      expect(answer.status).toBe(200);
      return summarySchema.parse(await answer.json());
    };

    const summaries = await Promise.all([run(), run()]);

    expect(summaries.map((summary) => summary.stopped)).toEqual(['cap', 'cap']);
    expect(summaries.map((summary) => summary.leased)).toEqual([2, 2]);
    expect(summaries.map((summary) => summary.drain_scheduled).sort()).toEqual([false, true]);
    expect(harness.messages('/api/cron-poll')).toHaveLength(1);
    expect(harness.qstash.stats().deduplicated).toBe(1);
  });
});

describe('cron-poll draining through the embedded QStash', () => {
  it('gets the drain delivered with a signature it accepts, leases the rest, and the queue ends reported', async () => {
    const items = [seedItem('landscape.jpg'), seedItem('portrait-exif6.jpg', { frame_num: 73 }), seedItem('landscape.jpg')];
    const harness = await startHarness({ items, env: { MAX_TASKS_PER_RUN: '2' }, delivery: 'auto' });

    const first = await cronSummary(harness);
    await harness.qstash.idle();

    expect(first).toMatchObject({ leased: 2, stopped: 'cap', drain_scheduled: true });
    const drains = harness.messages('/api/cron-poll');
    expect(drains).toHaveLength(1);
    expect(drains[0]?.state).toBe('succeeded');
    expect(drains[0]?.attempts.map((attempt) => attempt.status)).toEqual([200]);
    expect(summarySchema.parse(JSON.parse(drains[0]?.attempts[0]?.responseBody ?? ''))).toMatchObject({ leased: 1, stopped: 'idle' });
    for (const item of items) {
      expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'completed', video_storage_path: `videos/${item.item_id}.mp4` });
      expect(harness.sandbox.app.reports(item.item_id)).toHaveLength(1);
    }
    for (const message of harness.messages()) {
      expect(message.attempts.every((attempt) => attempt.status !== 401)).toBe(true);
    }
  });
});

describe('cron-poll meeting a task for the GPU worker (inference_provider wan_local)', () => {
  it('releases it at once with extend_seconds 0, reports nothing, creates nothing for it and leases no more', async () => {
    const runwayItems = [seedItem('landscape.jpg'), seedItem('landscape.jpg'), seedItem('landscape.jpg')];
    const harness = await startHarness({ items: runwayItems });
    const gpu = harness.sandbox.app.addItem({
      group_id: 'gpu-group',
      photo_id: 'gpu-photo',
      prompt: 'A slow pan across a quiet lake.',
      photo_storage_path: runwayItems[0]?.photo_storage_path ?? '',
      frame_num: 121,
      inference_provider: 'wan_local',
      created_at: new Date(Date.now() - 60_000).toISOString(),
    });

    const summary = await cronSummary(harness);

    const heartbeats = harness.appCalls('heartbeat');
    expect(heartbeats).toHaveLength(1);
    expect(heartbeats[0]?.headers['authorization']).toBe(WORKER_AUTH);
    expect(heartbeats[0]?.json).toEqual({ item_id: gpu.item_id, worker_id: WORKER_ID, extend_seconds: 0 });
    expect(harness.appCalls('report')).toEqual([]);
    expect(summary.stopped).toBe('not-ours');
    expect(summary.items.find((entry) => entry.item_id === gpu.item_id)).toMatchObject({ outcome: 'released' });
    expect(summary.released).toBe(1);
    // The item is leasable again at once, and the ledger never saw it.
    expect(Date.parse(harness.sandbox.app.item(gpu.item_id)?.leased_until ?? '')).toBeLessThanOrEqual(Date.now());
    expect(await harness.runtime.deps.ledger.latest(gpu.item_id)).toBeUndefined();
    // Leases already in flight when the GPU task came back finish; no new lease starts after it.
    const leasedInRun = harness.appCalls('next-task').length;
    expect(leasedInRun).toBe(summary.leased);
    expect(creates(harness)).toHaveLength(summary.submitted);
    expect(summary.submitted).toBe(leasedInRun - 1);
    expect(harness.sandbox.app.items().filter((item) => item.status === 'pending')).toHaveLength(4 - leasedInRun);
    expect(harness.sandbox.app.items().filter((item) => item.status === 'pending').length).toBeGreaterThan(0);
  });

  it('leases it only once in a run, although the release makes it the oldest leasable item again', async () => {
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

    const summary = await cronSummary(harness);

    expect(summary.items).toEqual([{ item_id: gpu.item_id, outcome: 'released', detail: expect.any(String) as unknown }]);
    expect(harness.appCalls('heartbeat')).toHaveLength(1);
    // Runway is asked for its limits before leasing (backpressure), and for nothing else.
    expect(harness.requests({ service: 'runway' }).map((request) => `${request.method} ${request.path}`)).toEqual(['GET /v1/organization']);
    expect(harness.requests({ service: 'storage' })).toEqual([]);
    expect(harness.appCalls('presign')).toEqual([]);
    expect(harness.messages()).toEqual([]);
  });
});

describe('cron-poll with a 4.5 MB photo, too big for a data URI as it is', () => {
  it('sends the prepared photo as a data URI of a few kilobytes, with no ephemeral upload', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness();
    const photo = jpeg({ width: 320, height: 240, paddingBytes: 4_500_000 });
    await harness.sandbox.storage.putObject('group-photos', item.photo_storage_path, photo);
    harness.sandbox.app.addItem({
      item_id: item.item_id,
      group_id: item.group_id,
      photo_id: item.photo_id,
      prompt: item.prompt,
      photo_storage_path: item.photo_storage_path,
      frame_num: 121,
    });

    const summary = await cronSummary(harness);

    expect(summary).toMatchObject({ submitted: 1 });
    expect(harness.requests({ service: 'runway', path: '/v1/uploads' })).toEqual([]);
    const body = onlyCreateBody(harness);
    expect(body).toMatchObject({ model: 'gen4_turbo', ratio: '1104:832', duration: 5 });
    const sent = await expectCleanJpeg(body.promptImage);
    expect({ width: sent.width, height: sent.height }).toEqual({ width: 320, height: 240 });
    expect(sent.bytes.length).toBeLessThan(50_000);
  });
});

describe('cron-poll called by QStash (drain continuation or schedule)', () => {
  it('runs a poll for a POST signed with the current signing key and the drain body', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });

    const answer = await harness.deliver('/api/cron-poll', { reason: 'drain' });

    expect(answer.status).toBe(200);
    expect(summarySchema.parse(answer.json)).toMatchObject({ leased: 1, submitted: 1, stopped: 'idle' });
    expect(harness.sandbox.app.item(item.item_id)?.status).toBe('processing');
    expect(harness.messages('/api/runway-callback')).toHaveLength(1);
  });

  it('runs a poll for an empty body, as a QStash schedule sends', async () => {
    const harness = await startHarness({ items: [seedItem('landscape.jpg')] });

    const answer = await harness.deliver('/api/cron-poll', '');

    expect(answer.status).toBe(200);
    expect(summarySchema.parse(answer.json)).toMatchObject({ leased: 1 });
  });

  it('accepts a signature made with the next signing key (key rotation), and leases', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });

    const answer = await harness.deliver('/api/cron-poll', { reason: 'drain' }, { signingKey: DEV_QSTASH.nextSigningKey });

    expect(answer.status).toBe(200);
    expect(summarySchema.parse(answer.json)).toMatchObject({ leased: 1 });
    expect(harness.sandbox.app.item(item.item_id)?.status).toBe('processing');
  });

  it.each([
    ['no signature', { unsigned: true }],
    ['a signature made with another key', { signingKey: 'sig_3mXnotTheRealKeyAtAll00' }],
    ['a signature for another URL', { signedUrl: 'http://127.0.0.1:1/api/cron-poll' }],
    ['a signature over another body', { signedBody: '{"reason":"drain","limit":10}' }],
  ] as const)('answers 401 to a POST with %s and leases nothing', async (_label, options) => {
    const harness = await startHarness({ items: [seedItem('landscape.jpg')] });

    const answer = await harness.deliver('/api/cron-poll', { reason: 'drain' }, options);

    expect(answer.status).toBe(401);
    expect(harness.requests()).toEqual([]);
    expect(harness.messages()).toEqual([]);
  });

  it('stops QStash with 489 for a signed body that is not a drain message, leasing nothing', async () => {
    const harness = await startHarness({ items: [seedItem('landscape.jpg')] });

    const answer = await harness.deliver('/api/cron-poll', { reason: 'everything' });

    expect(answer.status).toBe(489);
    expect(answer.headers.get('upstash-nonretryable-error')).toBe('true');
    expect(harness.requests()).toEqual([]);
  });
});

describe('cron-poll ?check=1 (preflight)', () => {
  it('checks the app key, the Runway key, the QStash token and the ledger without leasing anything', async () => {
    const harness = await startHarness({ items: [seedItem('landscape.jpg')] });

    const answer = await harness.cron('?check=1');

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({
      ok: true,
      config: { ok: true },
      next_api: { ok: true },
      qstash: { ok: true },
      runway: { ok: true, credit_balance: expect.any(Number) as unknown },
      ledger: { ok: true },
      callback_base_url: harness.url,
    });
    expect(harness.appCalls('next-task')).toEqual([]);
    expect(harness.sandbox.app.items().map((item) => item.status)).toEqual(['pending']);
    const heartbeats = harness.appCalls('heartbeat');
    expect(heartbeats).toHaveLength(1);
    expect(heartbeats[0]?.headers['authorization']).toBe(WORKER_AUTH);
    expect(heartbeats[0]?.json).toEqual({});
    const org = harness.requests({ service: 'runway' });
    expect(org.map((request) => `${request.method} ${request.path}`)).toEqual(['GET /v1/organization']);
    expect(org[0]?.headers['authorization']).toBe(RUNWAY_AUTH);
    expect(org[0]?.headers['x-runway-version']).toBe('2024-11-06');
    expect(harness.messages()).toEqual([]);
  });
});
