import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Env } from '../../lib/config.js';
import { present, startWorkerRuntime, type WorkerRuntime, type WorkerRuntimeOptions } from '../../server/runtime.js';
import { startSandbox, type Sandbox, type SandboxOptions } from '../index.js';
import { demoItems, seedSandbox, type SeedItem } from '../seed.js';

/**
 * The runtime behind `npm start`, the tests, chaos runs and benchmarks: the self-hosted
 * worker (`server/runtime.ts`) and — in demo mode — sandbox stand-ins for the app, Runway
 * and storage, seeded with sample photos.
 */

export const DEMO_KEYS = { worker: 'demo-worker-key', runway: 'demo-runway-key' } as const;

export type LocalMode = 'demo' | 'self-hosted';

/** Demo when neither the app nor Runway is configured; both set is self-hosted; one alone is a mistake. */
export function localModeOf(env: Env): LocalMode {
  const app = present(env.NEXT_API_URL);
  const runway = present(env.RUNWAY_API_KEY);
  if (!app && !runway) return 'demo';
  if (app && runway) return 'self-hosted';
  throw new Error(
    `Set both NEXT_API_URL and RUNWAY_API_KEY (self-hosted mode) or neither (demo mode); only ${app ? 'NEXT_API_URL' : 'RUNWAY_API_KEY'} is set.`,
  );
}

export interface LocalRuntimeOptions extends WorkerRuntimeOptions {
  /** Demo data directory (wiped at start). */
  readonly dataDir?: string;
  /** Demo only: sandbox settings (faults, generation time, output size). */
  readonly sandbox?: Partial<Omit<SandboxOptions, 'workerApiKey' | 'runwayApiKey' | 'dataDir'>>;
  /** Demo only: the items to seed (default: the three demo photos). */
  readonly items?: readonly SeedItem[];
  /** Demo only: keep the ledger in this Vercel Blob store (the loopback Blob fake in tests). */
  readonly ledgerBlobToken?: string;
}

export interface LocalRuntime extends WorkerRuntime {
  readonly mode: LocalMode;
  readonly sandbox: Sandbox | undefined;
  readonly items: readonly SeedItem[];
}

export async function startLocalRuntime(options: LocalRuntimeOptions): Promise<LocalRuntime> {
  const mode = localModeOf(options.env);
  if (mode === 'self-hosted') {
    const worker = await startWorkerRuntime(options);
    return { ...worker, mode, sandbox: undefined, items: [] };
  }
  const dataDir = path.resolve(options.dataDir ?? '.data/demo');
  await rm(dataDir, { recursive: true, force: true });
  const sandbox = await startSandbox({
    workerApiKey: DEMO_KEYS.worker,
    runwayApiKey: DEMO_KEYS.runway,
    dataDir: path.join(dataDir, 'sandbox'),
    ...options.sandbox,
  });
  try {
    const items = options.items ?? demoItems();
    await seedSandbox(sandbox, items);
    const worker = await startWorkerRuntime({
      ...options,
      env: {
        ...options.env,
        NEXT_API_URL: sandbox.nextApiUrl,
        WORKER_API_KEY: DEMO_KEYS.worker,
        RUNWAY_API_KEY: DEMO_KEYS.runway,
        RUNWAY_API_URL: sandbox.runwayApiUrl,
        // The demo never touches real services: its ledger is a local directory
        // (or, in tests, the loopback Blob fake).
        BLOB_READ_WRITE_TOKEN: options.ledgerBlobToken,
        LEDGER_DIR: path.join(dataDir, 'ledger'),
      },
    });
    const close = async (): Promise<void> => {
      await worker.close();
      await sandbox.close().catch(() => undefined);
    };
    return { ...worker, mode, sandbox, items, close };
  } catch (error) {
    await sandbox.close().catch(() => undefined);
    throw error;
  }
}
