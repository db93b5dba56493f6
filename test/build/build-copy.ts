import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * `vercel build` run on a copy of the project in a temporary directory, so that a build
 * (and the dependency install a builder would run) never writes into the checkout that
 * the other tests load their modules from.
 */

const run = promisify(execFile);
const MAX_BUFFER_BYTES = 16 * 1024 * 1024;

export const PROJECT_ROOT = path.resolve(import.meta.dirname, '../..');

/** What `vercel link` writes; with it the pinned CLI builds offline (contract §4). */
const PROJECT_LINK = { projectId: 'prj_local', orgId: 'team_local', settings: { framework: null } } as const;

export interface BuiltCopy {
  /** The copy of the project the build ran in. */
  readonly dir: string;
  /** Its `.vercel/output` (Build Output API v3). */
  readonly output: string;
  /** What the CLI printed. */
  readonly log: string;
  remove(): Promise<void>;
}

/** The project's files as a deployment would upload them: tracked or not ignored, and present. */
async function projectFiles(root: string): Promise<string[]> {
  const { stdout } = await run('git', ['-C', root, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    maxBuffer: MAX_BUFFER_BYTES,
  });
  const listed = [...new Set(stdout.split('\0').filter((file) => file !== ''))];
  const present = await Promise.all(
    listed.map(async (file) => {
      const stats = await lstat(path.join(root, file)).catch(() => undefined);
      return stats?.isFile() === true ? file : undefined;
    }),
  );
  return present.filter((file): file is string => file !== undefined);
}

async function copyProject(root: string, dir: string): Promise<void> {
  for (const file of await projectFiles(root)) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await copyFile(path.join(root, file), path.join(dir, file));
  }
  // Hard links, not a symlink: the file tracer leaves a symlinked node_modules out of the
  // functions. Nothing writes to these files, since the install is skipped (below).
  await run('cp', ['-al', path.join(root, 'node_modules'), path.join(dir, 'node_modules')]);
  await mkdir(path.join(dir, '.vercel'), { recursive: true });
  await writeFile(path.join(dir, '.vercel/project.json'), JSON.stringify(PROJECT_LINK));
}

/** Copies the project and runs the pinned CLI's `vercel build` in the copy. */
export async function buildCopyOfProject(root: string = PROJECT_ROOT): Promise<BuiltCopy> {
  const dir = await mkdtemp(path.join(tmpdir(), 'runway-worker-build-'));
  const remove = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    await copyProject(root, dir);
    const result = await run(path.join(dir, 'node_modules/.bin/vercel'), ['build', '--yes'], {
      cwd: dir,
      env: {
        ...process.env,
        VERCEL_TELEMETRY_DISABLED: '1',
        NO_UPDATE_NOTIFIER: '1',
        // The builders install nothing when told the install for this package.json already
        // ran: the hard-linked node_modules is that install, and the build stays offline.
        VERCEL_INSTALL_COMPLETED: '1',
        VERCEL_INSTALL_COMPLETED_PATH: path.join(dir, 'package.json'),
      },
      maxBuffer: MAX_BUFFER_BYTES,
    });
    return { dir, output: path.join(dir, '.vercel/output'), log: result.stdout + result.stderr, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

async function mtimeOf(file: string): Promise<string> {
  const stats = await lstat(file).catch(() => undefined);
  return stats ? stats.mtime.toISOString() : 'absent';
}

async function newestMtimeUnder(dir: string): Promise<string> {
  const entries = await readdir(dir, { recursive: true }).catch(() => undefined);
  if (entries === undefined) return 'absent';
  let newest = (await lstat(dir)).mtimeMs;
  for (const entry of entries) newest = Math.max(newest, (await lstat(path.join(dir, entry))).mtimeMs);
  return new Date(newest).toISOString();
}

async function sha256Of(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/**
 * What a build or a dependency install would change in a project root. `git status` is
 * read for the manifests only, so that edits made elsewhere in the checkout meanwhile do
 * not count; `--no-optional-locks` keeps it from refreshing the index.
 */
export async function projectFootprint(root: string = PROJECT_ROOT): Promise<Record<string, string>> {
  const manifests = ['package.json', 'package-lock.json'];
  const { stdout: status } = await run('git', [
    '-C',
    root,
    '--no-optional-locks',
    'status',
    '--porcelain=v1',
    '--untracked-files=all',
    '--',
    ...manifests,
  ]);
  return {
    'git status of the manifests': status,
    'package.json sha256': await sha256Of(path.join(root, 'package.json')),
    'package-lock.json sha256': await sha256Of(path.join(root, 'package-lock.json')),
    'node_modules mtime': await mtimeOf(path.join(root, 'node_modules')),
    'node_modules/.package-lock.json mtime': await mtimeOf(path.join(root, 'node_modules/.package-lock.json')),
    'newest mtime under .vercel': await newestMtimeUnder(path.join(root, '.vercel')),
  };
}
