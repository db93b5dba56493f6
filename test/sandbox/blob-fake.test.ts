import {
  BlobAccessError,
  BlobError,
  BlobNotFoundError,
  BlobPreconditionFailedError,
  copy,
  del,
  get,
  head,
  list,
  put,
} from '@vercel/blob';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBlobFake, type BlobFake } from '../../sandbox/blob-fake.js';

async function text(result: Awaited<ReturnType<typeof get>>): Promise<string | undefined> {
  if (result === null || result.statusCode !== 200) return undefined;
  return new Response(result.stream).text();
}

describe('Blob fake driven by the real @vercel/blob client', () => {
  let fake: BlobFake;
  let apiUrlBefore: string | undefined;
  let options: { access: 'private'; token: string };

  beforeEach(async () => {
    fake = await startBlobFake();
    apiUrlBefore = process.env.VERCEL_BLOB_API_URL;
    process.env.VERCEL_BLOB_API_URL = fake.apiUrl;
    process.env.VERCEL_BLOB_RETRIES = '0';
    options = { access: 'private', token: fake.token };
  });
  afterEach(async () => {
    if (apiUrlBefore === undefined) delete process.env.VERCEL_BLOB_API_URL;
    else process.env.VERCEL_BLOB_API_URL = apiUrlBefore;
    delete process.env.VERCEL_BLOB_RETRIES;
    await fake.close();
  });

  describe('put', () => {
    it('stores the body and answers with the store URL of the blob', async () => {
      const result = await put('dir/a b.json', '{"x":1}', { ...options, contentType: 'application/json' });
      expect(result).toMatchObject({
        pathname: 'dir/a b.json',
        url: `https://${fake.storeId}.private.blob.vercel-storage.com/dir/a%20b.json`,
        contentType: 'application/json',
      });
      expect(fake.blobs().get('dir/a b.json')?.body.toString()).toBe('{"x":1}');
    });

    it('refuses an existing pathname unless overwriting is allowed', async () => {
      await put('a.txt', 'one', options);
      await expect(put('a.txt', 'two', options)).rejects.toBeInstanceOf(BlobError);
      await put('a.txt', 'three', { ...options, allowOverwrite: true });
      expect(fake.blobs().get('a.txt')?.body.toString()).toBe('three');
    });

    it('overwrites only when ifMatch names the current etag', async () => {
      const first = await put('a.txt', 'one', options);
      const second = await put('a.txt', 'two', { ...options, ifMatch: first.etag });
      await expect(put('a.txt', 'three', { ...options, ifMatch: first.etag })).rejects.toBeInstanceOf(
        BlobPreconditionFailedError,
      );
      expect(second.etag).not.toBe(first.etag);
      expect(fake.blobs().get('a.txt')?.body.toString()).toBe('two');
    });

    it('adds a random suffix before the extension when asked', async () => {
      const result = await put('pic.png', 'x', { ...options, addRandomSuffix: true });
      expect(result.pathname).toMatch(/^pic-[\w-]+\.png$/);
    });

    it('refuses a public put into a private store', async () => {
      await expect(put('a.txt', 'x', { access: 'public', token: fake.token })).rejects.toBeInstanceOf(BlobError);
    });

    it('refuses a wrong token', async () => {
      const token = `vercel_blob_rw_${fake.storeId}_wrong`;
      await expect(put('a.txt', 'x', { access: 'private', token })).rejects.toBeInstanceOf(BlobAccessError);
      expect(fake.blobs().size).toBe(0);
    });
  });

  describe('get', () => {
    it('reads private content from the store host, by pathname or URL', async () => {
      const { url } = await put('dir/file.txt', 'hello', options);
      expect(await text(await get('dir/file.txt', { ...options, useCache: false }))).toBe('hello');
      expect(await text(await get(url, options))).toBe('hello');
      const reads = fake.requests().filter((request) => request.operation === 'get');
      expect(reads.map((request) => request.cacheBypassed)).toEqual([true, false]);
    });

    it('answers null for a missing blob', async () => {
      expect(await get('missing.txt', options)).toBeNull();
    });

    it('answers 304 when the etag still matches', async () => {
      const { etag } = await put('a.txt', 'x', options);
      expect((await get('a.txt', { ...options, ifNoneMatch: etag }))?.statusCode).toBe(304);
    });

    it('refuses a wrong token', async () => {
      await put('a.txt', 'x', options);
      const token = `vercel_blob_rw_${fake.storeId}_wrong`;
      await expect(get('a.txt', { access: 'private', token })).rejects.toBeInstanceOf(BlobError);
    });
  });

  describe('list', () => {
    it('pages through a prefix with limit and cursor, in pathname order', async () => {
      for (const name of ['p/3', 'p/1', 'p/2', 'q/1']) await put(name, 'x', options);
      const first = await list({ ...options, prefix: 'p/', limit: 2 });
      expect(first.blobs.map((blob) => blob.pathname)).toEqual(['p/1', 'p/2']);
      expect(first.hasMore).toBe(true);
      const second = await list({ ...options, prefix: 'p/', limit: 2, ...(first.cursor ? { cursor: first.cursor } : {}) });
      expect(second.blobs.map((blob) => blob.pathname)).toEqual(['p/3']);
      expect(second.hasMore).toBe(false);
    });

    it('folds sub-folders when asked', async () => {
      for (const name of ['r/a/1', 'r/a/2', 'r/b/1', 'r/top']) await put(name, 'x', options);
      const folded = await list({ ...options, prefix: 'r/', mode: 'folded' });
      expect(folded.folders).toEqual(['r/a/', 'r/b/']);
      expect(folded.blobs.map((blob) => blob.pathname)).toEqual(['r/top']);
    });
  });

  describe('head, copy and del', () => {
    it('describe, duplicate and remove blobs', async () => {
      const { url } = await put('src.txt', 'body', { ...options, contentType: 'text/plain' });
      expect(await head(url, options)).toMatchObject({ pathname: 'src.txt', size: 4, contentType: 'text/plain' });
      await copy(url, 'dst.txt', options);
      expect(await text(await get('dst.txt', options))).toBe('body');
      await del(['src.txt', url], options);
      await expect(head('src.txt', options)).rejects.toBeInstanceOf(BlobNotFoundError);
      expect([...fake.blobs().keys()]).toEqual(['dst.txt']);
      expect(fake.counts()).toMatchObject({ put: 1, copy: 1, head: 2, del: 1, get: 1, list: 0 });
    });
  });

  describe('two fakes in one process', () => {
    it('each serve the reads of their own store', async () => {
      const other = await startBlobFake();
      try {
        process.env.VERCEL_BLOB_API_URL = other.apiUrl;
        await put('b.txt', 'other', { access: 'private', token: other.token });
        expect(await text(await get('b.txt', { access: 'private', token: other.token }))).toBe('other');
        expect(fake.counts().get).toBe(0);
        expect(other.counts().get).toBe(1);
      } finally {
        await other.close();
      }
    });
  });
});
