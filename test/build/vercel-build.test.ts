import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const output = path.join(root, '.vercel/output');
const FUNCTIONS = ['cron-poll', 'runway-callback', 'step-upload'] as const;

const vcConfig = z.object({ handler: z.string(), runtime: z.string(), maxDuration: z.number() });
const outputConfig = z.object({ crons: z.array(z.object({ path: z.string(), schedule: z.string() })) });

describe('vercel build, offline with the pinned CLI', () => {
  let log = '';

  beforeAll(async () => {
    const project = path.join(root, '.vercel/project.json');
    if (!existsSync(project)) {
      await mkdir(path.dirname(project), { recursive: true });
      await writeFile(project, JSON.stringify({ projectId: 'prj_local', orgId: 'team_local', settings: { framework: null } }));
    }
    const result = await run(path.join(root, 'node_modules/.bin/vercel'), ['build', '--yes'], {
      cwd: root,
      env: { ...process.env, VERCEL_TELEMETRY_DISABLED: '1', NO_UPDATE_NOTIFIER: '1' },
      maxBuffer: 16 * 1024 * 1024,
    });
    log = result.stdout + result.stderr;
  }, 240_000);

  it('completes', () => {
    expect(log).toMatch(/Build Completed/);
  });

  it.each(FUNCTIONS)('emits the %s function with its maxDuration', async (name) => {
    const raw = await readFile(path.join(output, `functions/api/${name}.func/.vc-config.json`), 'utf8');
    const config = vcConfig.parse(JSON.parse(raw));
    expect(config.handler).toBe(`api/${name}.js`);
    expect(config.runtime).toMatch(/^nodejs\d+\.x$/);
    expect(config.maxDuration).toBeGreaterThan(0);
    expect(config.maxDuration).toBeLessThanOrEqual(300);
  });

  it('declares the per-minute cron on /api/cron-poll', async () => {
    const config = outputConfig.parse(JSON.parse(await readFile(path.join(output, 'config.json'), 'utf8')));
    expect(config.crons).toEqual([{ path: '/api/cron-poll', schedule: '* * * * *' }]);
  });

  it('publishes no source files as static assets', () => {
    const staticDir = path.join(output, 'static');
    expect(existsSync(path.join(staticDir, 'lib'))).toBe(false);
    expect(existsSync(path.join(staticDir, 'dev'))).toBe(false);
    expect(existsSync(path.join(staticDir, 'package.json'))).toBe(false);
  });

  it('ships sharp\'s native parts (addon and libvips) with cron-poll, and none with step-upload', async () => {
    const nativeFiles = async (name: string): Promise<string[]> => {
      const dir = path.join(output, `functions/api/${name}.func/node_modules/@img`);
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
    const dir = path.join(output, 'functions/api/cron-poll.func');
    const fixture = path.join(root, 'dev/sandbox/fixtures/portrait-exif6.jpg');
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
    const dir = path.join(output, `functions/api/${name}.func`);
    const script = `
      import { readFileSync } from 'node:fs';
      const handler = await import(${JSON.stringify(pathToFileURL(path.join(dir, `api/${name}.js`)).href)});
      const maps = readFileSync('/proc/self/maps', 'utf8');
      process.stdout.write(JSON.stringify({ post: typeof handler.POST, libvips: maps.includes('libvips'), addon: maps.includes('sharp-linux') }));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir });
    expect(JSON.parse(stdout)).toEqual({ post: 'function', libvips: false, addon: false });
  });

  it('bundles functions that load as real ESM', async () => {
    for (const name of FUNCTIONS) {
      const dir = path.join(output, `functions/api/${name}.func`);
      const handler: unknown = await import(path.join(dir, `api/${name}.js`));
      expect(typeof (handler as Record<string, unknown>).POST).toBe('function');
    }
  });
});
