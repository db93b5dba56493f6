import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startBlobFake } from '../../sandbox/blob-fake.js';
import { parseConfig, type Env } from '../../lib/config.js';
import { DEFAULT_TIMEOUTS } from '../../lib/deps.js';
import { createDeps } from '../../lib/runtime.js';
import type * as RuntimeModule from '../../lib/runtime.js';
import { closeLoopbacks, jsonOf, reply, serveScript, type Loopback } from '../clients/loopback.js';
import { captureLog } from '../support/extra-log.js';

const WORKER_KEY = 'wk_test_0123456789';
const RUNWAY_KEY = 'key_test_0123456789';

let ledgerDir: string;
let app: Loopback;
let runway: Loopback;

beforeEach(async () => {
  ledgerDir = await mkdtemp(path.join(tmpdir(), 'runtime-ledger-'));
  app = await serveScript(reply(200, { success: true, data: { leased_until: '2026-11-01T00:10:00.000Z' } }));
  runway = await serveScript(reply(204));
});
afterEach(async () => {
  await closeLoopbacks();
  await rm(ledgerDir, { recursive: true, force: true });
});

function workerEnv(overrides: Env = {}): Env {
  return {
    NEXT_API_URL: `${app.url}/api`,
    WORKER_API_KEY: WORKER_KEY,
    WORKER_ID: 'worker-a',
    RUNWAY_API_KEY: RUNWAY_KEY,
    RUNWAY_API_URL: runway.url,
    QSTASH_TOKEN: 'qstash-token-0123',
    QSTASH_CURRENT_SIGNING_KEY: 'sig_current_0123',
    QSTASH_NEXT_SIGNING_KEY: 'sig_next_0123',
    WORKER_BASE_URL: 'https://worker.test',
    LEDGER_DIR: ledgerDir,
    LOG_LEVEL: 'warn',
    ...overrides,
  };
}

describe('deps built from a config', () => {
  it('log through a logger of their own at LOG_LEVEL when none is given', () => {
    const deps = createDeps(parseConfig(workerEnv()));

    expect(deps.log.level).toBe('warn');
  });

  it('take the logger, clock, timeouts and backpressure they are given', () => {
    const log = captureLog().logger;
    const now = (): number => 42;

    const deps = createDeps(parseConfig(workerEnv()), { log, now, timeouts: { appMs: 1_000 }, backpressure: false });

    expect(deps).toMatchObject({ log, now, backpressure: false, timeouts: { ...DEFAULT_TIMEOUTS, appMs: 1_000 } });
  });

  it('default to the system clock, the default timeouts and backpressure on', () => {
    const deps = createDeps(parseConfig(workerEnv()), { log: captureLog().logger });

    expect(deps).toMatchObject({ now: Date.now, backpressure: true, timeouts: DEFAULT_TIMEOUTS });
  });

  it('call the app at NEXT_API_URL with the worker key and WORKER_ID', async () => {
    const deps = createDeps(parseConfig(workerEnv()), { log: captureLog().logger });

    await deps.app.heartbeat('item-1', 600);

    const [request] = app.received;
    expect(request).toMatchObject({ url: '/api/worker/heartbeat', headers: { authorization: `Worker ${WORKER_KEY}` } });
    expect(jsonOf(request)).toEqual({ item_id: 'item-1', worker_id: 'worker-a', extend_seconds: 600 });
  });

  it('call Runway at RUNWAY_API_URL with the Runway key', async () => {
    const deps = createDeps(parseConfig(workerEnv()), { log: captureLog().logger });

    await deps.runway.cancelTask('task-1');

    expect(runway.received[0]).toMatchObject({ method: 'DELETE', url: '/v1/tasks/task-1', headers: { authorization: `Bearer ${RUNWAY_KEY}` } });
  });

  it('keep the ledger in LEDGER_DIR when there is no Blob token', async () => {
    const deps = createDeps(parseConfig(workerEnv()), { log: captureLog().logger });

    await deps.ledger.claim({ itemId: 'item-1', attempt: 1 }, 'submitting', { at: 'now' });

    expect(await readdir(path.join(ledgerDir, 'items', 'item-1', '1'))).toEqual(['submitting.json']);
  });

  it('keep the ledger in Vercel Blob when a token is configured', async () => {
    const fake = await startBlobFake();
    const apiUrlBefore = process.env.VERCEL_BLOB_API_URL;
    process.env.VERCEL_BLOB_API_URL = fake.apiUrl;
    try {
      const deps = createDeps(parseConfig(workerEnv({ BLOB_READ_WRITE_TOKEN: fake.token })), { log: captureLog().logger });

      await deps.ledger.claim({ itemId: 'item-1', attempt: 1 }, 'submitting', { at: 'now' });

      expect([...fake.blobs().keys()]).toEqual(['items/item-1/1/submitting.json']);
      expect(await readdir(ledgerDir)).toEqual([]);
    } finally {
      if (apiUrlBefore === undefined) delete process.env.VERCEL_BLOB_API_URL;
      else process.env.VERCEL_BLOB_API_URL = apiUrlBefore;
      await fake.close();
    }
  });
});

describe("the deployed functions' deps", () => {
  /** runtime.ts as a fresh module, so each case starts with nothing cached. */
  async function freshRuntime(): Promise<typeof RuntimeModule> {
    vi.resetModules();
    return import('../../lib/runtime.js');
  }

  it('are built once per process: a later call gets the same deps, whatever env it passes', async () => {
    const { runtimeDeps } = await freshRuntime();

    const first = runtimeDeps(workerEnv());
    const second = runtimeDeps(workerEnv({ WORKER_ID: 'worker-b' }));

    expect(second).toBe(first);
    expect(second.config.workerId).toBe('worker-a');
  });

  it('are read from process.env when no env is passed', async () => {
    const env = workerEnv({ WORKER_ID: 'worker-from-process-env' });
    const before = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
    Object.assign(process.env, env);
    try {
      const { runtimeDeps } = await freshRuntime();

      expect(runtimeDeps().config).toMatchObject({ workerId: 'worker-from-process-env', nextApiUrl: `${app.url}/api`, ledgerDir });
    } finally {
      for (const [name, value] of Object.entries(before)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});
