import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { readImageInfo } from '../../lib/media/image-info.js';
import { startLocalRuntime } from '../../sandbox/demo/local-runtime.js';
import type { SeedItem } from '../../sandbox/seed.js';
import { jpeg } from '../../test/support/images.js';
import { benchBackpressure } from './backpressure.js';
import { benchColdStart } from './cold-start.js';
import { benchDrain } from './drain.js';
import { benchIngest } from './ingest.js';
import { benchPickup } from './pickup.js';
import { benchPollSchedule } from './poll-schedule.js';
import { benchServerIdle } from './server-idle.js';
import { benchUploadMemory } from './upload.js';

/**
 * `npm run bench`: figures, one `name: value unit` line each. Not a test: nothing here
 * passes or fails; read the numbers.
 */

/** MAX_TASKS_PER_RUN for the drain of 500 (the reason is printed with the settings). */
const DRAIN_LEASES_PER_RUN = 50;

const print = (name: string, value: number | string, unit = ''): void => {
  process.stdout.write(`${name}: ${typeof value === 'number' ? Number(value.toFixed(2)) : value}${unit ? ` ${unit}` : ''}\n`);
};

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
await benchUploadMemory(print);
await benchDrain(print, {
  leasesPerRun: DRAIN_LEASES_PER_RUN,
  leasesReason: `a busy app's setting: at the default 10 a run leases 10 in about 0.3 s and the next comes 1 s later, so 500 items take about 65 s to lease (78 s to drain, measured); ${DRAIN_LEASES_PER_RUN} a run lease them in about 25 s`,
});
