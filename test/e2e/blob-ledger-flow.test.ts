import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADVANCED_OPERATIONS, startBlobFake, type BlobFake } from '../../sandbox/blob-fake.js';
import { allReported } from '../../sandbox/demo/report.js';
import { startLocalRuntime, type LocalRuntime } from '../../sandbox/demo/local-runtime.js';
import { BLOB_ADVANCED_OPS_PER_VIDEO } from '../../lib/ledger/blob-ledger.js';
import { until } from '../support/wait.js';

/** The `prefix` a list request asked for. */
function prefixOf(path: string): string | null {
  return new URL(path, 'http://blob.invalid').searchParams.get('prefix');
}

describe('the demo items with the job ledger in Vercel Blob (real SDK, loopback fake store)', () => {
  let fake: BlobFake;
  let runtime: LocalRuntime;
  let dataDir: string;
  const previousApiUrl = process.env.VERCEL_BLOB_API_URL;

  beforeAll(async () => {
    fake = await startBlobFake();
    process.env.VERCEL_BLOB_API_URL = fake.apiUrl;
    dataDir = await mkdtemp(path.join(tmpdir(), 'runway-blob-flow-'));
    runtime = await startLocalRuntime({
      env: { LOCAL_CRON_SECONDS: '1', CRON_SECRET: 'blob-flow-secret' },
      port: 0,
      dataDir,
      log: pino({ level: 'silent' }),
      qstashTimeScale: 0.02,
      sandbox: { runway: { generationMs: 400 } },
      ledgerBlobToken: fake.token,
    });
    await until(() => allReported(runtime.sandbox!, runtime.items), 'every item to be reported', 30_000);
  });

  afterAll(async () => {
    await runtime.close();
    await fake.close();
    if (previousApiUrl === undefined) delete process.env.VERCEL_BLOB_API_URL;
    else process.env.VERCEL_BLOB_API_URL = previousApiUrl;
    await rm(dataDir, { recursive: true, force: true });
  });

  it('reports every item once', () => {
    for (const seed of runtime.items) expect(runtime.sandbox!.app.reports(seed.item_id)).toHaveLength(1);
  });

  it(`spends at most ${BLOB_ADVANCED_OPS_PER_VIDEO} advanced Blob operations per item, besides one slot listing per cron run`, () => {
    const advanced = fake.requests().filter((request) => ADVANCED_OPERATIONS.includes(request.operation));
    const slotListings = advanced.filter((request) => request.operation === 'list' && prefixOf(request.path) === 'slots/');
    const perItem = advanced.filter((request) => !slotListings.includes(request));
    expect(perItem.length).toBeGreaterThan(0);
    expect(perItem.length).toBeLessThanOrEqual(BLOB_ADVANCED_OPS_PER_VIDEO * runtime.items.length);
    // Each item, the refused photo too: submitting + slot marker + task + reported, and no
    // list (a first claim is the lookup). Every slot marker is deleted again.
    expect(perItem.filter((request) => request.operation === 'put')).toHaveLength(4 * 3);
    expect(perItem.filter((request) => request.operation === 'list')).toHaveLength(0);
    expect(fake.counts().del).toBe(3);
    expect([...fake.blobs().keys()].filter((pathname) => pathname.startsWith('slots/'))).toEqual([]);
    // One listing per cron run that leased something; idle runs make no Blob call.
    expect(slotListings.length).toBeGreaterThan(0);
    expect(slotListings.length).toBeLessThanOrEqual(runtime.items.length);
  });

  it('reads two facts per poll and per upload, and none to price a video or to take on a new item', () => {
    const reads = fake.requests().filter((request) => request.operation === 'get');
    const deliveries = (pathname: string): number =>
      (runtime.qstash?.messages() ?? [])
        .filter((message) => new URL(message.url).pathname === pathname)
        .reduce((sum, message) => sum + message.attempts.length, 0);
    const steps = deliveries('/api/runway-callback') + deliveries('/api/step-upload');
    expect(steps).toBeGreaterThanOrEqual(runtime.items.length * 2 - 1);
    expect(reads.length).toBe(2 * steps);
    expect(reads.every((request) => /\/(reported|abandoned)\.json$/.test(new URL(request.path, 'http://blob.invalid').pathname))).toBe(true);
  });

  it('reads the ledger fresh, never from a cache', () => {
    const reads = fake.requests().filter((request) => request.operation === 'get');
    expect(reads.length).toBeGreaterThan(0);
    expect(reads.every((request) => request.cacheBypassed)).toBe(true);
  });

  it('keeps the facts under items/<item_id>/<attempt>/', () => {
    const paths = [...fake.blobs().keys()];
    for (const seed of runtime.items) {
      expect(paths).toContain(`items/${seed.item_id}/1/task.json`);
      expect(paths).toContain(`items/${seed.item_id}/1/reported.json`);
    }
  });
});
