import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { z } from 'zod';
import { readImageInfo } from '../../lib/media/image-info.js';
import { startLocalRuntime } from '../../sandbox/demo/local-runtime.js';
import { startSandbox } from '../../sandbox/index.js';
import { readFixture, type SeedItem } from '../../sandbox/seed.js';
import { jpeg } from '../../test/support/images.js';
import { benchBackpressure } from './backpressure.js';
import { benchColdStart } from './cold-start.js';
import { benchIngest } from './ingest.js';
import { benchPickup } from './pickup.js';
import { benchPollSchedule } from './poll-schedule.js';
import { benchServerIdle } from './server-idle.js';

/**
 * `npm run bench`: figures, one `name: value unit` line each. Not a test: nothing here
 * passes or fails; read the numbers.
 */

const run = promisify(execFile);
const MB = 1024 * 1024;
const print = (name: string, value: number | string, unit = ''): void => {
  process.stdout.write(`${name}: ${typeof value === 'number' ? Number(value.toFixed(2)) : value}${unit ? ` ${unit}` : ''}\n`);
};

const transferSchema = z.object({ mode: z.string(), status: z.number(), bytes: z.number(), seconds: z.number(), baselineRss: z.number(), peakRss: z.number() });

async function runwayOutputUrl(runwayApiUrl: string, key: string): Promise<string> {
  const photo = await readFixture('landscape.jpg');
  const headers = { authorization: `Bearer ${key}`, 'x-runway-version': '2024-11-06', 'content-type': 'application/json' };
  const created = z.object({ id: z.string() }).parse(
    await (
      await fetch(`${runwayApiUrl}/v1/image_to_video`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ model: 'gen4_turbo', promptImage: `data:image/jpeg;base64,${photo.toString('base64')}`, ratio: '1280:720', duration: 5 }),
      })
    ).json(),
  );
  for (;;) {
    const task = z.object({ status: z.string(), output: z.array(z.string()).optional() }).parse(await (await fetch(`${runwayApiUrl}/v1/tasks/${created.id}`, { headers })).json());
    if (task.status === 'SUCCEEDED' && task.output?.[0]) return task.output[0];
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Streams a big output through the worker's upload path in a child process and reports its memory. */
async function benchUpload(sizeMb: number, mode: 'node-http' | 'fetch-duplex'): Promise<void> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bench-upload-'));
  const sandbox = await startSandbox({
    workerApiKey: 'bench',
    runwayApiKey: 'bench',
    dataDir,
    discardVideoBytes: true,
    maxUploadBytes: 2 * sizeMb * MB,
    runway: { generationMs: 10, outputBytes: sizeMb * MB },
  });
  try {
    const source = await runwayOutputUrl(sandbox.runwayApiUrl, 'bench');
    const target = sandbox.storage.signUpload('generated-videos', `videos/bench-${mode}.mp4`, 3600);
    const { stdout } = await run(path.resolve('node_modules/.bin/tsx'), [path.resolve('tools/bench/upload-memory.ts'), source, target, mode], {
      maxBuffer: MB,
    });
    const result = transferSchema.parse(JSON.parse(stdout.trim().split('\n').pop() ?? '{}'));
    const label = `upload_${sizeMb}mb_${mode.replace('-', '_')}`;
    print(`${label}_status`, result.status);
    print(`${label}_seconds`, result.seconds, 's');
    print(`${label}_throughput`, result.bytes / MB / result.seconds, 'MB/s');
    print(`${label}_rss_growth`, (result.peakRss - result.baselineRss) / MB, 'MB');
    print(`${label}_peak_rss`, result.peakRss / MB, 'MB');
  } finally {
    await sandbox.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Items from lease to report through the local runtime (sandbox Runway takes 1 s per task). */
async function benchThroughput(count: number): Promise<void> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bench-flow-'));
  const items: SeedItem[] = Array.from({ length: count }, (_, i) => {
    const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    return {
      item_id: id,
      group_id: 'bench-group',
      photo_id: `photo-${i}`,
      prompt: `A slow, gentle camera push-in on a family photo, number ${i}.`,
      frame_num: 121,
      photo_storage_path: `bench-group/photo-${i}_original.jpg`,
      photo: i % 2 === 0 ? 'landscape.jpg' : 'portrait-exif6.jpg',
      expectation: 'completed',
    };
  });
  const runtime = await startLocalRuntime({
    env: { MAX_TASKS_PER_RUN: '20', LOCAL_CRON_SECONDS: '1', CRON_SECRET: 'bench' },
    port: 0,
    dataDir,
    items,
    log: pino({ level: 'silent' }),
    qstashTimeScale: 0.02,
    sandbox: { runway: { generationMs: 1000 } },
  });
  const started = performance.now();
  try {
    const sandbox = runtime.sandbox!;
    while (!items.every((item) => sandbox.app.item(item.item_id)?.status === 'completed')) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const seconds = (performance.now() - started) / 1000;
    const cronRuns = sandbox.requests().filter((r) => r.service === 'app' && r.path.endsWith('/next-task')).length;
    print(`flow_${count}_items_seconds`, seconds, 's');
    print(`flow_${count}_items_per_second`, count / seconds, 'items/s');
    print(`flow_${count}_next_task_calls`, cronRuns);
    print(`flow_${count}_qstash_messages`, runtime.qstash?.stats().published ?? 0);
    print(`flow_${count}_qstash_messages_per_item`, (runtime.qstash?.stats().published ?? 0) / count);
  } finally {
    await runtime.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

function benchImageInfo(): void {
  const photo = jpeg({ width: 4032, height: 3024, orientation: 6, paddingBytes: 25_000_000 });
  const rounds = 200;
  const started = performance.now();
  for (let i = 0; i < rounds; i++) readImageInfo(photo);
  print('image_info_25mb_jpeg', (performance.now() - started) / rounds, 'ms/call');
}

benchPollSchedule(print);
benchImageInfo();
await benchServerIdle(print);
await benchIngest(print);
await benchThroughput(50);
await benchBackpressure(print);
await benchPickup(print);
await benchColdStart(print);
await benchUpload(300, 'node-http');
await benchUpload(300, 'fetch-duplex');
