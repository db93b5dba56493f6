import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allReported, demoRows, formatPhotoTable, formatTable, photoRows } from '../../sandbox/demo/report.js';
import { startLocalRuntime, type LocalRuntime } from '../../sandbox/demo/local-runtime.js';
import { until } from '../support/wait.js';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('the demo: three sample photos through the real handlers, the local QStash and the sandbox', () => {
  let runtime: LocalRuntime;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'runway-e2e-'));
    runtime = await startLocalRuntime({
      env: { LOCAL_CRON_SECONDS: '1', CRON_SECRET: 'e2e-cron-secret', LOG_LEVEL: 'warn' },
      port: 0,
      dataDir,
      log: pino({ level: 'silent' }),
      qstashTimeScale: 0.02,
      sandbox: { runway: { generationMs: 600 } },
    });
    const sandbox = runtime.sandbox;
    if (!sandbox) throw new Error('demo mode expected');
    await until(() => allReported(sandbox, runtime.items), 'every item to be reported', 30_000);
  });

  afterAll(async () => {
    await runtime.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('runs in demo mode with every service on loopback', () => {
    expect(runtime.mode).toBe('demo');
    expect(new URL(runtime.deps.config.nextApiUrl).hostname).toBe('127.0.0.1');
    expect(new URL(runtime.deps.config.runwayApiUrl).hostname).toBe('127.0.0.1');
  });

  it('sends each item exactly one report', () => {
    for (const seed of runtime.items) {
      expect(runtime.sandbox?.app.reports(seed.item_id)).toHaveLength(1);
    }
  });

  it('uploads the landscape and the portrait as byte-identical copies of the Runway output', async () => {
    const sandbox = runtime.sandbox!;
    const [landscape, portrait] = runtime.items;
    for (const seed of [landscape!, portrait!]) {
      const item = sandbox.app.item(seed.item_id)!;
      expect(item.status).toBe('completed');
      expect(item.video_storage_path).toBe(`videos/${seed.item_id}.mp4`);
      const taskId = item.veo_operation_id!;
      const stored = sandbox.storage.object('generated-videos', item.video_storage_path!)!;
      expect(stored.contentType).toBe('video/mp4');
      expect(stored.uploads).toBe(1);
      const file = sandbox.storage.filePath('generated-videos', item.video_storage_path!)!;
      const bytes = await readFile(file);
      expect(sha256(bytes)).toBe(sandbox.runway.outputSha256(taskId));
      expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
    }
  });

  it('gives the EXIF-rotated portrait photo a portrait video and the landscape a landscape one', () => {
    const sandbox = runtime.sandbox!;
    const [landscape, portrait] = runtime.items;
    const taskOf = (itemId: string) => sandbox.runway.task(sandbox.app.item(itemId)!.veo_operation_id!)!;
    expect(taskOf(landscape!.item_id)).toMatchObject({ model: 'gen4_turbo', ratio: '1104:832', duration: 5 });
    expect(taskOf(portrait!.item_id)).toMatchObject({ model: 'gen4_turbo', ratio: '720:1280', duration: 3 });
  });

  it('reports the refused photo as failed with Runway’s moderation code and no URL', () => {
    const sandbox = runtime.sandbox!;
    const refused = sandbox.app.item(runtime.items[2]!.item_id)!;
    expect(refused.status).toBe('failed');
    expect(refused.error_message).toMatch(/^runway: SAFETY\.INPUT\.IMAGE — /);
    expect(refused.error_message).not.toMatch(/https?:|token=/);
    expect(refused.retry_count).toBe(1);
    expect(refused.video_storage_path).toBeNull();
  });

  it('shows that Runway received the EXIF-6 portrait upright and without its GPS, camera or any other metadata', async () => {
    const sandbox = runtime.sandbox!;
    const rows = await photoRows(sandbox, runtime.items);
    const portrait = rows.find((row) => row.photo === 'portrait-exif6.jpg');
    expect(portrait?.stored).toMatch(/^jpeg 320x180, .* KB, orientation 6, exif, gps, camera, xmp, iptc, icc, comment$/);
    expect(portrait?.received).toMatch(/^jpeg 180x320, .* KB, orientation 1, no metadata$/);
    for (const row of rows) expect(row.received).toMatch(/, orientation 1, no metadata$/);
    expect(formatPhotoTable(rows)).toContain('received by Runway');
  });

  it('shows what each video cost in the summary table, as the worker logged it with the report', async () => {
    const sandbox = runtime.sandbox!;
    const rows = demoRows(sandbox, runtime.items);
    // Landscape 5 s and portrait 3 s on gen4_turbo (5 credits/s); the refused photo at its estimate at create.
    expect(rows.map((row) => row.credits)).toEqual(['25 ($0.25)', '15 ($0.15)', '25 ($0.25)']);
    expect(formatTable(rows).split('\n')[0]).toMatch(/^item +photo +model +duration +ratio +credits +outcome +video \/ error$/);
    for (const seed of runtime.items) {
      const reported = (await runtime.deps.ledger.read({ itemId: seed.item_id, attempt: 1 })).reported;
      expect(`${reported?.credits} ($${((reported?.credits ?? 0) / 100).toFixed(2)})`).toBe(rows[runtime.items.indexOf(seed)]?.credits);
      expect(reported?.credits_source).toBe('runway');
    }
  });

  it('creates exactly one Runway task per item', () => {
    const tasks = runtime.sandbox!.runway.tasks();
    expect(tasks).toHaveLength(3);
  });
});
