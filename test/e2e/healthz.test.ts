import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startLocalRuntime, type LocalRuntime } from '../../sandbox/demo/local-runtime.js';
import { UNHEALTHY_AFTER_INTERVALS } from '../../server/runtime.js';
import { silentLogger } from '../support/harness.js';

/**
 * `GET /healthz` of the self-hosted server, the container's HEALTHCHECK: healthy while cron
 * ticks complete, unhealthy once none has completed for three intervals.
 */

const opened: { runtime: LocalRuntime; dataDir: string }[] = [];

afterEach(async () => {
  for (const { runtime, dataDir } of opened.splice(0)) {
    await runtime.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});

async function start(appHangs: boolean): Promise<LocalRuntime> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'runway-healthz-'));
  const runtime = await startLocalRuntime({
    env: { CRON_SECRET: 'healthz-cron-secret', LOG_LEVEL: 'silent', LOCAL_CRON_SECONDS: '1' },
    port: 0,
    dataDir,
    items: [],
    log: silentLogger(),
    // A worker API that holds every request: cron runs start but never complete.
    ...(appHangs ? { sandbox: { faults: { app: { timeoutRate: 1, hangMs: 60_000 } } } } : {}),
  });
  opened.push({ runtime, dataDir });
  return runtime;
}

interface HealthAnswer {
  readonly status: number;
  readonly json: { ok: boolean; last_tick_at: string | null; tick_interval_seconds: number; detail?: string };
}

async function health(runtime: LocalRuntime): Promise<HealthAnswer> {
  const response = await fetch(`${runtime.url}/healthz`);
  return { status: response.status, json: (await response.json()) as HealthAnswer['json'] };
}

describe('GET /healthz of the self-hosted server', () => {
  it('answers 200 with the last completed tick while cron ticks complete', async () => {
    const runtime = await start(false);

    const startedAt = Date.now();
    let answer = await health(runtime);
    while (answer.json.last_tick_at === null) {
      expect(Date.now() - startedAt).toBeLessThan(10_000);
      await new Promise((resolve) => setTimeout(resolve, 50));
      answer = await health(runtime);
    }

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ ok: true, tick_interval_seconds: 1 });
    expect(Date.parse(answer.json.last_tick_at ?? '')).toBeGreaterThan(Date.now() - 5_000);
  });

  it(`turns 503 once no tick has completed for ${UNHEALTHY_AFTER_INTERVALS} intervals`, async () => {
    const runtime = await start(true);
    const startedAt = Date.now();

    const first = await health(runtime);
    expect(first.status).toBe(200);
    expect(first.json.last_tick_at).toBeNull();

    let answer = first;
    while (answer.status === 200) {
      expect(Date.now() - startedAt).toBeLessThan(10_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      answer = await health(runtime);
    }

    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(UNHEALTHY_AFTER_INTERVALS * 1000);
    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ ok: false, last_tick_at: null, detail: 'no cron tick has completed for 3 intervals' });
  });
});
