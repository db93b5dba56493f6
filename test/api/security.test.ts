import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { readFixture } from '../../sandbox/seed.js';
import { downloadPhoto, openOutput, putStream } from '../../lib/clients/media-transfer.js';
import { parseConfig } from '../../lib/config.js';
import { PermanentError, UpstreamError } from '../../lib/errors.js';
import { handleCronGet } from '../../lib/handlers/cron-poll.js';
import { createDeps } from '../../lib/runtime.js';
import { uploadMessageSchema } from '../../lib/steps/messages.js';
import { finishedUpload, submit } from '../support/flow.js';
import {
  CRON_SECRET,
  DEV_QSTASH,
  WORKER_ID,
  closeHarnesses,
  seedItem,
  silentLogger,
  startHarness,
  workerEnv,
  type DeliveryOptions,
  type Harness,
  type Mark,
  RUNWAY_WORK,
} from '../support/harness.js';
import { mintQStashJwt, nowSeconds } from '../support/qstash-jwt.js';
import { closeStandIns, startSocketTrap, startStandIn, type SocketTrap } from '../support/extra-stand-in.js';
import { collectUncaught } from '../support/extra-uncaught.js';
import { closeExtraWorkers, startExtraWorker } from '../support/extra-worker.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

// --- QStash signatures -------------------------------------------------------------

type Endpoint = '/api/cron-poll' | '/api/runway-callback' | '/api/step-upload';

interface Prepared {
  readonly harness: Harness;
  readonly body: unknown;
  /** What must still hold when nothing happened. */
  readonly untouched: () => void;
  /** What must hold once the endpoint did its work, given the requests made since `mark`. */
  readonly worked: (mark: Mark) => void;
}

/** A harness with a real message waiting for the endpoint: a queued item, a running task, a finished one. */
async function prepare(endpoint: Endpoint): Promise<Prepared> {
  const item = seedItem('landscape.jpg');
  const harness = await startHarness({ items: [item] });
  if (endpoint === '/api/cron-poll') {
    return {
      harness,
      body: { reason: 'drain' },
      untouched: () => expect(harness.sandbox.app.item(item.item_id)?.status).toBe('pending'),
      worked: (mark) => {
        expect(harness.sandbox.app.item(item.item_id)?.status).toBe('processing');
        expect(harness.requests({ service: 'runway', method: 'POST', path: '/v1/image_to_video', since: mark })).toHaveLength(1);
      },
    };
  }
  if (endpoint === '/api/runway-callback') {
    const job = await submit(harness, item.item_id);
    return {
      harness,
      body: { job },
      untouched: () => expect(harness.sandbox.runway.task(job.runway_task_id)?.deleted).toBe(false),
      worked: (mark) =>
        expect(harness.requests({ service: 'runway', method: 'GET', path: `/v1/tasks/${job.runway_task_id}`, since: mark })).toHaveLength(1),
    };
  }
  const message = await finishedUpload(harness, item.item_id);
  return {
    harness,
    body: message,
    untouched: () => {
      expect(harness.sandbox.storage.uploadAttempts('generated-videos', `videos/${item.item_id}.mp4`)).toBe(0);
      expect(harness.sandbox.app.item(item.item_id)?.status).toBe('processing');
    },
    worked: () => {
      expect(harness.sandbox.storage.uploadAttempts('generated-videos', `videos/${item.item_id}.mp4`)).toBe(1);
      expect(harness.sandbox.app.item(item.item_id)?.status).toBe('completed');
    },
  };
}

const ENDPOINTS: readonly Endpoint[] = ['/api/cron-poll', '/api/runway-callback', '/api/step-upload'];
const OTHER_ENDPOINT: Record<Endpoint, Endpoint> = {
  '/api/cron-poll': '/api/step-upload',
  '/api/runway-callback': '/api/step-upload',
  '/api/step-upload': '/api/runway-callback',
};

const BAD_SIGNATURES: readonly (readonly [string, (harness: Harness, endpoint: Endpoint, body: unknown) => DeliveryOptions])[] = [
  ['no Upstash-Signature at all', () => ({ unsigned: true })],
  ['a signature forged with a key that is not ours', () => ({ signingKey: 'sig_9ZqForgedKeyNotConfigured01' })],
  ['a signature that expired a minute ago', () => ({ issuedAtSeconds: nowSeconds() - 360 })],
  ['a signature for another of our URLs', (harness, endpoint) => ({ signedUrl: `${harness.url}${OTHER_ENDPOINT[endpoint]}` })],
  ['a signature for the same path on another host', (_harness, endpoint) => ({ signedUrl: `https://worker.example.net${endpoint}` })],
  [
    'a signature over a body that was then modified',
    (_harness, _endpoint, body) => ({ signedBody: JSON.stringify(body).replace(/}$/, ',"extra":1}') }),
  ],
];

describe.each(ENDPOINTS)('%s receiving a delivery whose signature does not hold', (endpoint) => {
  it.each(BAD_SIGNATURES)('answers 401 to %s, and nothing reaches the app, Runway, storage or QStash', async (_label, forge) => {
    const { harness, body, untouched } = await prepare(endpoint);
    const mark = harness.mark();

    const answer = await harness.deliver(endpoint, body, forge(harness, endpoint, body));

    expect(answer.status).toBe(401);
    expect(answer.json).toMatchObject({ outcome: 'unauthorized' });
    expect(answer.headers.get('upstash-nonretryable-error')).toBeNull();
    expect(harness.requests({ since: mark })).toEqual([]);
    expect(harness.messages(undefined, mark)).toEqual([]);
    untouched();
  });
});

describe.each(ENDPOINTS)('%s receiving a delivery signed with the next signing key (key rotation)', (endpoint) => {
  it('accepts it and does its work', async () => {
    const { harness, body, worked } = await prepare(endpoint);
    const mark = harness.mark();

    const answer = await harness.deliver(endpoint, body, { signingKey: DEV_QSTASH.nextSigningKey });

    expect(answer.status).toBe(200);
    worked(mark);
  });
});

describe.each(ENDPOINTS)('%s reached through another name of this host', (endpoint) => {
  it('accepts a signature made for the URL the request arrived at', async () => {
    const { harness, body, worked } = await prepare(endpoint);
    const mark = harness.mark();
    const url = `${harness.url.replace('127.0.0.1', 'localhost')}${endpoint}`;
    const raw = JSON.stringify(body);
    const signature = await mintQStashJwt({ signingKey: DEV_QSTASH.currentSigningKey, url, body: raw });

    const answer = await fetch(url, { method: 'POST', headers: { 'upstash-signature': signature, 'content-type': 'application/json' }, body: raw });

    expect(answer.status).toBe(200);
    worked(mark);
  });
});

// --- The cron secret ---------------------------------------------------------------

describe('cron-poll GET without the exact cron secret', () => {
  it.each([
    ['no Authorization header', null],
    ['a wrong secret', 'Bearer wrong-secret-entirely'],
    ['a prefix of the secret', `Bearer ${CRON_SECRET.slice(0, 8)}`],
    ['the secret with more characters after it', `Bearer ${CRON_SECRET}0`],
    ['the scheme in lower case', `bearer ${CRON_SECRET}`],
    ['the scheme in upper case', `BEARER ${CRON_SECRET}`],
    ['the secret in upper case', `Bearer ${CRON_SECRET.toUpperCase()}`],
    ['the bare secret without a scheme', CRON_SECRET],
  ] as const)('answers 401 to %s and leases nothing', async (_label, authorization) => {
    const harness = await startHarness({ items: [seedItem('landscape.jpg')] });

    const answer = await harness.cron('', authorization);

    expect(answer.status).toBe(401);
    expect(answer.json).toMatchObject({ outcome: 'unauthorized' });
    expect(harness.requests()).toEqual([]);
    expect(harness.messages()).toEqual([]);
    expect(harness.sandbox.app.items().map((item) => item.status)).toEqual(['pending']);
  });
});

describe('cron-poll GET on a server without CRON_SECRET', () => {
  it('refuses to run whatever the caller sends, and says why', async () => {
    const harness = await startHarness({ items: [seedItem('landscape.jpg')] });
    const deps = createDeps(parseConfig(workerEnv(harness)), { log: silentLogger() });
    expect(deps.config.cronSecret).toBeUndefined();

    for (const authorization of [undefined, 'Bearer ', 'Bearer undefined', 'Bearer null', `Bearer ${CRON_SECRET}`]) {
      const headers: Record<string, string> = authorization === undefined ? {} : { authorization };
      const answer = await handleCronGet(new Request(`${harness.url}/api/cron-poll`, { headers }), () => deps);
      expect(answer.status).toBe(401);
      expect(await answer.json()).toEqual({ outcome: 'unauthorized', detail: 'CRON_SECRET is not set on the server; refusing to run' });
    }
    expect(harness.requests()).toEqual([]);
    expect(harness.messages()).toEqual([]);
  });
});

// --- Where bytes may go ------------------------------------------------------------

const REFUSED_URLS: readonly (readonly [string, (trap: SocketTrap) => string])[] = [
  ['plain http to a public host', () => 'http://example.com/p.jpg?token=eyJhbGciOiJIUzI1NiJ9.e30.c2ln'],
  ['plain http to 0.0.0.0 (which reaches this machine)', (trap) => `http://0.0.0.0:${trap.port}/p.jpg`],
  ['plain http to a name that only starts like loopback', (trap) => `http://127.0.0.1.example.com:${trap.port}/p.jpg`],
  ['ftp', (trap) => `ftp://127.0.0.1:${trap.port}/p.jpg`],
  ['file', () => 'file:///etc/passwd'],
  ['something that is not a URL', () => 'not a url'],
];

const ALLOWED_URLS: readonly (readonly [string, (trap: SocketTrap) => string])[] = [
  ['http://127.0.0.1', (trap) => `http://127.0.0.1:${trap.port}/p.jpg`],
  ['http://localhost', (trap) => `http://localhost:${trap.port}/p.jpg`],
  ['http://[::1]', (trap) => `http://[::1]:${trap.port}/p.jpg`],
];

/** Whatever `call` does (throws at once or rejects later), the error it ends with. */
async function failureOf(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

async function jpegTrap(): Promise<SocketTrap> {
  return startSocketTrap({ reply: { contentType: 'image/jpeg', body: await readFixture('landscape.jpg') } });
}

describe('the media transfer given a URL that is neither https nor http on loopback', () => {
  it.each(REFUSED_URLS)('refuses to download a photo from %s before any socket opens', async (_label, urlFor) => {
    const trap = await jpegTrap();

    const error = await failureOf(() => downloadPhoto(urlFor(trap), { timeoutMs: 1_000 }));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ stage: 'photo' });
    expect(String((error as Error).message)).toMatch(/^photo: (refusing a [a-z]+: URL \(only https, or http on loopback\)|the service returned an invalid URL)$/);
    expect(trap.connections()).toBe(0);
  });

  it.each(REFUSED_URLS)('refuses to open a Runway output at %s before any socket opens', async (_label, urlFor) => {
    const trap = await jpegTrap();

    const error = await failureOf(() => openOutput(urlFor(trap), 1_000, new AbortController().signal));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ stage: 'output' });
    expect(trap.connections()).toBe(0);
  });

  it.each(REFUSED_URLS)('refuses to upload a video to %s before any socket opens', async (_label, urlFor) => {
    const trap = await jpegTrap();
    const source = Readable.from([Buffer.from('not really a video')]);

    const error = await failureOf(() =>
      putStream(urlFor(trap), source, { contentLength: 18, timeoutMs: 1_000, signal: new AbortController().signal }),
    );

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ stage: 'storage' });
    expect(trap.connections()).toBe(0);
  });
});

describe('the media transfer given https or http on a loopback host', () => {
  it.each(ALLOWED_URLS)('downloads a photo from %s', async (_label, urlFor) => {
    const trap = await jpegTrap();

    const photo = await downloadPhoto(urlFor(trap), { timeoutMs: 2_000 });

    expect(Buffer.from(photo).equals(await readFixture('landscape.jpg'))).toBe(true);
    expect(trap.connections()).toBe(1);
  });

  it('lets an https URL through to the network (here a plain-HTTP port, so TLS fails there, not in the policy)', async () => {
    const trap = await jpegTrap();

    const error = await failureOf(() => downloadPhoto(`https://127.0.0.1:${trap.port}/p.jpg`, { timeoutMs: 1_000 }));

    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).not.toBeInstanceOf(PermanentError);
    expect(trap.connections()).toBeGreaterThanOrEqual(1);
  });
});

describe('the worker handed a signed URL that is plain http to a non-loopback host', () => {
  it('reports the photo failed without opening a socket when the download presign points there', async () => {
    const trap = await jpegTrap();
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const app = await startStandIn({
      target: harness.sandbox.nextApiUrl,
      rewrite: (request, reply) =>
        request.path === '/worker/presign' && JSON.stringify(request.json).includes('"download"')
          ? { status: 200, json: { success: true, data: { url: `http://0.0.0.0:${trap.port}/p.jpg?token=abc`, expires_in: 3600 } } }
          : reply,
    });
    const worker = await startExtraWorker(harness, { env: { NEXT_API_URL: app.url } });

    expect((await worker.cron()).status).toBe(200);

    expect(trap.connections()).toBe(0);
    expect(harness.requests({ service: 'runway', path: RUNWAY_WORK })).toEqual([]);
    expect(harness.sandbox.app.reports(item.item_id).map((report) => report.error_message)).toEqual([
      'photo: refusing a http: URL (only https, or http on loopback)',
    ]);
  });

  // When putStream refuses the target, uploadOnce's `finally` aborts the Runway output
  // download whose stream nobody listens to any more: its AbortError is an unhandled
  // 'error' event, i.e. an uncaught exception that ends a plain Node process.
  it('reports the upload failed, without opening a socket to it or throwing anything uncaught, when the upload presign points there', async () => {
    const trap = await jpegTrap();
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const message = await finishedUpload(harness, item.item_id);
    const app = await startStandIn({
      target: harness.sandbox.nextApiUrl,
      rewrite: (request, reply) =>
        request.path === '/worker/presign' && JSON.stringify(request.json).includes('"upload"')
          ? {
              status: 200,
              json: { success: true, data: { url: `http://0.0.0.0:${trap.port}/up.mp4?token=abc`, storage_path: `videos/${item.item_id}.mp4`, expires_in: 3600 } },
            }
          : reply,
    });
    const worker = await startExtraWorker(harness, { env: { NEXT_API_URL: app.url } });

    const { result: answer, uncaught } = await collectUncaught(
      () => worker.deliver('/api/step-upload', message),
      () => harness.sandbox.runway.outputDownloadsOpen() === 0,
      'the aborted output download to close',
    );

    expect(answer.status).toBe(489);
    expect(trap.connections()).toBe(0);
    expect(harness.sandbox.storage.uploadAttempts('generated-videos', `videos/${item.item_id}.mp4`)).toBe(0);
    expect(harness.sandbox.app.reports(item.item_id).map(({ status, error_message }) => ({ status, error_message }))).toEqual([
      { status: 'failed', error_message: 'storage: refusing a http: URL (only https, or http on loopback)' },
    ]);
    expect(uncaught).toEqual([]);
  });

  it('reports the upload failed without opening a socket when the Runway output URL is plain http to another host', async () => {
    const trap = await jpegTrap();
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const message = uploadMessageSchema.parse(await finishedUpload(harness, item.item_id));
    const mark = harness.mark();

    const answer = await harness.deliver('/api/step-upload', { ...message, output_url: `http://0.0.0.0:${trap.port}/out.mp4?sig=abc` });

    expect(answer.status).toBe(489);
    expect(trap.connections()).toBe(0);
    expect(harness.requests({ service: 'storage', since: mark })).toEqual([]);
    expect(harness.appCalls('report', mark).map((request) => request.json)).toEqual([
      {
        item_id: item.item_id,
        worker_id: WORKER_ID,
        status: 'failed',
        error_message: 'output: refusing a http: URL (only https, or http on loopback)',
        veo_operation_id: message.job.runway_task_id,
      },
    ]);
  });
});
