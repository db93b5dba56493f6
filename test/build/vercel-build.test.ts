import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startLocalQStash, type LocalMessage, type LocalQStash } from '../../server/local-qstash.js';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import { startSandbox, type Sandbox } from '../../sandbox/index.js';
import { seedSandbox } from '../../sandbox/seed.js';
import { pollMessageSchema, uploadMessageSchema, type Job } from '../../lib/steps/messages.js';
import { DEMO_KEYS, RUNWAY_AUTH, WORKER_AUTH, WORKER_ID, answerOf, seedItem, until, type Answer } from '../support/harness.js';
import { mintQStashJwt } from '../support/qstash-jwt.js';
import { PROJECT_ROOT, buildCopyOfProject, projectFootprint, type BuiltCopy } from './build-copy.js';
import { startFunctionHost, type FunctionHost } from './function-host.js';

const run = promisify(execFile);
const FUNCTIONS = ['cron-poll', 'runway-callback', 'step-upload'] as const;

const vcConfig = z.object({ handler: z.string(), runtime: z.string(), maxDuration: z.number(), launcherType: z.string() });
const outputConfig = z.object({ crons: z.array(z.object({ path: z.string(), schedule: z.string() })) });

let footprintBefore: Record<string, string> = {};
let build: BuiltCopy | undefined;

function built(): BuiltCopy {
  if (!build) throw new Error('vercel build did not run');
  return build;
}

const functionDir = (name: string): string => path.join(built().output, `functions/api/${name}.func`);

beforeAll(async () => {
  footprintBefore = await projectFootprint();
  build = await buildCopyOfProject();
}, 240_000);

afterAll(async () => {
  await build?.remove();
});

describe('vercel build of a copy of the project, offline with the pinned CLI', () => {
  it('completes', () => {
    expect(built().log).toMatch(/Build Completed/);
  });

  it('leaves the self-hosted server\'s `npm run build` out of the Vercel build', () => {
    expect(built().log).not.toMatch(/npm run build/);
  });

  it.each(FUNCTIONS)('emits the %s function with its maxDuration, for the Node launcher', async (name) => {
    const raw = await readFile(path.join(functionDir(name), '.vc-config.json'), 'utf8');
    const config = vcConfig.parse(JSON.parse(raw));
    expect(config.handler).toBe(`api/${name}.js`);
    expect(config.runtime).toMatch(/^nodejs\d+\.x$/);
    expect(config.launcherType).toBe('Nodejs');
    expect(config.maxDuration).toBeGreaterThan(0);
    expect(config.maxDuration).toBeLessThanOrEqual(300);
  });

  it('declares the per-minute cron on /api/cron-poll', async () => {
    const config = outputConfig.parse(JSON.parse(await readFile(path.join(built().output, 'config.json'), 'utf8')));
    expect(config.crons).toEqual([{ path: '/api/cron-poll', schedule: '* * * * *' }]);
  });

  it('publishes no source files as static assets', () => {
    const staticDir = path.join(built().output, 'static');
    expect(existsSync(path.join(staticDir, 'lib'))).toBe(false);
    for (const folder of ['server', 'sandbox', 'tools', 'test']) expect(existsSync(path.join(staticDir, folder))).toBe(false);
    expect(existsSync(path.join(staticDir, 'package.json'))).toBe(false);
  });

  it('ships sharp\'s native parts (addon and libvips) with cron-poll, and none with step-upload', async () => {
    const nativeFiles = async (name: string): Promise<string[]> => {
      const dir = path.join(functionDir(name), 'node_modules/@img');
      if (!existsSync(dir)) return [];
      const files = (await readdir(dir, { recursive: true })).map(String);
      return files.filter((file) => /\.node$|libvips-cpp\.so/.test(file));
    };
    const cronPoll = await nativeFiles('cron-poll');
    expect(cronPoll.some((file) => file.endsWith('.node'))).toBe(true);
    expect(cronPoll.some((file) => file.includes('libvips-cpp.so'))).toBe(true);
    expect(await nativeFiles('step-upload')).toEqual([]);
  });

  it('prepares a photo from the cron-poll bundle alone, with the libvips it ships', async () => {
    const dir = functionDir('cron-poll');
    const fixture = path.join(PROJECT_ROOT, 'sandbox/fixtures/portrait-exif6.jpg');
    const script = `
      import { readFileSync } from 'node:fs';
      const { preparePhoto } = await import(${JSON.stringify(pathToFileURL(path.join(dir, 'lib/media/prepare-photo.js')).href)});
      const prepared = await preparePhoto(readFileSync(${JSON.stringify(fixture)}), 'gen4_turbo');
      const libvips = readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((line) => line.includes('libvips')).map((line) => line.split(/\\s+/).pop());
      process.stdout.write(JSON.stringify({ sent: prepared.sent, libvips: [...new Set(libvips)] }));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir });
    const result = z.object({ sent: z.object({ type: z.string(), width: z.number(), height: z.number() }), libvips: z.array(z.string()) }).parse(JSON.parse(stdout));
    expect(result.sent).toMatchObject({ type: 'jpeg', width: 180, height: 320 });
    expect(result.libvips.length).toBeGreaterThan(0);
    for (const file of result.libvips) expect(file.startsWith(dir)).toBe(true);
  });

  it.each(FUNCTIONS)('loads no libvips when the %s function is imported (its cold start)', async (name) => {
    const dir = functionDir(name);
    const script = `
      import { readFileSync } from 'node:fs';
      const handler = await import(${JSON.stringify(pathToFileURL(path.join(dir, `api/${name}.js`)).href)});
      const maps = readFileSync('/proc/self/maps', 'utf8');
      process.stdout.write(JSON.stringify({ post: typeof handler.POST, libvips: maps.includes('libvips'), addon: maps.includes('sharp-linux') }));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir });
    expect(JSON.parse(stdout)).toEqual({ post: 'function', libvips: false, addon: false });
  });

  it('bundles functions that load as real ESM in plain Node', async () => {
    const handlers = FUNCTIONS.map((name) => pathToFileURL(path.join(functionDir(name), `api/${name}.js`)).href);
    const script = `
      const exported = [];
      for (const url of ${JSON.stringify(handlers)}) exported.push(typeof (await import(url)).POST);
      process.stdout.write(JSON.stringify(exported));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: built().dir });
    expect(JSON.parse(stdout)).toEqual(FUNCTIONS.map(() => 'function'));
  });
});

const CRON_POLL = '/api/cron-poll';
const RUNWAY_CALLBACK = '/api/runway-callback';
const STEP_UPLOAD = '/api/step-upload';
/** Looks at the Runway task the test allows before the upload must have been handed over. */
const MAX_LOOKS = 3;

const cronSummarySchema = z.object({
  leased: z.number(),
  submitted: z.number(),
  items: z.array(z.object({ item_id: z.string().nullable(), outcome: z.string(), runway_task_id: z.string().optional() })),
});

/** What one QStash delivery needs of a published message. */
type Deliverable = Pick<LocalMessage, 'url' | 'body' | 'messageId' | 'forwardedHeaders'>;

interface Mark {
  readonly requests: number;
  readonly messages: number;
}

describe('the bundled functions behind the Node launcher, against the sandbox and a local QStash', () => {
  // Keys of this run only: the bundles can only know them from the env they were given.
  const keys = {
    qstashToken: `qstash-token-${randomBytes(8).toString('hex')}`,
    currentSigningKey: `sig_${randomBytes(12).toString('base64url')}`,
    nextSigningKey: `sig_${randomBytes(12).toString('base64url')}`,
    cronSecret: `cron-${randomBytes(12).toString('base64url')}`,
  };
  const item = seedItem('landscape.jpg');
  let dataDir = '';
  let sandbox: Sandbox | undefined;
  let qstash: LocalQStash | undefined;
  let host: FunctionHost | undefined;

  const services = (): { sandbox: Sandbox; qstash: LocalQStash; host: FunctionHost } => {
    if (!sandbox || !qstash || !host) throw new Error('the sandbox, the local QStash or the function host did not start');
    return { sandbox, qstash, host };
  };

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'runway-worker-bundles-'));
    sandbox = await startSandbox({
      workerApiKey: DEMO_KEYS.worker,
      runwayApiKey: DEMO_KEYS.runway,
      dataDir: path.join(dataDir, 'sandbox'),
      runway: { generationMs: 1000 },
    });
    await seedSandbox(sandbox, [item]);
    // Publishes are accepted and recorded, but every delivery is held decades out: the
    // test plays QStash, one signed delivery at a time.
    qstash = await startLocalQStash({
      token: keys.qstashToken,
      currentSigningKey: keys.currentSigningKey,
      nextSigningKey: keys.nextSigningKey,
      timeScale: 0.01,
      faults: { rng: () => 1, reorderJitterMs: 1e14 },
    });
    host = await startFunctionHost({
      functionsDir: path.join(built().output, 'functions'),
      env: {
        NEXT_API_URL: sandbox.nextApiUrl,
        WORKER_API_KEY: DEMO_KEYS.worker,
        RUNWAY_API_KEY: DEMO_KEYS.runway,
        RUNWAY_API_URL: sandbox.runwayApiUrl,
        QSTASH_URL: qstash.url,
        QSTASH_TOKEN: keys.qstashToken,
        QSTASH_CURRENT_SIGNING_KEY: keys.currentSigningKey,
        QSTASH_NEXT_SIGNING_KEY: keys.nextSigningKey,
        CRON_SECRET: keys.cronSecret,
        LEDGER_DIR: path.join(dataDir, 'ledger'),
        LOG_LEVEL: 'warn',
      },
    });
  }, 30_000);

  afterAll(async () => {
    await host?.close();
    await qstash?.close();
    await sandbox?.close();
    if (dataDir !== '') await rm(dataDir, { recursive: true, force: true });
  });

  const mark = (): Mark => ({ requests: services().sandbox.requests().length, messages: services().qstash.messages().length });

  const requestsSince = (since: Mark, filter: Partial<Pick<RecordedRequest, 'service' | 'method' | 'path'>> = {}): RecordedRequest[] =>
    services()
      .sandbox.requests()
      .slice(since.requests)
      .filter(
        (request) =>
          (filter.service === undefined || request.service === filter.service) &&
          (filter.method === undefined || request.method === filter.method) &&
          (filter.path === undefined || request.path === filter.path),
      );

  const appCalls = (route: string, since: Mark): RecordedRequest[] => requestsSince(since, { service: 'app', path: `/worker/${route}` });

  const publishedSince = (since: Mark, pathname?: string): LocalMessage[] =>
    services()
      .qstash.messages()
      .slice(since.messages)
      .filter((message) => pathname === undefined || message.url === `${services().host.url}${pathname}`);

  /** A request to the deployment, as a client on the internet would send it. */
  const call = async (pathname: string, init: RequestInit = {}): Promise<Answer> =>
    answerOf(await fetch(`${services().host.url}${pathname}`, { ...init, signal: AbortSignal.timeout(60_000) }));

  const cron = (authorization?: string): Promise<Answer> =>
    call(CRON_POLL, { headers: { 'user-agent': 'vercel-cron/1.0', ...(authorization === undefined ? {} : { authorization }) } });

  /** One delivery of a message to the URL it was published for, as QStash makes it (contract §3). */
  const deliver = async (message: Deliverable, signingKey: string | null = keys.currentSigningKey): Promise<Answer> => {
    const headers: Record<string, string> = {
      ...message.forwardedHeaders,
      'content-type': 'application/json',
      'user-agent': 'Upstash-QStash',
      'upstash-message-id': message.messageId,
      'upstash-retried': '0',
    };
    if (signingKey !== null) {
      headers['upstash-signature'] = await mintQStashJwt({ signingKey, url: message.url, body: message.body });
    }
    return answerOf(
      await fetch(message.url, { method: 'POST', headers, body: message.body, signal: AbortSignal.timeout(60_000) }),
    );
  };

  it('serves each function at its path with the handler its .vc-config.json names', () => {
    expect(services().host.routes).toEqual({
      [CRON_POLL]: { handler: 'api/cron-poll.js', methods: ['GET', 'POST'] },
      [RUNWAY_CALLBACK]: { handler: 'api/runway-callback.js', methods: ['POST'] },
      [STEP_UPLOAD]: { handler: 'api/step-upload.js', methods: ['POST'] },
    });
  });

  it('refuses a cron-poll run without the bearer CRON_SECRET, or with another, with 401, and leases nothing', async () => {
    const since = mark();
    const without = await cron();
    const wrong = await cron(`Bearer ${keys.cronSecret}-not`);
    expect([without.status, wrong.status]).toEqual([401, 401]);
    expect([without.json, wrong.json]).toEqual([expect.objectContaining({ outcome: 'unauthorized' }), expect.objectContaining({ outcome: 'unauthorized' })]);
    expect(requestsSince(since)).toEqual([]);
    expect(publishedSince(since)).toEqual([]);
  });

  it('refuses a runway-callback delivery that is unsigned, or signed with another key, with 401, and asks Runway nothing', async () => {
    const since = mark();
    const job: Job = {
      item_id: item.item_id,
      attempt: 1,
      runway_task_id: 'task-unknown',
      model: 'gen4_turbo',
      duration: 5,
      ratio: '1280:720',
      submitted_at: Date.now(),
      last_heartbeat_at: Date.now(),
      polls: 0,
      generation: 1,
    };
    const message: Deliverable = {
      url: `${services().host.url}${RUNWAY_CALLBACK}`,
      body: JSON.stringify({ job }),
      messageId: `msg_${randomBytes(8).toString('hex')}`,
      forwardedHeaders: {},
    };
    const unsigned = await deliver(message, null);
    const forged = await deliver(message, `sig_${randomBytes(12).toString('base64url')}`);
    expect([unsigned.status, forged.status]).toEqual([401, 401]);
    expect([unsigned.json, forged.json]).toEqual([expect.objectContaining({ outcome: 'unauthorized' }), expect.objectContaining({ outcome: 'unauthorized' })]);
    expect(requestsSince(since)).toEqual([]);
    expect(publishedSince(since)).toEqual([]);
  });

  it('takes a queued item to a stored, reported video: cron-poll, then QStash deliveries to runway-callback and step-upload', async () => {
    const { app, runway, storage } = services().sandbox;
    const functions = services().host;
    const since = mark();

    // cron-poll, called as Vercel Cron calls it: leases the item and creates a Runway task.
    const cronAnswer = await cron(`Bearer ${keys.cronSecret}`);
    expect(cronAnswer.status, functions.output()).toBe(200);
    const summary = cronSummarySchema.parse(cronAnswer.json);
    expect(summary).toMatchObject({ leased: 1, submitted: 1 });
    expect(summary.items).toEqual([expect.objectContaining({ item_id: item.item_id, outcome: 'submitted' })]);
    const taskId = summary.items[0]?.runway_task_id ?? 'missing';

    const leases = appCalls('next-task', since);
    expect(leases.length).toBeGreaterThanOrEqual(1);
    expect(leases[0]?.headers['authorization']).toBe(WORKER_AUTH);
    expect(leases[0]?.json).toMatchObject({ worker_id: WORKER_ID, worker_type: 'runway' });
    const creates = requestsSince(since, { service: 'runway', method: 'POST', path: '/v1/image_to_video' });
    expect(creates).toHaveLength(1);
    expect(creates[0]?.headers['authorization']).toBe(RUNWAY_AUTH);
    expect(runway.task(taskId)).toBeDefined();
    expect(app.item(item.item_id)?.status).toBe('processing');

    // The photo was prepared with the libvips the cron-poll bundle ships.
    const maps = await readFile(`/proc/${functions.pid}/maps`, 'utf8');
    const libvips = [...new Set(maps.split('\n').filter((line) => line.includes('libvips')).map((line) => line.split(/\s+/).pop() ?? ''))];
    expect(libvips.length).toBeGreaterThan(0);
    for (const file of libvips) expect(file.startsWith(functionDir('cron-poll'))).toBe(true);

    // The first look at the task went to the local QStash, for the deployment's own URL.
    const firstLooks = publishedSince(since, RUNWAY_CALLBACK);
    expect(firstLooks).toHaveLength(1);
    expect(publishedSince(since).map((message) => message.url)).toEqual([`${functions.url}${RUNWAY_CALLBACK}`]);
    const firstLook = firstLooks[0];
    if (!firstLook) throw new Error('cron-poll published no look at the task');
    expect(pollMessageSchema.parse(JSON.parse(firstLook.body)).job).toMatchObject({ item_id: item.item_id, runway_task_id: taskId });

    // runway-callback: each look is delivered signed; a look at a running task schedules the
    // next one, and the look that finds it SUCCEEDED hands over to step-upload.
    let look: LocalMessage = firstLook;
    let looks = 0;
    for (;;) {
      const answer = await deliver(look);
      looks += 1;
      expect(answer.status, functions.output()).toBe(200);
      if (publishedSince(since, STEP_UPLOAD).length > 0) break;
      expect(looks, 'looks at the Runway task without an upload handed over').toBeLessThan(MAX_LOOKS);
      const next = publishedSince(since, RUNWAY_CALLBACK).at(-1);
      if (!next || next.messageId === look.messageId) {
        throw new Error(`look ${looks} scheduled neither an upload nor another look: ${JSON.stringify(answer.json)}`);
      }
      look = next;
      await until(() => runway.task(taskId)?.status === 'SUCCEEDED', `Runway task ${taskId} to succeed`);
    }
    expect(requestsSince(since, { service: 'runway', method: 'GET', path: `/v1/tasks/${taskId}` })).toHaveLength(looks);
    const uploads = publishedSince(since, STEP_UPLOAD);
    expect(uploads).toHaveLength(1);
    const upload = uploads[0];
    if (!upload) throw new Error('runway-callback published no upload');
    expect(uploadMessageSchema.parse(JSON.parse(upload.body)).job).toMatchObject({ item_id: item.item_id, runway_task_id: taskId });

    // step-upload: streams Runway's output into storage and reports the item completed.
    const beforeUpload = mark();
    const uploaded = await deliver(upload);
    expect(uploaded.status, functions.output()).toBe(200);
    const videoPath = `videos/${item.item_id}.mp4`;
    expect(storage.object('generated-videos', videoPath)?.sha256).toBe(runway.outputSha256(taskId));
    const reports = appCalls('report', since);
    expect(reports).toHaveLength(1);
    expect(reports[0]?.headers['authorization']).toBe(WORKER_AUTH);
    expect(reports[0]?.json).toEqual({
      item_id: item.item_id,
      worker_id: WORKER_ID,
      status: 'completed',
      video_storage_path: videoPath,
      veo_operation_id: taskId,
    });
    expect(app.item(item.item_id)).toMatchObject({ status: 'completed', video_storage_path: videoPath, veo_operation_id: taskId });
    expect(publishedSince(beforeUpload), 'messages published after the upload').toEqual([]);
  }, 60_000);
});

describe('the project root', () => {
  it('is left as it was: no install, no build output, node_modules untouched', async () => {
    expect(await projectFootprint()).toEqual(footprintBefore);
  });
});
