import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { interpretUploadAnswer, putStream } from '../../lib/clients/media-transfer.js';

const servers: http.Server[] = [];

async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** An MP4-typed stream of `size` bytes, made on the fly. */
function videoStream(size: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) return void this.push(null);
      const chunk = Buffer.alloc(Math.min(64 * 1024, size - sent), 7);
      if (sent === 0) chunk.write('\0\0\0\x18ftypmp42', 'latin1');
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
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
