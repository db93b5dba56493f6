import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBlobFake, type BlobFake } from '../../sandbox/blob-fake.js';
import { UpstreamError } from '../../lib/errors.js';
import { createBlobLedger } from '../../lib/ledger/blob-ledger.js';
import type { JobKey, Ledger } from '../../lib/ledger/ledger.js';

const AT = '2026-11-01T00:00:00.000Z';
const KEY: JobKey = { itemId: 'x', attempt: 1 };
const MARKER = 'slots/gen4_turbo/x~1.json';

let fake: BlobFake;
let ledger: Ledger;
let envBefore: Record<string, string | undefined>;

// The real SDK, pointed at the fake through its documented variable, without retries of its own.
beforeEach(async () => {
  fake = await startBlobFake();
  const env = { VERCEL_BLOB_API_URL: fake.apiUrl, VERCEL_BLOB_RETRIES: '0' };
  envBefore = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
  Object.assign(process.env, env);
  ledger = createBlobLedger({ token: fake.token });
});
afterEach(async () => {
  for (const [name, value] of Object.entries(envBefore)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await fake.close();
});

async function ledgerErrorOf(promise: Promise<unknown>): Promise<UpstreamError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(UpstreamError);
  expect(error).toMatchObject({ service: 'ledger' });
  return error as UpstreamError;
}

describe('a Blob ledger reading what is in the store', () => {
  it('ignores blobs under an item that are not in an attempt folder', async () => {
    await ledger.claim({ itemId: 'x', attempt: 2 }, 'submitting', { at: AT });
    fake.setBlob('items/x/notes.json', '{}');
    fake.setBlob('items/x/07/task.json', '{}');

    expect(await ledger.latest('x')).toEqual({ itemId: 'x', attempt: 2, submitting: { at: AT } });
  });

  it('ignores a blob lying directly in the slots folder', async () => {
    await ledger.markSlot(KEY, 'gen4_turbo');
    fake.setBlob('slots/stray.json', '{}');

    const view = await ledger.slots(0);

    expect(view.inFlight.map((marker) => marker.model)).toEqual(['gen4_turbo']);
    expect(view.throttledAtMs).toEqual({});
  });
});

describe('a Blob ledger whose deletes fail', () => {
  it('fails to release a slot as retryable, naming the marker', async () => {
    await ledger.markSlot(KEY, 'gen4_turbo');
    fake.failNext('del', { type: 'status', status: 503, code: 'service_unavailable' });

    const error = await ledgerErrorOf(ledger.releaseSlot(KEY, 'gen4_turbo'));

    expect(error.message).toMatch(new RegExp(`^Vercel Blob del "${MARKER}": `));
    expect(error).toMatchObject({ status: 503, retryable: true });
    expect(fake.blobs().has(MARKER)).toBe(true);
  });

  it('still lists the slots when deleting stale markers fails, and deletes them on a later listing', async () => {
    await ledger.markSlot(KEY, 'gen4_turbo');
    fake.failNext('del', { type: 'status', status: 503, code: 'service_unavailable' });
    const future = Date.now() + 60_000;

    expect((await ledger.slots(future)).inFlight).toEqual([]);
    expect(fake.blobs().has(MARKER)).toBe(true);

    expect((await ledger.slots(future)).inFlight).toEqual([]);
    expect(fake.blobs().has(MARKER)).toBe(false);
  });
});

describe('the Blob ledger reachability check', () => {
  it('fails as retryable when the probe it just wrote cannot be read back', async () => {
    fake.failNext('get', { type: 'status', status: 404, code: 'not_found' });

    const error = await ledgerErrorOf(ledger.check());

    expect(error).toMatchObject({ message: 'Vercel Blob get "check/ledger-check.json": just written, yet not found', retryable: true });
    expect(fake.counts().put).toBe(1);
  });
});

describe('a Blob store that refuses a claim', () => {
  it('passes on a 429 without a wait when the store named none', async () => {
    fake.failNext('put', { type: 'status', status: 429, code: 'rate_limited' });

    const error = await ledgerErrorOf(ledger.claim(KEY, 'submitting', { at: AT }));

    expect(error).toMatchObject({ status: 429, retryable: true, retryAfterSeconds: undefined });
  });

  it.each([
    ['a missing store', 404, 'store_not_found', undefined, false],
    ['a suspended store', 403, 'store_suspended', undefined, false],
    ['a blob over the size limit', 413, 'file_too_large', 400, false],
    ['a content type the token does not allow', 400, 'content_type_not_allowed', 400, false],
    ['a pathname the token does not allow', 400, 'client_token_pathname_mismatch', 400, false],
    ['a bad request', 400, 'bad_request', 400, false],
    ['an unknown error', 500, 'unknown_error', undefined, true],
  ] as const)('classifies %s (%i %s) as status %s, retryable %s', async (_label, status, code, expectedStatus, retryable) => {
    fake.failNext('put', { type: 'status', status, code });

    const error = await ledgerErrorOf(ledger.claim(KEY, 'submitting', { at: AT }));

    expect(error).toMatchObject({ status: expectedStatus, retryable });
    expect(error.message).toMatch(/^Vercel Blob put "items\/x\/1\/submitting\.json": /);
    expect(fake.blobs().size).toBe(0);
  });
});
