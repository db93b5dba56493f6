import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
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

  it('bundles functions that load as real ESM', async () => {
    for (const name of FUNCTIONS) {
      const dir = path.join(output, `functions/api/${name}.func`);
      const handler: unknown = await import(path.join(dir, `api/${name}.js`));
      expect(typeof (handler as Record<string, unknown>).POST).toBe('function');
    }
  });
});
