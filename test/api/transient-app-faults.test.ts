import { afterEach, describe, expect, it } from 'vitest';
import { finishedUpload, submit } from '../support/flow.js';
import { closeHarnesses, seedItem, startHarness, type Harness } from '../support/harness.js';
import { countedRng, SCRIPTED_FAULT_RATE } from '../support/scripted-rng.js';

afterEach(closeHarnesses);

/**
 * Transient faults of the app that once failed or stalled an item, reproduced with the app's own 500 answers: a storage hiccup behind "Failed to
 * generate download URL", and "Failed to update task" answers to the completed report.
 */

async function oneItem(): Promise<{ harness: Harness; itemId: string }> {
  const item = seedItem('landscape.jpg');
  return { harness: await startHarness({ items: [item] }), itemId: item.item_id };
}

describe('the app answering 500 "Failed to generate download URL" for a photo that exists', () => {
  it('gives the item back instead of calling the photo missing, and the next lease completes it', async () => {
    const { harness, itemId } = await oneItem();
    // One lease's worth: the first try and both in-process retries.
    harness.sandbox.app.failNext('presign-download', 3);

    const first = await harness.cron();

    expect(first.json).toMatchObject({ items: [{ item_id: itemId, outcome: 'released' }] });
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
    expect(harness.sandbox.runway.tasks()).toEqual([]);
    expect(harness.appCalls('heartbeat').map((request) => request.json)).toEqual([{ item_id: itemId, worker_id: 'runway-worker', extend_seconds: 0 }]);

    const job = await submit(harness, itemId);
    expect(job.attempt).toBe(2);
    expect(harness.sandbox.runway.tasks()).toHaveLength(1);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'processing', retry_count: 0, error_message: null });
  });
});

describe('three transient failures in a row before any Runway task, the last one the download presign', () => {
  it('reports the outage as what it was, not as a missing photo', async () => {
    const faults = countedRng();
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({
      items: [item],
      sandbox: { rng: faults.rng, runway: { generationMs: 300 }, faults: { runway: { error502Rate: SCRIPTED_FAULT_RATE } } },
    });
    // Run 1: the limits (draw 1), then a create answered 502 (draw 2); run 2: the limits are
    // cached, its create is draw 3; run 3: the photo cannot be signed.
    faults.fireOn(2, 3);

    for (let run = 1; run <= 2; run++) {
      expect((await harness.cron()).json).toMatchObject({ items: [{ item_id: item.item_id, outcome: 'released' }] });
    }
    harness.sandbox.app.failNext('presign-download', 3);
    expect((await harness.cron()).json).toMatchObject({ items: [{ item_id: item.item_id, outcome: 'failed' }] });

    expect(harness.sandbox.app.reports(item.item_id)).toMatchObject([
      { status: 'failed', error_message: 'photo: the app could not sign a download URL (answered 500)', applied: true },
    ]);
  });
});

describe('the app answering 500 "Failed to update task" to the completed report three times in a row', () => {
  it('sends the report again on the next delivery, since the heartbeat proves it did not land', async () => {
    const { harness, itemId } = await oneItem();
    const upload = await finishedUpload(harness, itemId);
    harness.sandbox.app.failNext('report', 3, { itemId });

    const first = await harness.deliver('/api/step-upload', upload);

    // One delivery: three sends, each followed by a heartbeat that says the item is still ours.
    expect(first.status).toBe(503);
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
    expect(harness.appCalls('report').map((request) => request.json)).toHaveLength(3);
    expect(harness.sandbox.storage.object('generated-videos', `videos/${itemId}.mp4`)).toBeDefined();

    const second = await harness.deliver('/api/step-upload', upload, { retried: 1 });

    expect(second.status).toBe(200);
    const reports = harness.sandbox.app.reports(itemId);
    expect(reports.map(({ status, video_storage_path, applied }) => ({ status, video_storage_path, applied }))).toEqual([
      { status: 'completed', video_storage_path: `videos/${itemId}.mp4`, applied: true },
    ]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'completed' });
    // Exactly as claimed: the same body the first sends carried.
    const sent = harness.appCalls('report').map((request) => request.json);
    expect(sent).toHaveLength(4);
    expect(new Set(sent.map((body) => JSON.stringify(body))).size).toBe(1);

    // Later deliveries find it landed and send nothing more.
    const third = await harness.deliver('/api/step-upload', upload, { retried: 2 });
    expect(third.status).toBe(200);
    expect(harness.appCalls('report')).toHaveLength(4);
  });

  it('sends it once more at most when two deliveries find it unconfirmed at the same moment', async () => {
    const { harness, itemId } = await oneItem();
    const upload = await finishedUpload(harness, itemId);
    harness.sandbox.app.failNext('report', 3, { itemId });
    expect((await harness.deliver('/api/step-upload', upload)).status).toBe(503);

    const answers = await Promise.all([
      harness.deliver('/api/step-upload', upload, { retried: 1 }),
      harness.deliver('/api/step-upload', upload, { retried: 1 }),
    ]);

    expect(answers.map((answer) => answer.status)).toContain(200);
    expect(harness.appCalls('report')).toHaveLength(4);
    expect(harness.sandbox.app.reports(itemId).filter((report) => report.applied)).toHaveLength(1);
  });
});
