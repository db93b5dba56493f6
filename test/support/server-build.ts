import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * `npm run build` into a directory of its own, so that tests and benchmarks run the
 * self-hosted server as production does (`node dist/server/main.js`) without touching a
 * `dist/` someone else is using. It sits inside the project, so the compiled files find
 * `node_modules` as `dist/` would.
 */

const run = promisify(execFile);

/**
 * How production starts the compiled server (the Dockerfile's CMD, `npm run serve`).
 * The worker is I/O-bound: a 1 MB young generation costs a few more minor collections and
 * keeps an idle server's memory near Node's own floor.
 */
export const PRODUCTION_NODE_FLAGS = ['--enable-source-maps', '--max-semi-space-size=1'] as const;
const ROOT = path.resolve(import.meta.dirname, '../..');

export interface ServerBuild {
  /** The compiled entry: run it with `node`. */
  readonly main: string;
  remove(): Promise<void>;
}

export async function buildServer(): Promise<ServerBuild> {
  await mkdir(path.join(ROOT, '.scratch'), { recursive: true });
  const outDir = await mkdtemp(path.join(ROOT, '.scratch', 'server-build-'));
  try {
    await run(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: ROOT });
  } catch (error) {
    await rm(outDir, { recursive: true, force: true });
    const output = error as { stdout?: string; stderr?: string };
    throw new Error(`npm run build failed:\n${output.stdout ?? ''}${output.stderr ?? ''}`, { cause: error });
  }
  return {
    main: path.join(outDir, 'server', 'main.js'),
    remove: () => rm(outDir, { recursive: true, force: true }),
  };
}
