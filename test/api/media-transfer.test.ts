import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { afterEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox, type SandboxOptions } from '../../sandbox/index.js';
import { interpretUploadAnswer, putStream } from '../../lib/clients/media-transfer.js';
import { UpstreamError } from '../../lib/errors.js';
import { until } from '../support/wait.js';

const servers: http.Server[] = [];
const sandboxes: { sandbox: Sandbox; dataDir: string }[] = [];

async function storage(options: Partial<SandboxOptions> = {}): Promise<Sandbox> {
  const dataDir = await mkdtemp(join(tmpdir(), 'media-transfer-'));
  const sandbox = await startSandbox({ workerApiKey: 'k', runwayApiKey: 'r', dataDir, ...options });
  sandboxes.push({ sandbox, dataDir });
  return sandbox;
}

const VIDEO_PATH = 'videos/item-1.mp4';
const MB = 1024 * 1024;

const upload = (url: string, source: Readable, contentLength: number | undefined) =>
  putStream(url, source, { contentLength, timeoutMs: 10_000, signal: new AbortController().signal });

function storagePuts(sandbox: Sandbox) {
  return sandbox.requests().filter((request) => request.service === 'storage' && request.method === 'PUT');
}

function sha256Of(size: number): string {
  const hash = createHash('sha256');
  for (const chunk of chunksOf(size)) hash.update(chunk);
  return hash.digest('hex');
}

/** The chunks `videoStream(size)` yields, for hashing what should have been stored. */
function* chunksOf(size: number): Generator<Buffer> {
  let sent = 0;
  while (sent < size) {
    const chunk = Buffer.alloc(Math.min(64 * 1024, size - sent), 7);
    if (sent === 0) chunk.write('\0\0\0\x18ftypmp42', 'latin1');
    sent += chunk.length;
    yield chunk;
  }
}

async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The same bytes, one 16 KB chunk every `gapMs` (0: every turn of the event loop). */
function tricklingVideo(size: number, gapMs: number): Readable {
  const chunks = [...chunksOf(size)].flatMap((chunk) => [0, 1, 2, 3].map((part) => chunk.subarray(part * 16 * 1024, (part + 1) * 16 * 1024))).filter((chunk) => chunk.length > 0);
  return new Readable({
    read() {
      const next = chunks.shift();
      setTimeout(() => this.push(next ?? null), gapMs);
    },
  });
}

/** An MP4-typed stream of `size` bytes, made on the fly. */
function videoStream(size: number): Readable {
  return Readable.from(chunksOf(size), { objectMode: false });
}

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  for (const { sandbox, dataDir } of sandboxes.splice(0)) {
    await sandbox.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});

describe('a streamed upload that storage refuses before reading the body', () => {
  it('returns storage’s answer instead of a cut-off error', async () => {
    const url = await serve((_req, res) => {
      const body = JSON.stringify({ statusCode: '400', error: 'InvalidJWT', message: '"exp" claim timestamp check failed' });
      res.writeHead(400, { 'content-type': 'application/json', connection: 'close' });
      res.end(body, () => res.socket?.destroy());
    });

    const answer = await putStream(`${url}/storage/v1/object/upload/sign/generated-videos/videos/x.mp4?token=t`, videoStream(20 * 1024 * 1024), {
      contentLength: 20 * 1024 * 1024,
      timeoutMs: 10_000,
      signal: new AbortController().signal,
    });

    expect(answer.status).toBe(400);
    expect(interpretUploadAnswer(answer.status, answer.body)).toEqual({ kind: 'expired-token' });
  });
});

describe('a streamed upload that storage accepts', () => {
  it('sends every byte with Content-Type video/mp4 and the Content-Length', async () => {
    let received = 0;
    let headers: http.IncomingHttpHeaders = {};
    const url = await serve((req, res) => {
      headers = req.headers;
      req.on('data', (chunk: Buffer) => (received += chunk.length));
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ Key: 'generated-videos/videos/x.mp4' }));
      });
    });
    const size = 3 * 1024 * 1024 + 17;

    const answer = await putStream(`${url}/upload`, videoStream(size), { contentLength: size, timeoutMs: 10_000, signal: new AbortController().signal });

    expect(answer).toMatchObject({ status: 200, bytes: size });
    expect(received).toBe(size);
    expect(headers['content-type']).toBe('video/mp4');
    expect(headers['content-length']).toBe(String(size));
    expect(interpretUploadAnswer(answer.status, answer.body)).toEqual({ kind: 'stored' });
  });
});

describe('a streamed upload into storage that refuses at once and closes the connection (contract §6)', () => {
  it('returns the expired-token answer, though storage read none of the 20 MB the worker was still sending', async () => {
    const sandbox = await storage();

    const answer = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH, -1), videoStream(20 * MB), 20 * MB);

    expect(interpretUploadAnswer(answer.status, answer.body)).toEqual({ kind: 'expired-token' });
    expect(answer.bytes).toBeLessThan(20 * MB);
    expect(storagePuts(sandbox).map((request) => request.bytes)).toEqual([0]);
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
  });

  it('returns the duplicate answer when the object already exists', async () => {
    const sandbox = await storage();
    await sandbox.storage.putObject('generated-videos', VIDEO_PATH, Buffer.from('the first video'));

    const answer = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), videoStream(8 * MB), 8 * MB);

    expect(interpretUploadAnswer(answer.status, answer.body)).toEqual({ kind: 'duplicate' });
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)?.size).toBe('the first video'.length);
  });

  it('returns the too-large answer to a declared size over the limit', async () => {
    const sandbox = await storage({ maxUploadBytes: 2 * MB });

    const answer = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), videoStream(8 * MB), 8 * MB);

    expect(interpretUploadAnswer(answer.status, answer.body)).toEqual({ kind: 'too-large' });
    expect(storagePuts(sandbox).map((request) => request.bytes)).toEqual([0]);
  });

  // Storage answers 413 and resets the connection mid-body. On a loaded machine the reset can
  // land before Node has read the answer, which then counts as a retryable cut-off (QStash
  // delivers again): seen about once in 15 runs with both cores busy. Asked up to three times,
  // the test still fails when the answer is never read.
  it('returns the too-large answer when a body of unknown length grows past the limit', { retry: 2 }, async () => {
    const sandbox = await storage({ maxUploadBytes: 2 * MB });

    const answer = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), videoStream(40 * MB), undefined);

    expect(interpretUploadAnswer(answer.status, answer.body)).toEqual({ kind: 'too-large' });
    expect(answer.bytes).toBeLessThan(40 * MB);
    expect(storagePuts(sandbox)[0]?.headers['transfer-encoding']).toBe('chunked');
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
  });

  it('reads the answer every time, over many refused uploads in a row', async () => {
    const sandbox = await storage();
    const verdicts = [];
    for (let round = 0; round < 25; round += 1) {
      const answer = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH, -1), videoStream(4 * MB), 4 * MB);
      verdicts.push(interpretUploadAnswer(answer.status, answer.body).kind);
    }
    expect(new Set(verdicts)).toEqual(new Set(['expired-token']));
  });

  it('reads the answer every time when the source is a download, whose chunks arrive as storage resets the connection', async () => {
    const sandbox = await storage();
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(8 * MB) });
      videoStream(8 * MB).pipe(res);
    });
    const verdicts = [];
    for (let round = 0; round < 10; round += 1) {
      const download = await fetch(`${origin}/output.mp4`);
      const source = Readable.fromWeb(download.body as WebReadableStream<Uint8Array>);
      const answer = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH, -1), source, 8 * MB);
      verdicts.push(interpretUploadAnswer(answer.status, answer.body).kind);
    }
    expect(verdicts.filter((kind) => kind !== 'expired-token')).toEqual([]);
  });

  it('reads the answer every time from a source that trickles in, as a download over a network does', async () => {
    const sandbox = await storage();
    const verdicts = [];
    for (let round = 0; round < 25; round += 1) {
      const answer = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH, -1), tricklingVideo(2 * MB, round % 4), 2 * MB);
      verdicts.push(interpretUploadAnswer(answer.status, answer.body).kind);
    }
    expect(verdicts.filter((kind) => kind !== 'expired-token')).toEqual([]);
  });
});

describe('a streamed upload into storage that accepts it', () => {
  it('stores every byte and returns the Key', async () => {
    const sandbox = await storage();
    const size = 5 * MB + 3;

    const answer = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), videoStream(size), size);

    expect(answer).toMatchObject({ status: 200, bytes: size });
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)).toMatchObject({ size, sha256: sha256Of(size), contentType: 'video/mp4' });
  });

  it('stores bodies of every size around its send batches, from small chunks or one large one', async () => {
    const sandbox = await storage();
    const sizes = [1, MB - 1, MB, MB + 1, 2 * MB, 2 * MB + 1, 5 * MB];
    for (const [index, size] of sizes.entries()) {
      const path = `videos/size-${index}.mp4`;
      const answer = await upload(sandbox.storage.signUpload('generated-videos', path), videoStream(size), size);
      expect(answer).toMatchObject({ status: 200, bytes: size });
      expect(sandbox.storage.object('generated-videos', path)).toMatchObject({ size, sha256: sha256Of(size) });
    }
    const whole = Buffer.concat([...chunksOf(5 * MB)]);
    const answer = await upload(sandbox.storage.signUpload('generated-videos', 'videos/one-chunk.mp4'), Readable.from([whole]), whole.length);
    expect(answer).toMatchObject({ status: 200, bytes: whole.length });
    const unknownLength = await upload(sandbox.storage.signUpload('generated-videos', 'videos/chunked.mp4'), videoStream(3 * MB + 7), undefined);
    expect(unknownLength).toMatchObject({ status: 200, bytes: 3 * MB + 7 });
    expect(sandbox.storage.object('generated-videos', 'videos/chunked.mp4')).toMatchObject({ size: 3 * MB + 7, sha256: sha256Of(3 * MB + 7) });
  });

  it('fails as cut off, retryable, when storage stores the upload but its answer is lost', async () => {
    const sandbox = await storage({ faults: { storage: { lostAnswerRate: 1 } } });

    const failure = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), videoStream(MB), MB).then(
      () => undefined,
      (error: unknown) => error,
    );

    expect(failure).toBeInstanceOf(UpstreamError);
    expect(failure).toMatchObject({ service: 'storage', retryable: true });
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)?.size).toBe(MB);
  });
});

describe('a streamed upload whose source does not match its Content-Length', () => {
  it('never reaches storage with a small source that ends short', async () => {
    const sandbox = await storage();

    const failure = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), videoStream(1000), 1010).then(
      () => undefined,
      (error: unknown) => error,
    );

    expect(failure).toMatchObject({ service: 'output', message: 'output: got 1000 of 1010 bytes' });
    expect(storagePuts(sandbox)).toEqual([]);
  });

  it('breaks off a source that ends short, so storage stores nothing', async () => {
    const sandbox = await storage();

    const failure = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), videoStream(3 * MB - 10), 3 * MB).then(
      () => undefined,
      (error: unknown) => error,
    );

    expect(failure).toBeInstanceOf(UpstreamError);
    expect(failure).toMatchObject({ service: 'output', message: `output: got ${3 * MB - 10} of ${3 * MB} bytes` });
    await until(() => storagePuts(sandbox).length === 1, 'storage to record the PUT');
    expect(storagePuts(sandbox)[0]?.bytes).toBeLessThan(3 * MB);
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
  });

  it('breaks off a source that runs long before storage has the declared length, so storage stores nothing', async () => {
    const sandbox = await storage();

    const failure = await upload(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), videoStream(3 * MB + 10), 3 * MB).then(
      () => undefined,
      (error: unknown) => error,
    );

    expect(failure).toMatchObject({ service: 'output', message: `output: got ${3 * MB + 10} of ${3 * MB} bytes` });
    await until(() => storagePuts(sandbox).length === 1, 'storage to record the PUT');
    expect(storagePuts(sandbox)[0]?.bytes).toBeLessThan(3 * MB);
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
  });
});
