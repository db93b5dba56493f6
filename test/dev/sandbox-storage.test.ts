import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startSandbox } from '../../dev/sandbox/index.js';
import type { Sandbox, SandboxOptions } from '../../dev/sandbox/index.js';
import { readFixture } from '../../dev/sandbox/seed.js';

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
    await new Promise((resolve) => setTimeout(resolve, 50));
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
