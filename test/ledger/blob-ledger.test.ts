import { BlobRequestAbortedError } from '@vercel/blob';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADVANCED_OPERATIONS, startBlobFake, type BlobFake } from '../../sandbox/blob-fake.js';
import { UpstreamError } from '../../lib/errors.js';
import { BLOB_ADVANCED_OPS_PER_VIDEO, createBlobLedger } from '../../lib/ledger/blob-ledger.js';
import { createLedger } from '../../lib/ledger/index.js';
import { CLOSING_FACTS, type JobKey, type Ledger } from '../../lib/ledger/ledger.js';
import { ledgerContract } from './ledger-contract.js';

const AT = '2025-01-01T00:00:00.000Z';
const task = (id: string) => ({ runway_task_id: id, model: 'gen4_turbo', submitted_at: AT, duration: 5, ratio: '1280:720' });

/** Points the real SDK at the fake for one test; the env it changes is restored on close. */
async function startFakeStore(env: Record<string, string> = {}): Promise<{ fake: BlobFake; restore: () => Promise<void> }> {
  const fake = await startBlobFake();
  const changed = { VERCEL_BLOB_API_URL: fake.apiUrl, ...env };
  const before = Object.fromEntries(Object.keys(changed).map((name) => [name, process.env[name]]));
  Object.assign(process.env, changed);
  return {
    fake,
    async restore() {
      for (const [name, value] of Object.entries(before)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      await fake.close();
    },
  };
}

function advancedOps(fake: BlobFake): number {
  const counts = fake.counts();
  return ADVANCED_OPERATIONS.reduce((sum, operation) => sum + counts[operation], 0);
}

async function rejection(promise: Promise<unknown>): Promise<UpstreamError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(UpstreamError);
  return error as UpstreamError;
}

ledgerContract('Vercel Blob (fake store, real SDK)', async () => {
  const { fake, restore } = await startFakeStore();
  return {
    ledger: createBlobLedger({ token: fake.token }),
    close: restore,
    writeRaw: (pathname, text) => Promise.resolve(fake.setBlob(pathname, text)),
  };
});

describe('Blob ledger against the fake store', () => {
  let fake: BlobFake;
  let restore: () => Promise<void>;
  let ledger: Ledger;

  beforeEach(async () => {
    ({ fake, restore } = await startFakeStore({ VERCEL_BLOB_RETRIES: '0' }));
    ledger = createBlobLedger({ token: fake.token });
  });
  afterEach(async () => {
    await restore();
  });

  describe('one video from lease to report', () => {
    it(`costs at most ${BLOB_ADVANCED_OPS_PER_VIDEO} advanced operations: four puts, no list (the slot marker's delete is free), and two reads per step`, async () => {
      const itemId = 'video-1';
      const key: JobKey = { itemId, attempt: 1 };
      // As the worker goes: the first claim is the lookup of an item seen for the first time.
      expect(await ledger.claim(key, 'submitting', { at: AT })).toBe(true);
      await ledger.markSlot(key, 'gen4_turbo');
      expect(await ledger.claim(key, 'task', task('task-1'))).toBe(true);
      // The poll and the upload each read only the facts that close an attempt.
      for (const step of ['poll', 'upload']) expect(await ledger.read(key, CLOSING_FACTS), step).toEqual({ itemId, attempt: 1 });
      await ledger.releaseSlot(key, 'gen4_turbo');
      expect(await ledger.claim(key, 'reported', { status: 'completed', at: AT, video_storage_path: 'v/1.mp4', video_bytes: 10 })).toBe(true);

      const counts = fake.counts();
      expect(counts.list).toBe(0);
      expect(counts.put).toBe(4);
      expect(counts.get).toBe(4);
      expect(counts.del).toBe(1);
      expect(counts.copy).toBe(0);
      expect(advancedOps(fake)).toBeLessThanOrEqual(BLOB_ADVANCED_OPS_PER_VIDEO);
      expect(counts.head + counts.unsupported).toBe(0);
    });

    it('finds an item with history with one list', async () => {
      const key: JobKey = { itemId: 'video-3', attempt: 1 };
      expect(await ledger.claim(key, 'submitting', { at: AT })).toBe(true);
      expect(await ledger.claim(key, 'reported', { status: 'failed', at: AT })).toBe(true);
      const before = fake.counts();

      expect(await ledger.claim(key, 'submitting', { at: AT })).toBe(false);
      expect(await ledger.latest('video-3')).toMatchObject({ attempt: 1, reported: { status: 'failed' } });

      const after = fake.counts();
      expect(after.list - before.list).toBe(1);
    });

    it('reads every fact past the CDN cache', async () => {
      const key: JobKey = { itemId: 'video-2', attempt: 1 };
      await ledger.claim(key, 'task', task('task-1'));
      await ledger.read(key);
      await ledger.latest('video-2');
      const reads = fake.requests().filter((request) => request.operation === 'get');
      expect(reads.length).toBeGreaterThan(0);
      expect(reads.every((request) => request.cacheBypassed)).toBe(true);
    });
  });

  describe('what lands in the store', () => {
    it('is a private JSON blob per fact at items/<segment>/<attempt>/<fact>.json', async () => {
      await ledger.claim({ itemId: 'a/b.c ✓', attempt: 3 }, 'reported', { status: 'failed', at: AT });
      const blobs = fake.blobs();
      expect([...blobs.keys()]).toEqual(['items/a%2Fb%2Ec%20%E2%9C%93/3/reported.json']);
      const blob = [...blobs.values()][0];
      expect(blob?.contentType).toBe('application/json');
      expect(JSON.parse(blob?.body.toString('utf8') ?? '')).toMatchObject({ status: 'failed', at: AT });
    });
  });

  describe('a put whose response is lost after the write landed', () => {
    it("recognises its own write on the SDK's retry and reports the claim as won", async () => {
      process.env.VERCEL_BLOB_RETRIES = '1';
      const key: JobKey = { itemId: 'item-lost', attempt: 1 };
      fake.failNext('put', { type: 'drop-response' });
      expect(await ledger.claim(key, 'task', task('task-1'))).toBe(true);
      expect(fake.counts().put).toBe(2);
      expect((await ledger.read(key)).task).toEqual(task('task-1'));
      expect(await ledger.claim(key, 'task', task('task-2'))).toBe(false);
    });
  });

  describe('a store that fails', () => {
    it('turns a 503 into a retryable ledger error', async () => {
      fake.failNext('put', { type: 'status', status: 503, code: 'service_unavailable' });
      const error = await rejection(ledger.claim({ itemId: 'x', attempt: 1 }, 'submitting', { at: AT }));
      expect(error).toMatchObject({ service: 'ledger', status: 503, retryable: true });
      expect(fake.blobs().size).toBe(0);
    });

    it('passes on the wait a 429 asked for', async () => {
      fake.failNext('list', { type: 'status', status: 429, code: 'rate_limited', retryAfterSeconds: 7 });
      const error = await rejection(ledger.latest('x'));
      expect(error).toMatchObject({ service: 'ledger', status: 429, retryable: true, retryAfterSeconds: 7 });
    });

    it('treats a failing read as retryable', async () => {
      fake.failNext('get', { type: 'status', status: 500, code: 'internal_server_error' });
      const error = await rejection(ledger.read({ itemId: 'x', attempt: 1 }));
      expect(error).toMatchObject({ service: 'ledger', retryable: true });
    });

    it('does not retry a token the store refuses', async () => {
      const wrongToken = `vercel_blob_rw_${fake.storeId}_not-the-secret`;
      const refused = createBlobLedger({ token: wrongToken });
      const error = await rejection(refused.claim({ itemId: 'x', attempt: 1 }, 'submitting', { at: AT }));
      expect(error).toMatchObject({ service: 'ledger', status: 403, retryable: false });
      await expect(refused.check()).rejects.toMatchObject({ retryable: false });
    });

    it('gives up on a hung put at the deadline instead of waiting for it', async () => {
      const hurried = createBlobLedger({ token: fake.token, requestTimeoutMs: 200 });
      fake.failNext('put', { type: 'delay', ms: 5_000 });
      const started = Date.now();
      const error = await rejection(hurried.claim({ itemId: 'x', attempt: 1 }, 'submitting', { at: AT }));
      expect(error).toMatchObject({ service: 'ledger', retryable: true });
      expect(error.cause).toBeInstanceOf(BlobRequestAbortedError);
      expect(Date.now() - started).toBeLessThan(2_000);
    });

    it('gives up on a hung read at the deadline', async () => {
      const hurried = createBlobLedger({ token: fake.token, requestTimeoutMs: 200 });
      fake.failNext('get', { type: 'delay', ms: 5_000 });
      const error = await rejection(hurried.read({ itemId: 'x', attempt: 1 }));
      expect(error).toMatchObject({ service: 'ledger', retryable: true });
    });

    it('refuses a token that is not a read-write token up front', () => {
      expect(() => createBlobLedger({ token: 'not-a-token' })).toThrow(/read-write token/);
    });
  });

  describe('an item with more facts than one list page holds', () => {
    it('follows the cursor to find the highest attempt', async () => {
      for (let attempt = 1; attempt <= 1005; attempt++) {
        fake.setBlob(`items/busy/${attempt}/submitting.json`, JSON.stringify({ at: `${attempt}` }));
      }
      const latest = await ledger.latest('busy');
      expect(latest).toEqual({ itemId: 'busy', attempt: 1005, submitting: { at: '1005' } });
      expect(fake.counts().list).toBe(2);
    });
  });

  describe('createLedger with a Blob token', () => {
    it('keeps facts in the Blob store', async () => {
      const viaFactory = createLedger({ blobToken: fake.token, ledgerDir: '/nonexistent/never-used' });
      await viaFactory.claim({ itemId: 'y', attempt: 1 }, 'submitting', { at: AT });
      expect([...fake.blobs().keys()]).toEqual(['items/y/1/submitting.json']);
    });
  });
});
