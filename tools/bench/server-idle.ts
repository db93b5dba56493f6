import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { startSandbox } from '../../sandbox/index.js';
import { buildServer, PRODUCTION_NODE_FLAGS } from '../../test/support/server-build.js';
import type { Print } from './stats.js';

/**
 * The compiled self-hosted server (`node dist/server/main.js`) idling against an empty app:
 * its resident memory once its cron ticks run and find nothing to do.
 */

const MB = 1024 * 1024;
const IDLE_TICKS = 5;
const SAMPLES = 10;
const SAMPLE_INTERVAL_MS = 200;

const healthSchema = z.object({ ok: z.boolean(), last_tick_at: z.string().nullable() });

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kb) * 1024;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function benchServerIdle(print: Print): Promise<void> {
  const build = await buildServer();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bench-server-idle-'));
  const sandbox = await startSandbox({ workerApiKey: 'bench', runwayApiKey: 'bench', dataDir: path.join(dataDir, 'services') });
  const started = performance.now();
  const server = spawn(process.execPath, [...PRODUCTION_NODE_FLAGS, build.main], {
    env: {
      PATH: process.env.PATH,
      NEXT_API_URL: sandbox.nextApiUrl,
      WORKER_API_KEY: 'bench',
      RUNWAY_API_KEY: 'bench',
      RUNWAY_API_URL: sandbox.runwayApiUrl,
      PORT: '0',
      LOCAL_CRON_SECONDS: '1',
      LEDGER_DIR: path.join(dataDir, 'ledger'),
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let output = '';
    server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let url: string | undefined;
    while (url === undefined) {
      if (server.exitCode !== null) throw new Error(`the server exited with ${server.exitCode}: ${output}`);
      url = /worker running on (http:\/\/\S+)/.exec(output)?.[1];
      if (url === undefined) await pause(20);
    }
    print('server_start_ms', performance.now() - started, 'ms');
    const firstTick = Date.now();
    for (;;) {
      const health = healthSchema.parse(await (await fetch(`${url}/healthz`)).json());
      if (health.last_tick_at !== null && Date.now() - firstTick >= IDLE_TICKS * 1000) break;
      await pause(100);
    }
    const samples: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      samples.push(await rssBytes(server.pid ?? 0));
      await pause(SAMPLE_INTERVAL_MS);
    }
    print('server_idle_rss_mb', Math.max(...samples) / MB, 'MB');
  } finally {
    if (server.exitCode === null) {
      server.kill('SIGTERM');
      await once(server, 'exit');
    }
    await sandbox.close();
    await rm(dataDir, { recursive: true, force: true });
    await build.remove();
  }
}
