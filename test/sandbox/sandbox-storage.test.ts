import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startSandbox } from '../../sandbox/index.js';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import type { Sandbox, SandboxOptions } from '../../sandbox/index.js';
import { readFixture } from '../../sandbox/seed.js';

const opened: { sandbox: Sandbox; dataDir: string }[] = [];

async function start(overrides: Partial<SandboxOptions> = {}): Promise<{ sandbox: Sandbox; dataDir: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sandbox-storage-'));
  const sandbox = await startSandbox({ workerApiKey: 'k', runwayApiKey: 'r', dataDir, ...overrides });
  opened.push({ sandbox, dataDir });
  return { sandbox, dataDir };
}

afterEach(async () => {
  for (const { sandbox, dataDir } of opened.splice(0)) {
    await sandbox.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});

const VIDEO_PATH = 'videos/item-1.mp4';
const DUPLICATE = { statusCode: '409', error: 'Duplicate', message: 'The resource already exists' };
const EXPIRED = { statusCode: '400', error: 'InvalidJWT', message: '"exp" claim timestamp check failed' };

const claimsSchema = z.object({ url: z.string(), iat: z.number(), exp: z.number() });

function tokenClaims(signedUrl: string): z.infer<typeof claimsSchema> {
  const token = new URL(signedUrl).searchParams.get('token') ?? '';
  const [header, payload] = token.split('.');
  expect(JSON.parse(Buffer.from(header ?? '', 'base64url').toString('utf8'))).toEqual({ alg: 'HS256', typ: 'JWT' });
  return claimsSchema.parse(JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')));
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function put(url: string, body: Uint8Array<ArrayBuffer> | string, method = 'PUT'): Promise<{ status: number; json: unknown }> {
  const response = await fetch(url, { method, headers: { 'content-type': 'video/mp4' }, body, signal: AbortSignal.timeout(5000) });
  return { status: response.status, json: (await response.json()) as unknown };
}

/** A body of unknown length: fetch sends it chunked. */
function chunkedBody(chunks: readonly Uint8Array[]): RequestInit & { duplex: 'half' } {
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  return { method: 'PUT', headers: { 'content-type': 'video/mp4' }, body: stream, duplex: 'half' };
}

async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('a signed download URL', () => {
  it('returns the bytes with the Content-Type of the extension and a Content-Length', async () => {
    const { sandbox } = await start();
    const jpeg = await readFixture('landscape.jpg');
    const png = await readFixture('square.png');
    await sandbox.storage.putObject('group-photos', 'g1/p1_original.JPG', jpeg);
    await sandbox.storage.putObject('group-photos', 'g1/p2_original.png', png);

    const url = sandbox.storage.signDownload('group-photos', 'g1/p1_original.JPG', 3600);
    expect(url.startsWith(`${sandbox.storageUrl}/object/sign/group-photos/g1/p1_original.JPG?token=`)).toBe(true);
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/jpeg');
    expect(response.headers.get('content-length')).toBe(String(jpeg.length));
    expect(Buffer.from(await response.arrayBuffer()).equals(jpeg)).toBe(true);

    const pngResponse = await fetch(sandbox.storage.signDownload('group-photos', 'g1/p2_original.png', 60));
    expect(pngResponse.headers.get('content-type')).toBe('image/png');
    await pngResponse.arrayBuffer();
  });

  it('carries an HS256 JWT naming the object and its expiry', async () => {
    const { sandbox } = await start();
    const claims = tokenClaims(sandbox.storage.signDownload('group-photos', 'g/p_original.jpg', 3600));
    expect(claims.url).toBe('group-photos/g/p_original.jpg');
    expect(claims.exp - claims.iat).toBe(3600);
  });

  it('answers HEAD with the headers only', async () => {
    const { sandbox } = await start();
    await sandbox.storage.putObject('group-photos', 'g/p_original.webp', Buffer.from('RIFF0000WEBPVP8 '));
    const response = await fetch(sandbox.storage.signDownload('group-photos', 'g/p_original.webp', 60), { method: 'HEAD' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/webp');
    expect(response.headers.get('content-length')).toBe('16');
  });

  it('answers 400 Supabase-style to an expired, tampered or foreign token', async () => {
    const { sandbox } = await start();
    await sandbox.storage.putObject('group-photos', 'g/a.jpg', Buffer.from('a'));
    await sandbox.storage.putObject('group-photos', 'g/b.jpg', Buffer.from('b'));

    const expired = await fetch(sandbox.storage.signDownload('group-photos', 'g/a.jpg', -1));
    expect(expired.status).toBe(400);
    expect(await expired.json()).toEqual(EXPIRED);

    const tampered = await fetch(`${sandbox.storage.signDownload('group-photos', 'g/a.jpg', 60)}x`);
    expect(tampered.status).toBe(400);
    expect(await tampered.json()).toMatchObject({ statusCode: '400', error: 'InvalidJWT' });

    const token = new URL(sandbox.storage.signDownload('group-photos', 'g/a.jpg', 60)).search;
    const foreign = await fetch(`${sandbox.storageUrl}/object/sign/group-photos/g/b.jpg${token}`);
    expect(foreign.status).toBe(400);
    await foreign.arrayBuffer();

    const missingToken = await fetch(`${sandbox.storageUrl}/object/sign/group-photos/g/a.jpg`);
    expect(missingToken.status).toBe(400);
    await missingToken.arrayBuffer();
  });

  it('answers 400 with statusCode 404 for a missing object', async () => {
    const { sandbox } = await start();
    const response = await fetch(sandbox.storage.signDownload('group-photos', 'g/none.jpg', 60));
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ statusCode: '404' });
  });
});

describe('a signed upload URL', () => {
  it('stores a PUT body on disk and answers 200 with the bucket-qualified Key', async () => {
    const { sandbox, dataDir } = await start();
    const url = sandbox.storage.signUpload('generated-videos', VIDEO_PATH);
    expect(url.startsWith(`${sandbox.storageUrl}/object/upload/sign/generated-videos/${VIDEO_PATH}?token=`)).toBe(true);
    const bytes = Buffer.from('an mp4, honestly');

    expect(await put(url, bytes)).toEqual({ status: 200, json: { Key: `generated-videos/${VIDEO_PATH}` } });
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)).toMatchObject({
      size: bytes.length,
      sha256: sha256(bytes),
      contentType: 'video/mp4',
      uploads: 1,
      hasBytes: true,
    });
    const file = sandbox.storage.filePath('generated-videos', VIDEO_PATH) ?? '';
    expect(file.startsWith(join(dataDir, 'storage', 'generated-videos'))).toBe(true);
    expect((await readFile(file)).equals(bytes)).toBe(true);
  });

  it('accepts POST as well as PUT', async () => {
    const { sandbox } = await start();
    const answer = await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 'x', 'POST');
    expect(answer.status).toBe(200);
  });

  it('records the content type it was sent, or octet-stream without one', async () => {
    const { sandbox } = await start();
    const response = await fetch(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), {
      method: 'PUT',
      body: new Uint8Array([1, 2, 3]),
    });
    expect(response.status).toBe(200);
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)?.contentType).toBe('application/octet-stream');
  });

  it('refuses a second upload to the same path as a duplicate inside an HTTP 400, keeping the first', async () => {
    const { sandbox } = await start();
    const first = Buffer.from('first');
    await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), first);
    expect(await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 'second')).toEqual({ status: 400, json: DUPLICATE });
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)).toMatchObject({ sha256: sha256(first), uploads: 2 });
    expect(sandbox.storage.uploadAttempts('generated-videos', VIDEO_PATH)).toBe(2);
  });

  it('lets exactly one of two racing uploads win', async () => {
    const { sandbox } = await start();
    const url = sandbox.storage.signUpload('generated-videos', VIDEO_PATH);
    const answers = await Promise.all([put(url, Buffer.alloc(200_000, 1)), put(url, Buffer.alloc(200_000, 2))]);
    expect(answers.map((answer) => answer.status).sort()).toEqual([200, 400]);
    expect(answers.find((answer) => answer.status === 400)?.json).toEqual(DUPLICATE);
  });

  it('answers the InvalidJWT exp error to an expired token and stores nothing', async () => {
    const { sandbox } = await start();
    expect(await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH, -1), 'x')).toEqual({ status: 400, json: EXPIRED });
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
  });

  it('refuses a download token used for an upload', async () => {
    const { sandbox } = await start();
    const token = new URL(sandbox.storage.signDownload('generated-videos', VIDEO_PATH, 60)).search;
    const answer = await put(`${sandbox.storageUrl}/object/upload/sign/generated-videos/${VIDEO_PATH}${token}`, 'x');
    expect(answer.status).toBe(400);
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
  });

  it('signs upload tokens for 2 hours by default, or for uploadTokenTtlSeconds', async () => {
    const { sandbox } = await start();
    const hosted = tokenClaims(sandbox.storage.signUpload('generated-videos', VIDEO_PATH));
    expect(hosted.exp - hosted.iat).toBe(7200);
    expect(hosted.url).toBe(`generated-videos/${VIDEO_PATH}`);
    const { sandbox: selfHosted } = await start({ uploadTokenTtlSeconds: 60 });
    const short = tokenClaims(selfHosted.storage.signUpload('generated-videos', VIDEO_PATH));
    expect(short.exp - short.iat).toBe(60);
  });

  it('answers statusCode 413 inside an HTTP 400 to a body over maxUploadBytes, declared or chunked', async () => {
    const { sandbox } = await start({ maxUploadBytes: 1000 });
    const declared = await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), Buffer.alloc(1001));
    expect(declared.status).toBe(400);
    expect(declared.json).toMatchObject({ statusCode: '413' });

    const chunk = new Uint8Array(1024 * 1024);
    const chunked = await fetch(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), chunkedBody([chunk, chunk, chunk, chunk]));
    expect(chunked.status).toBe(400);
    expect(await chunked.json()).toMatchObject({ statusCode: '413' });
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);

    const exact = await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), Buffer.alloc(1000));
    expect(exact.status).toBe(200);
  });

  it('accepts a chunked body of unknown length', async () => {
    const { sandbox } = await start();
    const chunks = [new Uint8Array(70_000).fill(7), new Uint8Array(70_000).fill(8), new Uint8Array(10).fill(9)];
    const response = await fetch(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), chunkedBody(chunks));
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    const whole = Buffer.concat(chunks);
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)).toMatchObject({ size: whole.length, sha256: sha256(whole) });
    const recorded = sandbox.requests().find((entry) => entry.service === 'storage' && entry.method === 'PUT');
    expect(recorded?.headers['transfer-encoding']).toBe('chunked');
    expect(recorded?.bytes).toBe(whole.length);
    expect(recorded?.json).toBeUndefined();
  });

  it('keeps no object, and no partial file, when the client aborts part-way', async () => {
    const { sandbox, dataDir } = await start();
    const upload = request(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), {
      method: 'PUT',
      headers: { 'content-type': 'video/mp4', 'content-length': String(1_000_000) },
    });
    upload.on('error', () => undefined);
    upload.write(Buffer.alloc(100_000));
    await waitFor(() => sandbox.storage.uploadAttempts('generated-videos', VIDEO_PATH) === 1);
    // The partial file exists before the abort, so its removal is what is checked.
    await waitFor(() => readdirSync(join(dataDir, 'storage', '.incoming')).length === 1);
    upload.destroy();
    await waitFor(() => sandbox.requests().some((entry) => entry.service === 'storage'));
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
    expect(await readdir(join(dataDir, 'storage', '.incoming'))).toEqual([]);
    expect(await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 'retry')).toMatchObject({ status: 200 });
  });

  it('keeps only size and sha256 of videos with discardVideoBytes', async () => {
    const { sandbox } = await start({ discardVideoBytes: true });
    const bytes = Buffer.alloc(300_000, 5);
    expect((await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), bytes)).status).toBe(200);
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)).toMatchObject({ size: bytes.length, sha256: sha256(bytes), hasBytes: false });
    expect(sandbox.storage.filePath('generated-videos', VIDEO_PATH)).toBeUndefined();
    expect(await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 'again')).toEqual({ status: 400, json: DUPLICATE });
  });
});

describe('storage faults at rate 1', () => {
  it('drops the connection part-way through every upload body with resetRate, storing nothing', async () => {
    const { sandbox } = await start({ faults: { storage: { resetRate: 1 } } });
    const url = sandbox.storage.signUpload('generated-videos', VIDEO_PATH);
    await expect(put(url, Buffer.alloc(500_000))).rejects.toThrow();
    await waitFor(() => sandbox.requests().some((entry) => entry.service === 'storage'));
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
    expect(sandbox.storage.uploadAttempts('generated-videos', VIDEO_PATH)).toBe(1);
  });

  it('answers the InvalidJWT exp error to a fresh token with expiredTokenRate', async () => {
    const { sandbox } = await start({ faults: { storage: { expiredTokenRate: 1 } } });
    expect(await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 'x')).toEqual({ status: 400, json: EXPIRED });
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
  });
});

const CHUNK_BYTES = 64 * 1024;

/** What a client that writes an upload body slowly saw. */
interface SlowUpload {
  /** The status line and headers of the answer, lower-cased names. */
  readonly status: number | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly json: unknown;
  /** Body chunks written when the first byte of the answer arrived. */
  readonly chunksBeforeAnswer: number | undefined;
  readonly chunksWritten: number;
  /** The socket error that ended the upload, if one did. */
  readonly errorCode: string | undefined;
}

function parseRawAnswer(raw: string): Pick<SlowUpload, 'status' | 'headers' | 'json'> {
  const [head = '', body = ''] = raw.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const status = Number(statusLine.split(' ')[1]);
  return { status: Number.isFinite(status) ? status : undefined, headers, json: body === '' ? undefined : (JSON.parse(body) as unknown) };
}

/** The answer is complete once its Content-Length worth of body has arrived. */
function isCompleteAnswer(raw: string): boolean {
  const split = raw.indexOf('\r\n\r\n');
  if (split === -1) return false;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(raw.slice(0, split))?.[1];
  return length !== undefined && Buffer.byteLength(raw.slice(split + 4)) >= Number(length);
}

/**
 * A sender on a bare socket that writes its whole body, one 64 KB chunk every 10 ms, whatever
 * it hears (the first chunk leaves with the headers, as node:http sends it), stops at the
 * first socket error, and hangs up once it has written everything and heard a whole answer
 * or the server's hang-up. Before each write it lets the event loop read what has arrived,
 * as a sender across a network would have: a write into a reset connection fails at once
 * and Node then drops the socket with the answer unread.
 */
function uploadOverRawSocket(url: string, chunks: number, framing: 'content-length' | 'chunked'): Promise<SlowUpload> {
  const target = new URL(url);
  const chunk = (): Buffer => {
    const data = Buffer.alloc(CHUNK_BYTES, 7);
    return framing === 'chunked' ? Buffer.concat([Buffer.from(`${CHUNK_BYTES.toString(16)}\r\n`), data, Buffer.from('\r\n')]) : data;
  };
  return new Promise((resolve) => {
    let written = 0;
    let chunksBeforeAnswer: number | undefined;
    let errorCode: string | undefined;
    let received = '';
    const socket = connect({ port: Number(target.port), host: target.hostname, allowHalfOpen: true });
    const hangUpWhenDone = (): void => {
      if (written === chunks && isCompleteAnswer(received)) socket.end();
    };
    socket.on('data', (data: Buffer) => {
      chunksBeforeAnswer ??= written;
      received += data.toString('utf8');
      hangUpWhenDone();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      errorCode = error.code;
    });
    // Hung up on with the body all sent: nothing more to say. Mid-body, keep writing.
    socket.on('end', () => {
      if (written === chunks) socket.end();
    });
    socket.on('close', () => resolve({ ...parseRawAnswer(received), chunksBeforeAnswer, chunksWritten: written, errorCode }));
    const length = framing === 'chunked' ? 'transfer-encoding: chunked' : `content-length: ${chunks * CHUNK_BYTES}`;
    const head = `PUT ${target.pathname}${target.search} HTTP/1.1\r\nhost: ${target.host}\r\ncontent-type: video/mp4\r\n${length}\r\n\r\n`;
    socket.write(Buffer.concat([Buffer.from(head), chunk()]));
    written = 1;
    const writeNext = (): void => {
      if (socket.destroyed) return;
      if (written === chunks) {
        if (framing === 'chunked') socket.write('0\r\n\r\n');
        hangUpWhenDone();
        return;
      }
      socket.write(chunk());
      written += 1;
      setTimeout(afterPendingReads, 10, writeNext);
    };
    setTimeout(afterPendingReads, 10, writeNext);
  });
}

/** Calls back after a whole turn of the event loop, its poll phase (socket reads) included. */
function afterPendingReads(callback: () => void): void {
  setImmediate(() => setImmediate(callback));
}

/** The same slow sender through node:http, which sends the first chunk with the headers. */
function uploadOverNodeHttp(url: string, chunks: number): Promise<SlowUpload> {
  return new Promise((resolve) => {
    let written = 0;
    let chunksBeforeAnswer: number | undefined;
    let errorCode: string | undefined;
    let answer: Pick<SlowUpload, 'status' | 'headers' | 'json'> = { status: undefined, headers: {}, json: undefined };
    const upload = request(url, { method: 'PUT', headers: { 'content-type': 'video/mp4', 'content-length': String(chunks * CHUNK_BYTES) } });
    upload.on('response', (response) => {
      chunksBeforeAnswer = written;
      const parts: Buffer[] = [];
      response.on('data', (part: Buffer) => parts.push(part));
      response.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        answer = { status: response.statusCode, headers: flatten(response.headers), json: JSON.parse(text) as unknown };
      });
    });
    upload.on('error', (error: NodeJS.ErrnoException) => {
      errorCode = error.code;
    });
    upload.on('close', () => {
      // Let a response that ended in the same turn settle first.
      setImmediate(() => resolve({ ...answer, chunksBeforeAnswer, chunksWritten: written, errorCode }));
    });
    const writeNext = (): void => {
      if (upload.destroyed) return;
      if (written === chunks) {
        upload.end();
        return;
      }
      upload.write(Buffer.alloc(CHUNK_BYTES, 7));
      written += 1;
      setTimeout(afterPendingReads, 10, writeNext);
    };
    writeNext();
  });
}

function flatten(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (typeof value === 'string') out[name] = value;
  return out;
}

function storageRequests(sandbox: Sandbox): RecordedRequest[] {
  return sandbox.requests().filter((entry) => entry.service === 'storage');
}

const TOTAL_CHUNKS = 30;

describe('a refused signed upload, as Supabase refuses it', () => {
  const refusals: readonly {
    readonly situation: string;
    readonly answer: unknown;
    readonly prepare: (sandbox: Sandbox) => Promise<string>;
    readonly options?: Partial<SandboxOptions>;
  }[] = [
    {
      situation: 'an expired token',
      answer: EXPIRED,
      prepare: (sandbox) => Promise.resolve(sandbox.storage.signUpload('generated-videos', VIDEO_PATH, -1)),
    },
    {
      situation: 'a token hit by the expiredTokenRate fault',
      answer: EXPIRED,
      options: { faults: { storage: { expiredTokenRate: 1 } } },
      prepare: (sandbox) => Promise.resolve(sandbox.storage.signUpload('generated-videos', VIDEO_PATH)),
    },
    {
      situation: 'an object that already exists',
      answer: DUPLICATE,
      prepare: async (sandbox) => {
        await sandbox.storage.putObject('generated-videos', VIDEO_PATH, Buffer.from('the first video'));
        return sandbox.storage.signUpload('generated-videos', VIDEO_PATH);
      },
    },
    {
      situation: 'a declared Content-Length over the limit',
      answer: { statusCode: '413', error: 'Payload too large', message: 'The object exceeded the maximum allowed size' },
      options: { maxUploadBytes: 10 * CHUNK_BYTES },
      prepare: (sandbox) => Promise.resolve(sandbox.storage.signUpload('generated-videos', VIDEO_PATH)),
    },
  ];

  for (const refusal of refusals) {
    it(`answers ${refusal.situation} before reading the body, then resets the connection under a sender still writing`, async () => {
      const { sandbox } = await start(refusal.options);
      const url = await refusal.prepare(sandbox);
      const before = sandbox.storage.object('generated-videos', VIDEO_PATH);

      const seen = await uploadOverRawSocket(url, TOTAL_CHUNKS, 'content-length');

      expect(seen).toMatchObject({ status: 400, json: refusal.answer, headers: { connection: 'close' } });
      expect(seen.chunksBeforeAnswer).toBe(1);
      expect(seen.chunksWritten).toBeLessThan(TOTAL_CHUNKS);
      expect(['ECONNRESET', 'EPIPE']).toContain(seen.errorCode);
      const after = sandbox.storage.object('generated-videos', VIDEO_PATH);
      expect(after === undefined ? undefined : { ...after, uploads: 0 }).toEqual(before);
      await waitFor(() => storageRequests(sandbox).length === 1);
      expect(storageRequests(sandbox)[0]?.bytes).toBe(0);
    });
  }

  it('answers a node:http sender before it has finished writing, and the request ends there', async () => {
    const { sandbox } = await start();
    const seen = await uploadOverNodeHttp(sandbox.storage.signUpload('generated-videos', VIDEO_PATH, -1), TOTAL_CHUNKS);

    expect(seen).toMatchObject({ status: 400, json: EXPIRED, headers: { connection: 'close' } });
    expect(seen.chunksBeforeAnswer).toBe(1);
    expect(seen.chunksWritten).toBeLessThan(TOTAL_CHUNKS);
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
  });

  it('stops reading a chunked body at the limit, answers 413 and resets the connection', async () => {
    const limitChunks = 10;
    const { sandbox, dataDir } = await start({ maxUploadBytes: limitChunks * CHUNK_BYTES });

    const seen = await uploadOverRawSocket(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), TOTAL_CHUNKS, 'chunked');

    expect(seen).toMatchObject({ status: 400, json: { statusCode: '413' }, headers: { connection: 'close' } });
    expect(seen.chunksBeforeAnswer).toBeGreaterThan(limitChunks);
    expect(seen.chunksBeforeAnswer).toBeLessThan(TOTAL_CHUNKS);
    expect(['ECONNRESET', 'EPIPE']).toContain(seen.errorCode);
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
    await waitFor(() => storageRequests(sandbox).length === 1);
    expect(storageRequests(sandbox)[0]?.bytes).toBeLessThanOrEqual((limitChunks + 2) * CHUNK_BYTES);
    await waitFor(() => readdirSync(join(dataDir, 'storage', '.incoming')).length === 0);
  });

  it('keeps the connection for the next request after an upload it stored', async () => {
    const { sandbox } = await start();
    const seen = await uploadOverRawSocket(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 3, 'content-length');
    expect(seen).toMatchObject({ status: 200, json: { Key: `generated-videos/${VIDEO_PATH}` }, errorCode: undefined, chunksBeforeAnswer: 3 });
    expect(seen.headers['connection']).not.toBe('close');
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)?.size).toBe(3 * CHUNK_BYTES);
  });
});

describe('a refused signed upload with gentleRefusal', () => {
  it('reads the whole body before answering, and keeps the connection', async () => {
    const { sandbox } = await start({ gentleRefusal: true });
    await sandbox.storage.putObject('generated-videos', VIDEO_PATH, Buffer.from('the first video'));

    const seen = await uploadOverRawSocket(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 8, 'content-length');

    expect(seen).toMatchObject({ status: 400, json: DUPLICATE, chunksBeforeAnswer: 8, chunksWritten: 8, errorCode: undefined });
    expect(seen.headers['connection']).not.toBe('close');
    await waitFor(() => storageRequests(sandbox).length === 1);
    expect(storageRequests(sandbox)[0]?.bytes).toBe(8 * CHUNK_BYTES);
  });

  it('reads a chunked body past the limit to its end before answering 413', async () => {
    const { sandbox } = await start({ gentleRefusal: true, maxUploadBytes: 2 * CHUNK_BYTES });

    const seen = await uploadOverRawSocket(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 6, 'chunked');

    expect(seen).toMatchObject({ status: 400, json: { statusCode: '413' }, chunksBeforeAnswer: 6, errorCode: undefined });
    expect(sandbox.storage.has('generated-videos', VIDEO_PATH)).toBe(false);
    await waitFor(() => storageRequests(sandbox).length === 1);
    expect(storageRequests(sandbox)[0]?.bytes).toBe(6 * CHUNK_BYTES);
  });
});

describe('the lostAnswerRate fault', () => {
  it('stores the whole upload, then drops the connection without any answer', async () => {
    const { sandbox } = await start({ faults: { storage: { lostAnswerRate: 1 } } });

    const seen = await uploadOverRawSocket(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 4, 'content-length');

    expect(seen.status).toBeUndefined();
    expect(seen.chunksBeforeAnswer).toBeUndefined();
    expect(seen.chunksWritten).toBe(4);
    expect(sandbox.storage.object('generated-videos', VIDEO_PATH)).toMatchObject({ size: 4 * CHUNK_BYTES, uploads: 1 });
    expect(await put(sandbox.storage.signUpload('generated-videos', VIDEO_PATH), 'again')).toEqual({ status: 400, json: DUPLICATE });
  });
});
