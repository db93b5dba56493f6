import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { NOT_VIDEO, openOutput, putStream } from '../../lib/clients/media-transfer.js';
import { UpstreamError } from '../../lib/errors.js';
import { until } from '../support/wait.js';
import { closeLoopbacks, rejectionOf, serveScript } from './loopback.js';

const MB = 1024 * 1024;
/** Opens like an MP4 (`ftyp` at byte 4), then filler. */
const MP4_HEAD = Buffer.from('\0\0\0\x18ftypmp42', 'latin1');

const servers: http.Server[] = [];
afterEach(async () => {
  await closeLoopbacks();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** An MP4-typed body of `size` bytes, one 64 KB chunk at a time, each chunk different. */
function* videoChunks(size: number): Generator<Buffer> {
  for (let sent = 0, index = 0; sent < size; index += 1) {
    const chunk = Buffer.alloc(Math.min(64 * 1024, size - sent), index % 251);
    if (sent === 0) MP4_HEAD.copy(chunk, 0, 0, Math.min(MP4_HEAD.length, chunk.length));
    sent += chunk.length;
    yield chunk;
  }
}

function sha256Of(chunks: Iterable<Buffer>): string {
  const hash = createHash('sha256');
  for (const chunk of chunks) hash.update(chunk);
  return hash.digest('hex');
}

async function serve(handler: http.RequestListener): Promise<{ url: string; closedConnections: () => number }> {
  let closed = 0;
  const server = http.createServer(handler);
  server.on('connection', (socket) => socket.once('close', () => (closed += 1)));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, closedConnections: () => closed };
}

/** Serves `size` video bytes with their Content-Length, writing only as fast as the client reads; counts what it wrote. */
async function videoOrigin(size: number): Promise<{ url: string; written: () => number; closedConnections: () => number }> {
  let written = 0;
  const origin = await serve((_req, res) => {
    res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(size) });
    const counted = Readable.from(videoChunks(size)).on('data', (chunk: Buffer) => (written += chunk.length));
    counted.pipe(res);
  });
  return { ...origin, written: () => written };
}

/** Storage that reads the upload as it comes, keeps its hash, and answers 200 once the whole body is in. */
async function hashingStorage(options: { readPaused?: boolean } = {}) {
  let received = 0;
  let answered = false;
  let upload: http.IncomingMessage | undefined;
  const hash = createHash('sha256');
  const storage = await serve((req, res) => {
    upload = req;
    if (options.readPaused === true) req.pause();
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => {
      answered = true;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"Key":"generated-videos/videos/x.mp4"}');
    });
  });
  return {
    ...storage,
    received: () => received,
    answered: () => answered,
    sha256: () => hash.digest('hex'),
    resume: () => upload?.resume(),
  };
}

const NO_ABORT = new AbortController().signal;
const open = (url: string, timeoutMs = 5_000, signal = NO_ABORT) => openOutput(url, timeoutMs, signal);

async function upstreamErrorOf(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await rejectionOf(promise);
  expect(error).toBeInstanceOf(UpstreamError);
  return error as UpstreamError;
}

/** Reads `body` to its end, or to its error. */
async function drain(body: Readable): Promise<{ bytes: Buffer; error: unknown }> {
  const chunks: Buffer[] = [];
  try {
    await pipeline(
      body,
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          chunks.push(chunk);
          done();
        },
      }),
    );
    return { bytes: Buffer.concat(chunks), error: undefined };
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error };
  }
}

describe('the Runway output answering with a redirect', () => {
  it.each([301, 302, 303, 307, 308])('refuses a %i as a network failure and does not follow it', async (status) => {
    const elsewhere = await serveScript((_request, res) => res.end('the video'));
    const origin = await serveScript((_request, res) => {
      res.writeHead(status, { location: `${elsewhere.url}/out.mp4` });
      res.end();
    });

    const error = await upstreamErrorOf(open(`${origin.url}/out.mp4`));

    expect(error).toMatchObject({ service: 'output', message: 'output: download failed (network error)', retryable: true, code: 'network' });
    expect(String((error.cause as Error).message)).toContain(`redirect (${status})`);
    expect(elsewhere.received).toEqual([]);
  });
});

describe('the Runway output arriving in pieces', () => {
  it('reads the MP4 signature across reads that split it, and yields every byte once, in order', async () => {
    const body = Buffer.concat([...videoChunks(200_000)]);
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(body.length) });
      // Three writes apart in time, so the client reads 5, then 4, then the rest.
      res.write(body.subarray(0, 5));
      setTimeout(() => res.write(body.subarray(5, 9)), 30);
      setTimeout(() => res.end(body.subarray(9)), 60);
    });

    const output = await open(`${origin.url}/out.mp4`);
    const read = await drain(output.body);

    expect(read.error).toBeUndefined();
    expect(output.length).toBe(body.length);
    expect(read.bytes.equals(body)).toBe(true);
  });

  it('refuses as not a video an output shorter than the MP4 signature', async () => {
    const origin = await serveScript((_request, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': '8' });
      res.end(MP4_HEAD.subarray(0, 8));
    });

    const error = await upstreamErrorOf(open(`${origin.url}/out.mp4`));

    expect(error).toMatchObject({ status: 200, retryable: false, code: NOT_VIDEO });
  });
});

describe('the Runway output stopping or stopped part-way', () => {
  it('fails the body with the timeout when the output stops coming after its first bytes, the timeout covering the body', async () => {
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(4 * MB) });
      res.write(Buffer.concat([...videoChunks(100_000)]));
    });

    const output = await open(`${origin.url}/out.mp4`, 400);
    const read = await drain(output.body);

    expect(read.error).toMatchObject({ name: 'TimeoutError' });
    expect(read.bytes.length).toBe(100_000);
  });

  it("ends the download and closes its connection when the caller's signal aborts part-way", async () => {
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(4 * MB) });
      res.write(Buffer.concat([...videoChunks(100_000)]));
    });
    const controller = new AbortController();

    const output = await open(`${origin.url}/out.mp4`, 5_000, controller.signal);
    const reading = drain(output.body);
    controller.abort();

    expect((await reading).error).toMatchObject({ name: 'AbortError' });
    await until(() => origin.closedConnections() === 1, 'the origin to see its connection closed');
  });

  it('closes the connection when the caller destroys the body without reading it', async () => {
    const origin = await videoOrigin(64 * MB);

    const output = await open(`${origin.url}/out.mp4`);
    output.body.destroy();

    await until(() => origin.closedConnections() === 1, 'the origin to see its connection closed');
  });
});

describe('a transfer from the Runway output into storage', () => {
  const transfer = async (outputUrl: string, storageUrl: string) => {
    const output = await open(outputUrl);
    try {
      return await putStream(`${storageUrl}/upload`, output.body, { contentLength: output.length, timeoutMs: 10_000, signal: NO_ABORT });
    } finally {
      output.body.destroy();
    }
  };

  it('stores every byte of an output that trickles in, sniffed bytes included', async () => {
    const chunks = [...videoChunks(MB)].flatMap((chunk) => [chunk.subarray(0, 7), chunk.subarray(7, 20_000), chunk.subarray(20_000)]);
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(MB) });
      const next = (index: number): void => {
        const chunk = chunks[index];
        if (chunk === undefined) res.end();
        else res.write(chunk, () => setTimeout(() => next(index + 1), 1));
      };
      next(0);
    });
    const storage = await hashingStorage();

    const answer = await transfer(`${origin.url}/out.mp4`, storage.url);

    expect(answer).toMatchObject({ status: 200, bytes: MB });
    expect(storage.sha256()).toBe(sha256Of(videoChunks(MB)));
  });

  it('breaks the upload off, retryable, when the output closes early, so storage never has the whole body', async () => {
    const size = 8 * MB;
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(size) });
      const first = Buffer.concat([...videoChunks(2 * MB)]);
      res.write(first, () => res.socket?.destroy());
    });
    const storage = await hashingStorage();

    const error = await upstreamErrorOf(transfer(`${origin.url}/out.mp4`, storage.url));

    expect(error).toMatchObject({ retryable: true });
    await until(() => storage.closedConnections() === 1, 'storage to see the upload broken off');
    expect(storage.received()).toBeLessThan(size);
    expect(storage.answered()).toBe(false);
  });

  it('stops reading the output while storage does not read, and sends every byte once it reads again', async () => {
    const size = 64 * MB;
    const origin = await videoOrigin(size);
    const storage = await hashingStorage({ readPaused: true });

    const answering = transfer(`${origin.url}/out.mp4`, storage.url);
    // Wait until the output has stopped coming: everything in between is in buffers.
    let before = -1;
    while (origin.written() !== before) {
      before = origin.written();
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    // The kernel's socket buffers on loopback hold some megabytes; a download that read
    // ahead of the upload would have taken the whole output by now.
    expect(origin.written()).toBeLessThan(size / 2);
    storage.resume();

    expect(await answering).toMatchObject({ status: 200, bytes: size });
    expect(storage.sha256()).toBe(sha256Of(videoChunks(size)));
  });

  it('stores bodies of every size around its 16 KB send batches', async () => {
    const batchBytes = 16 * 1024;
    for (const size of [12, batchBytes - 1, batchBytes, batchBytes + 1, 2 * batchBytes, 2 * batchBytes + 1, 5 * batchBytes + 3]) {
      const origin = await videoOrigin(size);
      const storage = await hashingStorage();

      const answer = await transfer(`${origin.url}/out.mp4`, storage.url);

      expect(answer).toMatchObject({ status: 200, bytes: size });
      expect(storage.sha256()).toBe(sha256Of(videoChunks(size)));
    }
  });
});
