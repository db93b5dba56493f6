import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_QSTASH } from '../../server/runtime.js';
import { startLocalQStash, type LocalQStash } from '../../server/local-qstash.js';
import { startSandbox, type Sandbox } from '../../sandbox/index.js';
import { demoItems, seedSandbox } from '../../sandbox/seed.js';
import { buildServer, PRODUCTION_NODE_FLAGS, type ServerBuild } from '../support/server-build.js';
import { until } from '../support/wait.js';

const root = path.resolve(import.meta.dirname, '../..');
const WORKER_KEY = 'self-hosted-worker-key';
const RUNWAY_KEY = 'self-hosted-runway-key';

let build: ServerBuild;

beforeAll(async () => {
  build = await buildServer();
}, 120_000);

afterAll(async () => {
  await build.remove();
});

/** The compiled server as the Docker image runs it, and `npm start` handing over to it. */
const LAUNCHERS = [
  { name: 'node dist/server/main.js', command: () => [process.execPath, ...PRODUCTION_NODE_FLAGS, build.main] },
  { name: 'npm start in self-hosted mode', command: () => [path.join(root, 'node_modules/.bin/tsx'), 'sandbox/demo/start.ts'] },
] as const;

describe.each(LAUNCHERS)('$name, against an outside app, Runway and QStash', (launcher) => {
  let sandbox: Sandbox;
  let qstash: LocalQStash;
  let worker: ChildProcess;
  let dataDir: string;
  let output = '';
  let exit: Promise<number | null>;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'runway-self-hosted-'));
    sandbox = await startSandbox({
      workerApiKey: WORKER_KEY,
      runwayApiKey: RUNWAY_KEY,
      dataDir: path.join(dataDir, 'services'),
      runway: { generationMs: 500 },
    });
    await seedSandbox(sandbox, demoItems());
    // An outside QStash (QSTASH_URL and QSTASH_TOKEN set): the worker publishes there.
    qstash = await startLocalQStash({
      token: 'outside-qstash-token',
      currentSigningKey: DEV_QSTASH.currentSigningKey,
      nextSigningKey: DEV_QSTASH.nextSigningKey,
      timeScale: 0.02,
    });
    const [command = '', ...args] = launcher.command();
    worker = spawn(command, args, {
      cwd: root,
      env: {
        PATH: process.env.PATH,
        NEXT_API_URL: sandbox.nextApiUrl,
        WORKER_API_KEY: WORKER_KEY,
        RUNWAY_API_KEY: RUNWAY_KEY,
        RUNWAY_API_URL: sandbox.runwayApiUrl,
        QSTASH_URL: qstash.url,
        QSTASH_TOKEN: 'outside-qstash-token',
        QSTASH_CURRENT_SIGNING_KEY: DEV_QSTASH.currentSigningKey,
        QSTASH_NEXT_SIGNING_KEY: DEV_QSTASH.nextSigningKey,
        // The system picks the port: callbacks go to the one it listens on.
        PORT: '0',
        LOCAL_CRON_SECONDS: '1',
        LEDGER_DIR: path.join(dataDir, 'ledger'),
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    worker.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    worker.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    exit = new Promise((resolve) => worker.once('exit', (code) => resolve(code)));
    await until(() => sandbox.app.items().every((item) => item.status === 'completed' || item.status === 'failed'), 'every item to be reported', 60_000);
  }, 90_000);

  afterAll(async () => {
    if (worker.exitCode === null) worker.kill('SIGKILL');
    await qstash.close();
    await sandbox.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('finishes every item through the outside services', () => {
    const statuses = sandbox.app.items().map((item) => item.status);
    expect(statuses).toEqual(['completed', 'completed', 'failed']);
    for (const item of sandbox.app.items()) expect(item.reports).toHaveLength(1);
  });

  it('publishes to the outside QStash, with callbacks to its own port', () => {
    const destinations = new Set(qstash.messages().map((message) => new URL(message.url).pathname));
    expect(destinations).toContain('/api/runway-callback');
    expect(destinations).toContain('/api/step-upload');
    const own = /worker running on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
    expect(own).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
    expect(qstash.messages().every((message) => message.url.startsWith(`${own ?? ''}/api/`))).toBe(true);
  });

  it('keeps its ledger under LEDGER_DIR', async () => {
    const items = await readdir(path.join(dataDir, 'ledger', 'items'));
    expect(items.sort()).toEqual(demoItems().map((item) => item.item_id).sort());
  });

  it('stops cleanly on SIGTERM', async () => {
    worker.kill('SIGTERM');
    expect(await exit).toBe(0);
    expect(output).toMatch(/worker running on http:\/\/127\.0\.0\.1:\d+/);
  });
});
