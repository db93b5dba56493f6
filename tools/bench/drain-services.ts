import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { startBlobFake, type BlobFake } from '../../sandbox/blob-fake.js';
import { startSandbox, type Sandbox } from '../../sandbox/index.js';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import { BENCH_KEYS, serveCommands, type Progress, type ServicesStarted, type Span, type Timeline } from './drain-ipc.js';

/**
 * The drain benchmark's services process: the sandbox (app worker API, Runway, Supabase
 * storage) and the Vercel Blob fake that holds the worker's ledger, seeded with the queued
 * items. Kept apart from the worker so the worker process's CPU is the worker's alone.
 */

const startArgsSchema = z.object({
  dataDir: z.string(),
  photoFile: z.string(),
  items: z.number().int().positive(),
  generationMs: z.number().int().nonnegative(),
  outputBytes: z.number().int().positive(),
});
const timelineArgsSchema = z.object({ t0: z.number() });

interface Services {
  readonly sandbox: Sandbox;
  readonly blob: BlobFake;
}

let services: Services | undefined;

const running = (): Services => {
  if (services === undefined) throw new Error('services are not started');
  return services;
};

/** Item ids that sort in queue order; each item has its own photo path (same bytes). */
function seedItem(index: number): { itemId: string; groupId: string; photoId: string } {
  const suffix = String(index).padStart(12, '0');
  return {
    itemId: `70000000-0000-4000-8000-${suffix}`,
    groupId: `71000000-0000-4000-8000-${suffix}`,
    photoId: `72000000-0000-4000-8000-${suffix}`,
  };
}

/** Puts every photo into the `group-photos` bucket and every item, pending, into the app's queue, oldest first. */
async function seed(sandbox: Sandbox, photo: Buffer, count: number): Promise<void> {
  const base = Date.now() - count * 1000;
  for (let i = 0; i < count; i++) {
    const { itemId, groupId, photoId } = seedItem(i);
    const photoPath = `${groupId}/${photoId}_original.jpg`;
    await sandbox.storage.putObject('group-photos', photoPath, photo, 'image/jpeg');
    sandbox.app.addItem({
      item_id: itemId,
      group_id: groupId,
      photo_id: photoId,
      // 121 frames: 5 s on gen4_turbo, the default model.
      frame_num: 121,
      prompt: `The camera slowly pushes in on photo ${i} while leaves drift across the frame.`,
      photo_storage_path: photoPath,
      created_at: new Date(base + i * 1000).toISOString(),
    });
  }
}

async function start(raw: unknown): Promise<ServicesStarted> {
  if (services !== undefined) throw new Error('services already started');
  const args = startArgsSchema.parse(raw);
  const photo = await readFile(args.photoFile);
  const blob = await startBlobFake();
  const sandbox = await startSandbox({
    workerApiKey: BENCH_KEYS.worker,
    runwayApiKey: BENCH_KEYS.runway,
    dataDir: args.dataDir,
    // No concurrency limit: the organization reports 1000 per model.
    runway: { generationMs: args.generationMs, outputBytes: args.outputBytes },
    // Videos are written to disk, as a real store would hold them.
    discardVideoBytes: false,
  }).catch(async (error: unknown) => {
    await blob.close();
    throw error;
  });
  services = { sandbox, blob };
  await seed(sandbox, photo, args.items);
  return {
    nextApiUrl: sandbox.nextApiUrl,
    runwayApiUrl: sandbox.runwayApiUrl,
    blobApiUrl: blob.apiUrl,
    blobToken: blob.token,
    blobStoreHost: `${blob.storeId}.private.blob.vercel-storage.com`.toLowerCase(),
    blobOrigin: new URL(blob.apiUrl).origin,
  };
}

/** Cheap enough to ask every 100 ms: one pass over the items, no copies of their reports. */
function progress(): Progress {
  const { app } = running().sandbox;
  let completed = 0;
  let failed = 0;
  for (const item of app.items()) {
    if (item.status === 'completed') completed += 1;
    else if (item.status === 'failed') failed += 1;
  }
  let lastReportAt: number | null = null;
  for (const report of app.reports()) {
    if (!report.applied) continue;
    const at = Date.parse(report.at);
    lastReportAt = lastReportAt === null ? at : Math.max(lastReportAt, at);
  }
  return { reported: completed + failed, completed, failed, lastReportAt };
}

function spanOf(times: readonly number[], t0: number): Span {
  if (times.length === 0) return { count: 0, firstS: null, lastS: null };
  return { count: times.length, firstS: (Math.min(...times) - t0) / 1000, lastS: (Math.max(...times) - t0) / 1000 };
}

const pathOf = (request: RecordedRequest): string => request.path.split('?')[0] ?? '';

/** When the services saw each kind of request, relative to the drain's t0. */
function timeline(raw: unknown): Timeline {
  const { t0 } = timelineArgsSchema.parse(raw);
  const { sandbox } = running();
  const requests = sandbox.requests();
  const times = (match: (request: RecordedRequest) => boolean): number[] => requests.filter(match).map((request) => request.at);
  const runway = (method: string, test: (path: string) => boolean) => (request: RecordedRequest) =>
    request.service === 'runway' && request.method === method && test(pathOf(request));
  const app = (route: string) => (request: RecordedRequest) => request.service === 'app' && pathOf(request) === `/worker/${route}`;
  return {
    runwayCreates: spanOf(times(runway('POST', (path) => path === '/v1/image_to_video')), t0),
    runwayPolls: spanOf(times(runway('GET', (path) => path.startsWith('/v1/tasks/'))), t0),
    outputDownloads: spanOf(times(runway('GET', (path) => path.startsWith('/outputs/'))), t0),
    nextTaskCalls: spanOf(times(app('next-task')), t0),
    heartbeats: spanOf(times(app('heartbeat')), t0),
    videoUploads: spanOf(
      times((request) => request.service === 'storage' && request.method !== 'GET' && pathOf(request).includes('/generated-videos/')),
      t0,
    ),
    reports: spanOf(
      sandbox.app.reports().filter((report) => report.applied).map((report) => Date.parse(report.at)),
      t0,
    ),
    maxRunwayTasksActive: sandbox.runway.maxActiveAtOnce(),
  };
}

async function close(): Promise<null> {
  const current = services;
  services = undefined;
  if (current !== undefined) {
    await current.sandbox.close().catch(() => undefined);
    await current.blob.close().catch(() => undefined);
  }
  setImmediate(() => process.exit(0));
  return null;
}

serveCommands({
  start,
  progress: () => Promise.resolve(progress()),
  blobCounts: () => Promise.resolve(running().blob.counts()),
  timeline: (args) => Promise.resolve(timeline(args)),
  close,
});
