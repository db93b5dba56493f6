import net from 'node:net';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { downloadPhoto, interpretUploadAnswer, NOT_VIDEO, openOutput, PHOTO_MAX_BYTES, putStream } from '../../lib/clients/media-transfer.js';
import { PermanentError, UpstreamError } from '../../lib/errors.js';
import { closeLoopbacks, inTurn, neverAnswer, refusedUrl, rejectionOf, reply, serveScript, type Script } from './loopback.js';

const MB = 1024 * 1024;
const PHOTO = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(40_000, 0x42), Buffer.from([0xff, 0xd9])]);
const MP4 = Buffer.concat([Buffer.from('\0\0\0\x18ftypmp42', 'latin1'), Buffer.alloc(50_000, 7)]);

const sockets: net.Server[] = [];
afterEach(async () => {
  await closeLoopbacks();
  await Promise.all(sockets.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** Sends `body` in chunks of `chunkBytes`, without a Content-Length (chunked). */
function chunked(body: Buffer, chunkBytes: number, headers: Record<string, string> = {}): Script {
  return (_request, res) => {
    res.writeHead(200, headers);
    for (let at = 0; at < body.length; at += chunkBytes) res.write(body.subarray(at, at + chunkBytes));
    res.end();
  };
}

/** Declares the length of `body`, sends only its first `sent` bytes, then closes the connection. */
function cutAfter(body: Buffer, sent: number, headers: Record<string, string> = {}): Script {
  return (_request, res) => {
    res.writeHead(200, { 'content-length': String(body.length), ...headers });
    res.write(body.subarray(0, sent), () => res.socket?.destroy());
  };
}

/** Sends the headers and the first `sent` bytes, then nothing more (the connection stays open). */
function stallAfter(body: Buffer, sent: number, headers: Record<string, string> = {}): Script {
  return (_request, res) => {
    res.writeHead(200, { 'content-length': String(body.length), ...headers });
    res.write(body.subarray(0, sent));
  };
}

async function upstreamErrorOf(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await rejectionOf(promise);
  expect(error).toBeInstanceOf(UpstreamError);
  return error as UpstreamError;
}

async function permanentErrorOf(promise: Promise<unknown>): Promise<PermanentError> {
  const error = await rejectionOf(promise);
  expect(error).toBeInstanceOf(PermanentError);
  return error as PermanentError;
}

describe('downloading the photo', () => {
  it('returns every byte of a photo that arrives in many chunks of unknown total length', async () => {
    const server = await serveScript(chunked(PHOTO, 1000, { 'content-type': 'image/jpeg' }));

    const photo = await downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 });

    expect(Buffer.from(photo).equals(PHOTO)).toBe(true);
  });

  it('takes a 204 answer as an empty photo (refused later as empty)', async () => {
    const server = await serveScript(reply(204));

    const photo = await downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 });

    expect(photo.byteLength).toBe(0);
  });

  it.each([
    ['a 404', reply(404, 'Not Found')],
    ["Supabase's 400 with statusCode 404 in the body", reply(400, { statusCode: '404', message: 'Object not found' })],
    ['a 400 whose error is not_found', reply(400, { error: 'not_found' })],
    ['a 400 whose error is NotFound', reply(400, { error: 'NotFound' })],
  ])('fails as not found, without retrying, on %s', async (_label, answer) => {
    const server = await serveScript(answer);

    const error = await upstreamErrorOf(downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 }));

    expect(error).toMatchObject({ service: 'photo', message: 'photo: not found in storage', retryable: false, code: 'not-found' });
    expect(server.received).toHaveLength(1);
  });

  it('retries an expired download token, then fails with code expired', async () => {
    const server = await serveScript(reply(400, { statusCode: '400', error: 'InvalidJWT', message: '"exp" claim timestamp check failed' }));

    const error = await upstreamErrorOf(downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 }));

    expect(error).toMatchObject({ message: 'photo: download token expired', status: 400, retryable: true, code: 'expired' });
    expect(server.received).toHaveLength(3);
  });

  it("names Supabase's code and error for another refusal, and does not retry it", async () => {
    const server = await serveScript(reply(403, { statusCode: '403', error: 'Unauthorized', message: 'new row violates policy' }));

    const error = await upstreamErrorOf(downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 }));

    expect(error).toMatchObject({ message: 'photo: download answered 403 (statusCode 403 Unauthorized)', status: 403, retryable: false });
    expect(server.received).toHaveLength(1);
  });

  it('gives only the status for a refusal whose body is not Supabase JSON', async () => {
    const server = await serveScript(reply(500, '<html>oops</html>'));

    const error = await upstreamErrorOf(downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 }));

    expect(error).toMatchObject({ message: 'photo: download answered 500', status: 500, retryable: true });
    expect(server.received).toHaveLength(3);
  });

  it.each([408, 429, 503])('retries a %i and returns the photo of the next answer', async (status) => {
    const server = await serveScript(inTurn(reply(status, 'try again'), chunked(PHOTO, 8192)));

    const photo = await downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 });

    expect(Buffer.from(photo).equals(PHOTO)).toBe(true);
    expect(server.received).toHaveLength(2);
  });

  it('refuses a photo whose declared size is over 20 MB without reading it, and does not retry', async () => {
    const server = await serveScript((_request, res) => {
      res.writeHead(200, { 'content-length': String(30 * MB) });
      res.write(PHOTO);
    });

    const error = await permanentErrorOf(downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 }));

    expect(error).toMatchObject({ stage: 'photo', message: 'photo: 30.0 MB is over the 20.0 MB limit' });
    expect(server.received).toHaveLength(1);
  });

  it('stops reading a photo of unknown length once it passes 20 MB', async () => {
    const server = await serveScript(chunked(Buffer.alloc(PHOTO_MAX_BYTES + MB, 1), MB));

    const error = await permanentErrorOf(downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 10_000 }));

    expect(error).toMatchObject({ stage: 'photo', message: 'photo: over the 20.0 MB limit' });
    expect(server.received).toHaveLength(1);
  });

  it('retries a download cut off part-way and returns the whole photo of the next try', async () => {
    const server = await serveScript(inTurn(cutAfter(PHOTO, 1000), chunked(PHOTO, 8192)));

    const photo = await downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 });

    expect(Buffer.from(photo).equals(PHOTO)).toBe(true);
    expect(server.received).toHaveLength(2);
  });

  it('fails as cut off, retryable, when every try is cut off part-way', async () => {
    const server = await serveScript(cutAfter(PHOTO, 1000));

    const error = await upstreamErrorOf(downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 5_000 }));

    expect(error).toMatchObject({ service: 'photo', message: 'photo: download was cut off', retryable: true });
    expect(server.received).toHaveLength(3);
  });

  it('fails as timed out when the body stops coming, the timeout covering the body too', async () => {
    const server = await serveScript(stallAfter(PHOTO, 1000));

    const error = await upstreamErrorOf(downloadPhoto(`${server.url}/p.jpg`, { timeoutMs: 300 }));

    expect(error).toMatchObject({ service: 'photo', message: 'photo: download timed out', retryable: true });
  });

  it('fails as a network error, retryable, when nothing listens', async () => {
    const error = await upstreamErrorOf(downloadPhoto(`${await refusedUrl()}/p.jpg`, { timeoutMs: 5_000 }));

    expect(error).toMatchObject({ service: 'photo', message: 'photo: download failed (network error)', retryable: true, code: 'network' });
  });
});

describe('opening the Runway output', () => {
  const open = (url: string, timeoutMs = 5_000) => openOutput(url, timeoutMs, new AbortController().signal);

  it('asks for the bytes unencoded and gives the Content-Length with every byte', async () => {
    const server = await serveScript((_request, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(MP4.length) });
      res.end(MP4);
    });

    const output = await open(`${server.url}/out.mp4`);

    expect(output.length).toBe(MP4.length);
    expect(Buffer.concat(await output.body.toArray()).equals(MP4)).toBe(true);
    expect(server.received[0]?.headers['accept-encoding']).toBe('identity');
  });

  it('gives no length for a compressed answer, whose Content-Length counts other bytes than it yields', async () => {
    const compressed = gzipSync(MP4);
    const server = await serveScript((_request, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-encoding': 'gzip', 'content-length': String(compressed.length) });
      res.end(compressed);
    });

    const output = await open(`${server.url}/out.mp4`);

    expect(output.length).toBeUndefined();
    expect(Buffer.concat(await output.body.toArray()).equals(MP4)).toBe(true);
  });

  it('gives no length for an answer of unknown length', async () => {
    const server = await serveScript(chunked(MP4, 4096, { 'content-type': 'video/mp4' }));

    const output = await open(`${server.url}/out.mp4`);

    expect(output.length).toBeUndefined();
    expect(Buffer.concat(await output.body.toArray()).equals(MP4)).toBe(true);
  });

  it.each([401, 403, 404, 410])('takes a %i as an expired output URL, not worth retrying as it is', async (status) => {
    const server = await serveScript(reply(status, '<Error>AccessDenied</Error>'));

    const error = await upstreamErrorOf(open(`${server.url}/out.mp4`));

    expect(error).toMatchObject({ service: 'output', message: `output: download answered ${status}`, status, retryable: false, code: 'expired' });
  });

  it.each([500, 204])('takes a %i as a retryable failure', async (status) => {
    const server = await serveScript(reply(status));

    const error = await upstreamErrorOf(open(`${server.url}/out.mp4`));

    expect(error).toMatchObject({ message: `output: download answered ${status}`, status, retryable: true, code: undefined });
  });

  it('fails as retryable when the answer is cut off before its first bytes', async () => {
    const server = await serveScript(cutAfter(MP4, 0, { 'content-type': 'video/mp4' }));

    const error = await upstreamErrorOf(open(`${server.url}/out.mp4`));

    expect(error).toMatchObject({ service: 'output', message: 'output: download was cut off before its first bytes', retryable: true });
  });

  it('refuses an HTML page of unknown length as not a video', async () => {
    const server = await serveScript(chunked(Buffer.from('<!DOCTYPE html><html><body>Sign in</body></html>'), 16, { 'content-type': 'text/html' }));

    const error = await upstreamErrorOf(open(`${server.url}/out.mp4`));

    expect(error).toMatchObject({
      message: "output: Runway's output is not a video (text/html, unknown size)",
      status: 200,
      retryable: false,
      code: NOT_VIDEO,
    });
  });

  it.each([
    [500, '500 ms'],
    [1_000, '1 s'],
  ])('fails as timed out after %i ms, naming the timeout (%s), when no answer comes', async (timeoutMs, named) => {
    const server = await serveScript(neverAnswer);

    const error = await upstreamErrorOf(open(`${server.url}/out.mp4`, timeoutMs));

    expect(error).toMatchObject({ message: `output: download timed out after ${named}`, retryable: true, code: 'timeout' });
  });
});

describe("storage's answer to an upload", () => {
  it.each([
    ['a 200 with the Key', 200, '{"Key":"generated-videos/videos/i.mp4"}', { kind: 'stored' }],
    ['a duplicate named only by a numeric statusCode', 400, '{"statusCode":409,"message":"The resource already exists"}', { kind: 'duplicate' }],
    ['a duplicate named only by its error', 400, '{"error":"Duplicate"}', { kind: 'duplicate' }],
    ['a bare HTTP 413', 413, '', { kind: 'too-large' }],
    ['a token error named only in the message', 400, '{"statusCode":"400","error":"Unauthorized","message":"jwt expired"}', { kind: 'expired-token' }],
    ['another 400', 400, '{"statusCode":"400","error":"InvalidKey","message":"Invalid key"}', { kind: 'error', retryable: false, detail: 'statusCode 400 InvalidKey' }],
    ['a 200 whose body names a 5xx', 200, '{"statusCode":"500","error":"internal"}', { kind: 'error', retryable: true, detail: 'statusCode 500 internal' }],
    ['a 502 HTML page', 502, '<html>Bad Gateway</html>', { kind: 'error', retryable: true, detail: 'HTTP 502' }],
    ['a 429', 429, '[]', { kind: 'error', retryable: true, detail: 'HTTP 429' }],
    ['a 408', 408, '', { kind: 'error', retryable: true, detail: 'HTTP 408' }],
  ])('reads %s', (_label, status, body, verdict) => {
    expect(interpretUploadAnswer(status, body)).toEqual(verdict);
  });
});

describe('a streamed upload that goes wrong', () => {
  const upload = (url: string, source: Readable, contentLength: number | undefined, timeoutMs = 5_000) =>
    putStream(url, source, { contentLength, timeoutMs, signal: new AbortController().signal });

  /** A plain TCP server on loopback, for storage that misbehaves below HTTP. */
  async function rawServer(onConnection: (socket: net.Socket) => void): Promise<number> {
    const server = net.createServer(onConnection);
    sockets.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  }

  it('speaks TLS to an https target', async () => {
    const firstBytes: Buffer[] = [];
    const port = await rawServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        firstBytes.push(chunk);
        socket.destroy();
      });
    });

    const error = await upstreamErrorOf(upload(`https://127.0.0.1:${port}/upload?token=t`, Readable.from([MP4]), MP4.length));

    // A TLS handshake record, where plain HTTP would start with "PUT".
    expect(firstBytes[0]?.[0]).toBe(0x16);
    expect(error).toMatchObject({ service: 'storage', retryable: true });
  });

  it('fails as cut off, retryable, when storage drops the connection part-way through the body', async () => {
    let received = 0;
    const port = await rawServer((socket) => {
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > MB) socket.destroy();
      });
    });
    const size = MP4.length + 8 * MB;

    const error = await upstreamErrorOf(upload(`http://127.0.0.1:${port}/upload`, Readable.from([MP4, Buffer.alloc(8 * MB, 3)]), size));

    expect(error).toMatchObject({ service: 'storage', retryable: true });
    expect(error.message).toMatch(/^storage: upload was cut off after \d+\.\d MB$/);
    expect(error.cause).toBeInstanceOf(Error);
    expect(received).toBeLessThan(size);
  });

  it('takes an answer cut off part-way as no answer: cut off, retryable', async () => {
    const server = await serveScript((_request, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '200' });
      res.write('{"Key":"generated-', () => res.socket?.destroy());
    });

    const error = await upstreamErrorOf(upload(`${server.url}/upload`, Readable.from([MP4]), MP4.length));

    // Every byte went out (48.8 KB); only the answer was lost.
    expect(error).toMatchObject({ service: 'storage', message: 'storage: upload was cut off after 48.8 KB', retryable: true });
  });

  it('fails as timed out, saying what was sent, when storage takes the body and never answers', async () => {
    const server = await serveScript(neverAnswer);

    const error = await upstreamErrorOf(upload(`${server.url}/upload`, Readable.from([Buffer.from('0123456789')]), 10, 300));

    expect(error).toMatchObject({ service: 'storage', message: 'storage: upload timed out after 10 bytes', retryable: true });
    expect(server.received[0]?.body.toString()).toBe('0123456789');
  });

  it('keeps only the start of a long answer', async () => {
    const server = await serveScript(reply(400, { statusCode: '400', error: 'InvalidRequest', message: 'x'.repeat(300 * 1024) }));

    const answer = await upload(`${server.url}/upload`, Readable.from([MP4]), MP4.length);

    expect(answer.status).toBe(400);
    expect(answer.body.length).toBeGreaterThanOrEqual(64 * 1024);
    expect(answer.body.length).toBeLessThan(300 * 1024);
    expect(answer.body.startsWith('{"statusCode":"400","error":"InvalidRequest"')).toBe(true);
  });
});

describe('a transfer timeout, after a garbage collection', () => {
  // Node 20 collects an AbortSignal.timeout that only an AbortSignal.any refers to, and its
  // timer with it: the transfer would then wait for ever. The worker's deadlines own their timer.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  /** A full collection once the transfer is under way (its request sent, waiting for an answer). */
  const collectGarbage = async (): Promise<void> => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    gc();
  };

  it('still ends an upload that storage never answers', async () => {
    const server = await serveScript(neverAnswer);
    const controller = new AbortController();

    const pending = upstreamErrorOf(
      putStream(`${server.url}/upload`, Readable.from([Buffer.from('0123456789')]), { contentLength: 10, timeoutMs: 300, signal: controller.signal }),
    );
    await collectGarbage();

    expect(await pending).toMatchObject({ message: 'storage: upload timed out after 10 bytes', retryable: true });
  });

  it('still ends a photo download that never answers', async () => {
    const server = await serveScript(neverAnswer);

    const pending = upstreamErrorOf(downloadPhoto(`${server.url}/photo.jpg`, { timeoutMs: 300 }));
    await collectGarbage();

    expect(await pending).toMatchObject({ code: 'timeout', retryable: true });
  });
});
