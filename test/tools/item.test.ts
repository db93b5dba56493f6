import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Env } from '../../lib/config.js';
import { formatItem } from '../../tools/item/format.js';
import { parseEnvFile } from '../../tools/item/env-file.js';
import { runItemCli, USAGE } from '../../tools/item/cli.js';
import { finishedUpload, submit } from '../support/flow.js';
import { CRON_SECRET, closeHarnesses, seedItem, startHarness, workerEnv, type Harness } from '../support/harness.js';

/**
 * `npm run item -- <item_id>`: the item lookup for a person at a terminal, reading the ledger
 * of its environment directly, or asking a deployment with `--url`.
 */

const dirs: string[] = [];
afterEach(async () => {
  await closeHarnesses();
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function run(argv: readonly string[], env: Env): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runItemCli({
    argv,
    env,
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
  });
  return { code, stdout, stderr };
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'item-cli-'));
  dirs.push(dir);
  return dir;
}

async function completedItem(): Promise<{ harness: Harness; itemId: string; taskId: string }> {
  const item = seedItem('landscape.jpg');
  const harness = await startHarness({ items: [item] });
  const upload = await finishedUpload(harness, item.item_id);
  expect((await harness.deliver('/api/step-upload', upload)).status).toBe(200);
  return { harness, itemId: item.item_id, taskId: upload.job.runway_task_id };
}

describe('an item the worker finished, read from the ledger of this environment', () => {
  it('prints one block per attempt: task, model, times, credits, upload and report, and exits 0', async () => {
    const { harness, itemId, taskId } = await completedItem();

    const result = await run([itemId], workerEnv(harness));

    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const lines = result.stdout.split('\n');
    expect(lines[0]).toBe(`item ${itemId} · 1 attempt in the ledger`);
    expect(result.stdout).toContain('attempt 1 · reported');
    expect(result.stdout).toMatch(/^ {2}cost {9}25 credits \(\$0\.25, from Runway\)$/m);
    expect(result.stdout).toContain(`  generation 1 · task ${taskId}`);
    expect(result.stdout).toMatch(/^ {4}model {8}gen4_turbo, 5 s, \d+:\d+$/m);
    expect(result.stdout).toMatch(/^ {4}credits {6}estimated 25 at create$/m);
    expect(result.stdout).toMatch(new RegExp(`^ {2}uploaded {5}\\S+ · videos/${itemId}\\.mp4 · [\\d.]+ KB$`, 'm'));
    expect(result.stdout).toMatch(new RegExp(`^ {2}report {7}completed at \\S+ · videos/${itemId}\\.mp4$`, 'm'));
    expect(result.stdout).toMatch(/^ {2}outcome {6}sent$/m);
  });

  it('reads the environment from --env-file, the variables already set winning', async () => {
    const { harness, itemId } = await completedItem();
    const file = path.join(await tempDir(), 'worker.env');
    const lines = Object.entries(workerEnv(harness)).map(([name, value]) => `${name}=${value ?? ''}`);
    await writeFile(file, `# the harness's worker\n${lines.join('\n')}\nLEDGER_DIR="/nowhere"\n`);

    const fromFile = await run([itemId, '--env-file', file], { LEDGER_DIR: harness.runtime.deps.config.ledgerDir });
    const overridden = await run([itemId, `--env-file=${file}`], {});

    expect(fromFile.code).toBe(0);
    expect(fromFile.stdout).toContain('attempt 1 · reported');
    // Without LEDGER_DIR from the shell, the file's /nowhere is read: the item is unknown there.
    expect(overridden.code).toBe(1);
  });

  it('prints the lookup as JSON with --json, the same answer ?item= gives', async () => {
    const { harness, itemId } = await completedItem();

    const result = await run([itemId, '--json'], workerEnv(harness));
    const viaHttp = await harness.cron(`?item=${itemId}`);

    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(viaHttp.json);
  });

  it('exits 1 for an id the ledger has never seen, saying where it looked', async () => {
    const harness = await startHarness();

    const result = await run(['0b6f3c1e-2d4a-4f5b-9c8d-7e6f5a4b3c2d'], workerEnv(harness));

    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'no record of item 0b6f3c1e-2d4a-4f5b-9c8d-7e6f5a4b3c2d in the ledger: it was never leased by this worker, or LEDGER_DIR / the Blob store is another one\n',
    );
  });

  it('shows a running task with its live status from Runway', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 60_000 } } });
    await submit(harness, item.item_id);

    const result = await run([item.item_id], workerEnv(harness));

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('attempt 1 · at-runway');
    expect(result.stdout).toMatch(/^ {4}runway now {3}(PENDING|RUNNING)/m);
  });
});

describe('an environment without the full configuration', () => {
  it('reads the ledger named by LEDGER_DIR alone, and says why Runway was not asked', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 60_000 } } });
    await submit(harness, item.item_id);

    const result = await run([item.item_id], { LEDGER_DIR: harness.runtime.deps.config.ledgerDir });

    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ {4}runway now {3}runway: not asked \(the configuration is incomplete: NEXT_API_URL is missing; .*\)$/m);
    expect(result.stdout).toMatch(/^ {2}cost {9}25 credits/m);
  });

  it('exits 1 with the problems when there is no ledger to read either', async () => {
    const result = await run(['some-item'], {});

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('NEXT_API_URL is missing');
    expect(result.stderr).toContain('Set LEDGER_DIR or BLOB_READ_WRITE_TOKEN to read a ledger without the rest.');
  });
});

describe('asking a deployment with --url', () => {
  it('prints what the deployment answered, exactly as a local read prints it', async () => {
    const { harness, itemId } = await completedItem();

    const remote = await run([itemId, '--url', `${harness.url}/`], { CRON_SECRET });
    const local = await run([itemId], workerEnv(harness));

    expect(remote.code).toBe(0);
    expect(remote.stdout).toBe(local.stdout);
  });

  it('exits 1 with the message for an unknown id, and for a wrong secret', async () => {
    const harness = await startHarness();

    const unknown = await run(['never-leased', `--url=${harness.url}`], { CRON_SECRET });
    const refused = await run(['never-leased', '--url', harness.url], { CRON_SECRET: 'wrong' });

    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^no record of item never-leased in the ledger/);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^lookup failed: http:\/\/127\.0\.0\.1:\d+ answered 401: missing or wrong Authorization/);
  });

  it('refuses to ask without CRON_SECRET or with a URL that is not http(s)', async () => {
    const noSecret = await run(['x1', '--url', 'https://example.invalid'], {});
    const notUrl = await run(['x1', '--url', 'not a url'], { CRON_SECRET });
    const ftp = await run(['x1', '--url', 'ftp://example.invalid'], { CRON_SECRET });

    expect(noSecret).toMatchObject({ code: 1, stderr: 'lookup failed: CRON_SECRET is not set: --url needs it to ask the deployment\n' });
    expect(notUrl).toMatchObject({ code: 1, stderr: 'lookup failed: --url is not a URL: not a url\n' });
    expect(ftp).toMatchObject({ code: 1, stderr: 'lookup failed: --url must be http(s): ftp://example.invalid\n' });
  });

  it('passes on a 400 for an id the deployment refuses', async () => {
    const harness = await startHarness();

    const result = await run(['bad id', '--url', harness.url], { CRON_SECRET });

    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^item must be an item id/);
  });
});

describe('usage', () => {
  it.each([
    [[], 'the item id is missing'],
    [['a', 'b'], 'one item id at a time (also got b)'],
    [['a', '--verbose'], 'unknown option --verbose'],
    [['a', '--url'], '--url needs a value'],
    [['a', '--env-file='], '--env-file needs a value'],
  ])('exits 2 for %j: %s', async (argv, message) => {
    const result = await run(argv, {});

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`${message}\n\n${USAGE}`);
  });

  it('prints the usage for --help and exits 0', async () => {
    expect(await run(['--help'], {})).toEqual({ code: 0, stdout: USAGE, stderr: '' });
  });

  it('exits 2 for an id with unsafe characters, before reading anything', async () => {
    const result = await run(['../../etc'], { LEDGER_DIR: '/nonexistent' });

    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^item must be an item id/);
  });

  it('exits 2 when the env file cannot be read', async () => {
    const result = await run(['a', '--env-file', '/nonexistent/worker.env'], {});

    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^cannot read --env-file \/nonexistent\/worker\.env: ENOENT/);
  });

  it('reads env files with export, comments and quotes', () => {
    expect(parseEnvFile('# c\nexport A=1\nB = "two # not a comment"\nC=three # a comment\nD=\'4\'\nnot a line\n\nE=')).toEqual({
      A: '1',
      B: 'two # not a comment',
      C: 'three',
      D: '4',
      E: '',
    });
  });
});

describe('npm run item, as a process', () => {
  it('runs tools/item.ts with tsx and exits with the lookup\'s code', async () => {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        path.resolve('node_modules/.bin/tsx'),
        [path.resolve('tools/item.ts'), 'some-item'],
        { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LEDGER_DIR: path.join(tmpdir(), 'item-cli-empty-ledger') }, timeout: 60_000 },
        (error, _stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stderr }),
      );
    });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^no record of item some-item in the ledger/);
  });
});

describe('the printed block', () => {
  it('shows replaced generations, errors from Runway, abandoned attempts and estimates', () => {
    const text = formatItem({
      item_id: 'i1',
      attempts: [
        {
          attempt: 1,
          state: 'abandoned',
          generations: [
            { generation: 1, runway_task_id: 't1', model: 'veo3.1', duration: 8, ratio: '1280:720', replaced: { failure_code: 'INTERNAL' }, final_credits: 160 },
            { generation: 2, runway_task_id: 't2', runway: { status: 'NOT_FOUND', error: 'runway: no such task (cancelled or deleted)' } },
            { generation: 3, runway: { error: 'runway: not asked' } },
            { generation: 4, runway: { status: 'FAILED', progress: 0.5, failure_code: 'INTERNAL', cost_credits: 1 }, replaced: {} },
          ],
          abandoned: { reason: 'lease lost (heartbeat 404)', at: 'T' },
          report: { status: 'failed', at: 'T', outcome: 'refused: the lease was lost' },
          uploaded: { storage_path: 'videos/i1.mp4', bytes: 3 * 1024 * 1024, at: 'T' },
          credits: 320,
          credits_source: 'estimate',
          usd: 3.2,
        },
      ],
    });

    expect(text).toContain('  cost         320 credits ($3.20, estimated from the model table)');
    expect(text).toContain('    credits      160 at the end');
    expect(text).toContain('    replaced     failed transiently (INTERNAL); a new generation followed');
    expect(text).toContain('    runway now   NOT_FOUND · runway: no such task (cancelled or deleted)');
    expect(text).toContain('  generation 3 · no task');
    expect(text).toContain('    runway now   runway: not asked');
    expect(text).toContain('    runway now   FAILED · 50 % · INTERNAL · cost 1 credit');
    expect(text).toContain('    replaced     failed transiently; a new generation followed');
    expect(text).toContain('  uploaded     T · videos/i1.mp4 · 3.0 MB');
    expect(text).toContain('  report       failed at T\n');
    expect(text).toContain('  abandoned    T · lease lost (heartbeat 404)');
  });
});
