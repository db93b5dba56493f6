import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADVANCED_OPERATIONS, startBlobFake, type BlobFake } from '../../dev/blob-fake.js';
import { allReported } from '../../dev/demo-report.js';
import { startLocalRuntime, type LocalRuntime } from '../../dev/local-runtime.js';
import { BLOB_ADVANCED_OPS_PER_VIDEO } from '../../lib/ledger/blob-ledger.js';
import { until } from '../support/wait.js';

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

  it(`spends at most ${BLOB_ADVANCED_OPS_PER_VIDEO} advanced Blob operations per item`, () => {
    const counts = fake.counts();
    const advanced = ADVANCED_OPERATIONS.reduce((sum, operation) => sum + counts[operation], 0);
    expect(advanced).toBeGreaterThan(0);
    expect(advanced).toBeLessThanOrEqual(BLOB_ADVANCED_OPS_PER_VIDEO * runtime.items.length);
    // Two videos: list + submitting + task + uploaded + reported; the refused photo: no upload.
    expect(counts.put).toBe(4 + 4 + 3);
    expect(counts.list).toBe(3);
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
