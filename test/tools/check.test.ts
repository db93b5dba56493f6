import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBlobFake } from '../../sandbox/blob-fake.js';
import { startWorkerServer, type WorkerServer } from '../../server/worker-server.js';
import { parseConfig } from '../../lib/config.js';
import { createDeps } from '../../lib/runtime.js';
import { checkCallback, type PreflightReport } from '../../lib/steps/preflight.js';
import { preflightHere } from '../../tools/cli/local-preflight.js';
import { formatPreflight } from '../../tools/cli/preflight-table.js';
import { closeStandIns, startStandIn, type StandInReply } from '../support/extra-stand-in.js';
import { CRON_SECRET, closeHarnesses, startHarness, workerEnv, type Harness } from '../support/harness.js';
import { runCli, writeEnvFile, type CliRun } from './run-cli.js';
import { REFUSED_URL } from '../support/refused.js';

/**
 * `npm run check`: the preflight of `GET /api/cron-poll?check=1`, run from an env file
 * against the sandbox services, or asked of a running worker with `--url`. One row per
 * check, a fix under each failing row, exit 1 when any fails.
 */

type Variant = 'good' | 'badAppKey' | 'badRunwayKey' | 'badQStashToken' | 'unwritableLedger' | 'missingKey' | 'url' | 'urlWrongSecret' | 'urlIncomplete';

let harness: Harness;
let dir: string;
let incomplete: WorkerServer;
let env: Record<string, string>;
const runs = {} as Record<Variant, CliRun>;

/** Every secret the good env holds: none may ever be printed. */
const secretsOf = (values: Record<string, string>): string[] =>
  ['WORKER_API_KEY', 'RUNWAY_API_KEY', 'QSTASH_TOKEN', 'QSTASH_CURRENT_SIGNING_KEY', 'QSTASH_NEXT_SIGNING_KEY', 'CRON_SECRET'].map(
    (name) => values[name] ?? '',
  );

async function envFile(name: string, changes: Record<string, string | undefined>): Promise<string> {
  return writeEnvFile(path.join(dir, `${name}.env`), { ...env, ...changes });
}

/** Runs a few commands at once: the machine's two cores are shared. */
async function inBatches(jobs: [Variant, () => Promise<CliRun>][], size = 3): Promise<void> {
  for (let i = 0; i < jobs.length; i += size) {
    await Promise.all(jobs.slice(i, i + size).map(async ([variant, job]) => (runs[variant] = await job())));
  }
}

beforeAll(async () => {
  harness = await startHarness();
  dir = await mkdtemp(path.join(tmpdir(), 'check-cli-'));
  const base = workerEnv(harness);
  env = Object.fromEntries(Object.entries({ ...base, CRON_SECRET }).filter((entry): entry is [string, string] => entry[1] !== undefined));
  const ledgerFile = path.join(dir, 'ledger-is-a-file');
  await writeFile(ledgerFile, 'not a folder');
  // A deployment whose configuration lacks WORKER_API_KEY: its handlers answer 500 with the problems.
  incomplete = await startWorkerServer(() => createDeps(parseConfig({ ...env, WORKER_API_KEY: undefined })));

  const good = await envFile('good', {});
  await inBatches([
    ['good', () => runCli('check', ['--env-file', good])],
    ['badAppKey', async () => runCli('check', ['--env-file', await envFile('bad-app-key', { WORKER_API_KEY: 'wk_not-the-right-key' })])],
    ['badRunwayKey', async () => runCli('check', ['--env-file', await envFile('bad-runway-key', { RUNWAY_API_KEY: 'key_not-the-right-one' })])],
    ['badQStashToken', async () => runCli('check', ['--env-file', await envFile('bad-qstash', { QSTASH_TOKEN: 'not-the-right-token' })])],
    ['unwritableLedger', async () => runCli('check', ['--env-file', await envFile('ledger', { LEDGER_DIR: ledgerFile })])],
    ['missingKey', async () => runCli('check', ['--env-file', await envFile('missing', { WORKER_API_KEY: undefined })])],
    ['url', () => runCli('check', ['--env-file', good, '--url', harness.url])],
    ['urlWrongSecret', async () => runCli('check', ['--env-file', await envFile('wrong-secret', { CRON_SECRET: 'not-the-cron-secret' }), '--url', harness.url])],
    ['urlIncomplete', () => runCli('check', ['--env-file', good, '--url', incomplete.url])],
  ]);
}, 90_000);

afterAll(async () => {
  await incomplete.close();
  await closeHarnesses();
  await rm(dir, { recursive: true, force: true });
});

interface PrintedRow {
  readonly result: string;
  readonly detail: string;
  /** The `fix:` line under the row, when there is one. */
  readonly fix: string | undefined;
}

/** The row of the check table whose first column is `name`. */
function rowOf(run: CliRun, name: string): PrintedRow {
  const lines = run.stdout.split('\n');
  const index = lines.findIndex((line) => line.startsWith(`${name}  `));
  const line = lines[index];
  if (line === undefined) throw new Error(`no "${name}" row in:\n${run.stdout}`);
  const [, result = '', detail = ''] = /^.+?\s{2,}(ok|FAIL|skipped)\s{2,}(.*)$/.exec(line) ?? [];
  const next = lines[index + 1]?.trim();
  return { result, detail, fix: next?.startsWith('fix: ') ? next.slice('fix: '.length) : undefined };
}

const ROWS = ['configuration', 'app worker API', 'Runway', 'QStash', 'ledger', 'callback URL'] as const;

/** Only `failing` failed, with a fix; every other row passed; the command exits 1. */
function expectOnlyFailing(run: CliRun, failing: (typeof ROWS)[number], fix: string | RegExp): PrintedRow {
  expect(run.code).toBe(1);
  const row = rowOf(run, failing);
  expect(row.result).toBe('FAIL');
  if (typeof fix === 'string') expect(row.fix).toBe(fix);
  else expect(row.fix).toMatch(fix);
  for (const other of ROWS.filter((name) => name !== failing)) expect(rowOf(run, other)).toMatchObject({ result: 'ok', fix: undefined });
  expect(run.stdout).toContain('1 of 6 checks failed');
  return row;
}

/** The output from the table on: the first line only says where the configuration came from. */
const tablesOf = (run: CliRun): string => run.stdout.split('\n').slice(1).join('\n');

describe('npm run check with a good configuration against the sandbox', () => {
  it('passes every row, exits 0 and leases nothing', () => {
    const run = runs.good;
    expect(run.code).toBe(0);
    for (const name of ROWS) expect(rowOf(run, name)).toMatchObject({ result: 'ok', fix: undefined });
    expect(rowOf(run, 'app worker API').detail).toBe(`key accepted — ${env.NEXT_API_URL}`);
    expect(rowOf(run, 'ledger').detail).toBe(`writable and readable — directory ${path.resolve(env.LEDGER_DIR ?? '')}`);
    expect(rowOf(run, 'callback URL').detail).toBe(`QStash calls back ${harness.url}`);
    expect(run.stdout).toContain('all 6 checks passed');
    expect(harness.appCalls('next-task')).toEqual([]);
  });

  it("shows Runway's credit balance, and per model its limits and today's usage", () => {
    const run = runs.good;
    expect(rowOf(run, 'Runway').detail).toMatch(/^key accepted; credit balance [\d,]+ — http:\/\/127\.0\.0\.1:\d+\/runway$/);
    expect(run.stdout).toMatch(/^ {2}gen4_turbo\s+1,000 at once, 1,000 a day; 0 today$/m);
    expect(run.stdout).toMatch(/^ {2}veo3\.1_fast\s+1,000 at once, 1,000 a day; 0 today$/m);
  });

  it('lists the settings in effect with defaults applied, naming secrets without their values', () => {
    const run = runs.good;
    expect(run.stdout).toMatch(/^RUNWAY_MODEL\s+gen4_turbo$/m);
    expect(run.stdout).toMatch(/^LEASE_DURATION_SECONDS\s+600$/m);
    expect(run.stdout).toMatch(/^WORKER_API_KEY\s+set \(secret\)$/m);
    expect(run.stdout).toMatch(/^BLOB_READ_WRITE_TOKEN\s+not set$/m);
    for (const secret of secretsOf(env)) {
      expect(secret.length).toBeGreaterThan(4);
      expect(run.stdout).not.toContain(secret);
      expect(run.stderr).not.toContain(secret);
    }
  });
});

describe('npm run check with a worker key the app rejects', () => {
  it('fails the app row with how to get the right key', () => {
    const row = expectOnlyFailing(runs.badAppKey, 'app worker API', "WORKER_API_KEY rejected by the app (401): copy the key from the app's worker settings");
    expect(row.detail).toBe(`key rejected (401) — ${env.NEXT_API_URL}`);
    expect(runs.badAppKey.stdout).not.toContain('wk_not-the-right-key');
  });
});

describe('npm run check with a Runway key Runway rejects', () => {
  it('fails the Runway row with where to create a key', () => {
    const row = expectOnlyFailing(runs.badRunwayKey, 'Runway', /^RUNWAY_API_KEY rejected by Runway \(401\): create a key at dev\.runwayml\.com/);
    expect(row.detail).toMatch(/^runway: organization answered 401/);
    expect(runs.badRunwayKey.stdout).not.toMatch(/^ {2}gen4_turbo/m);
  });
});

describe('npm run check with a QStash token QStash rejects', () => {
  it('fails the QStash row with where the token is found', () => {
    const row = expectOnlyFailing(
      runs.badQStashToken,
      'QStash',
      'QStash token rejected: use the QSTASH_TOKEN from the Upstash console (QStash → Request builder), with the QSTASH_URL shown there',
    );
    expect(row.detail).toBe(`QStash answered 401 — ${env.QSTASH_URL}`);
  });
});

describe('npm run check with a LEDGER_DIR that cannot be written', () => {
  it('fails the ledger row, naming the directory to change', () => {
    const ledger = path.join(dir, 'ledger-is-a-file');
    const row = expectOnlyFailing(runs.unwritableLedger, 'ledger', `LEDGER_DIR (${ledger}) cannot be used: point LEDGER_DIR at a directory this process can write (it is created when missing)`);
    expect(row.detail).toMatch(/^ledger directory: mkdir .*ledger-is-a-file failed \((EEXIST|ENOTDIR)\)/);
  });
});

describe('npm run check with a required variable missing', () => {
  it('fails the configuration row naming the variable and where to find it, and checks nothing else', () => {
    const run = runs.missingKey;
    expect(run.code).toBe(1);
    const row = rowOf(run, 'configuration');
    expect(row).toMatchObject({ result: 'FAIL', detail: 'invalid: WORKER_API_KEY is missing' });
    expect(row.fix).toMatch(/^WORKER_API_KEY: copy it from the app's worker settings; set them where the worker reads its environment/);
    for (const name of ROWS.slice(1)) expect(rowOf(run, name).result).toBe('skipped');
    expect(run.stdout).toContain('1 of 6 checks failed, 5 not checked');
  });
});

describe('npm run check --url against a running worker', () => {
  it("prints the same table from the worker's GET /api/cron-poll?check=1", () => {
    expect(runs.url.code).toBe(0);
    expect(runs.url.stdout.split('\n')[0]).toBe(`preflight of ${harness.url} (GET /api/cron-poll?check=1), configuration from ${path.join(dir, 'good.env')}`);
    expect(tablesOf(runs.url)).toBe(tablesOf(runs.good));
  });

  it('prints the configuration problems a deployment answers with, as the same failing row', () => {
    const run = runs.urlIncomplete;
    expect(run.code).toBe(1);
    expect(tablesOf(run)).toBe(tablesOf(runs.missingKey));
  });

  it('with the wrong CRON_SECRET, prints a clear error and exits 1', () => {
    const run = runs.urlWrongSecret;
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      `error: ${harness.url}/api/cron-poll?check=1 answered 401: missing or wrong Authorization: Bearer <CRON_SECRET>\n` +
        'fix: use the CRON_SECRET set on the deployment (Vercel → Settings → Environment Variables; if it has none, set one and redeploy)\n',
    );
    expect(run.stderr).not.toContain('not-the-cron-secret');
  });
});

/** A stand-in for the service at `target` answering every request with `reply`. */
async function answering(target: string, reply: StandInReply): Promise<string> {
  return (await startStandIn({ target, answer: () => reply })).url;
}

/** The preflight `npm run check` runs, here in this process, for the good env with `changes`. */
async function preflight(changes: Record<string, string | undefined>): Promise<PreflightReport> {
  return preflightHere({ ...env, ...changes });
}

describe('the preflight npm run check runs, for services answering unexpectedly', () => {
  afterEach(closeStandIns);

  it('tells an app URL without the worker API from a rejected key', async () => {
    const report = await preflight({ NEXT_API_URL: await answering(env.NEXT_API_URL ?? '', { status: 404, json: { error: 'not found' } }) });

    expect(report.next_api).toMatchObject({ ok: false, detail: 'unexpected answer 404' });
    expect(report.next_api.fix).toMatch(/^NEXT_API_URL \(http:\/\/127\.0\.0\.1:\d+\/app\/api\) serves no worker API \(404\): use the app's base URL, ending in \/api$/);
  });

  it('names the address of an app nobody answers at', async () => {
    const url = `${REFUSED_URL}/api`;
    const report = await preflight({ NEXT_API_URL: url });

    expect(report.next_api.ok).toBe(false);
    expect(report.next_api.fix).toBe(`the app did not answer at NEXT_API_URL (${url}): check the URL (the app's base URL, ending in /api) and that the app is up`);
  });

  it('fails Runway with no credits left, still showing limits and usage, and says where to buy credits', async () => {
    const organization = {
      creditBalance: 0,
      tier: { models: { gen4_turbo: { maxConcurrentGenerations: 2, maxDailyGenerations: 50 } } },
      usage: { models: { gen4_turbo: { dailyGenerations: 50 } } },
    };
    const report = await preflight({ RUNWAY_API_URL: await answering(env.RUNWAY_API_URL ?? '', { status: 200, json: organization }) });

    expect(report.runway).toMatchObject({ ok: false, detail: 'key accepted, but no credits left (balance 0)', credit_balance: 0, usage: { gen4_turbo: 50 } });
    expect(report.runway.fix).toBe('buy credits at dev.runwayml.com (Billing): Runway refuses new generations without them');
    expect(formatPreflight(report)).toMatch(/^ {2}gen4_turbo\s+2 at once, 50 a day; 50 today \(daily limit reached\)$/m);
  });

  it("says a Runway 5xx is on Runway's side, and names the URL of a Runway nobody answers at", async () => {
    const busy = await preflight({ RUNWAY_API_URL: await answering(env.RUNWAY_API_URL ?? '', { status: 503, json: { error: 'busy' } }) });
    const url = REFUSED_URL;
    const gone = await preflight({ RUNWAY_API_URL: url });

    expect(busy.runway.fix).toMatch(/^Runway answered 503 at RUNWAY_API_URL \(.+\): check the URL \(default https:\/\/api\.dev\.runwayml\.com\); a 5xx is on Runway's side, try again shortly$/);
    expect(gone.runway.fix).toBe(`Runway did not answer as Runway does at RUNWAY_API_URL (${url}): check the URL (default https://api.dev.runwayml.com)`);
  });

  it('reads a QStash 429 as a quota to look at, and any other refusal as a URL to check', async () => {
    const limited = await preflight({ QSTASH_URL: await answering(env.QSTASH_URL ?? '', { status: 429, json: { error: 'slow down' } }) });
    const broken = await preflight({ QSTASH_URL: await answering(env.QSTASH_URL ?? '', { status: 500, json: { error: 'oops' } }) });

    expect(limited.qstash.fix).toBe('QStash is refusing this token for now (429): its daily message quota may be used up (Upstash console → QStash → Usage)');
    expect(broken.qstash.fix).toMatch(/^QStash answered 500 at QSTASH_URL \(http:\/\/127\.0\.0\.1:\d+\): check the URL \(default https:\/\/qstash\.upstash\.io\)$/);
  });
});

describe('the preflight npm run check runs, with the ledger in Vercel Blob', () => {
  it('reads and writes the store, and says how to connect one when the store refuses', async () => {
    const fake = await startBlobFake();
    const apiUrlBefore = process.env.VERCEL_BLOB_API_URL;
    process.env.VERCEL_BLOB_API_URL = fake.apiUrl;
    try {
      const good = await preflight({ BLOB_READ_WRITE_TOKEN: fake.token });
      fake.failNext('put', { type: 'status', status: 403, code: 'forbidden' });
      const refused = await preflight({ BLOB_READ_WRITE_TOKEN: fake.token });

      expect(good.ledger).toEqual({ ok: true, detail: 'writable and readable', store: 'Vercel Blob' });
      expect(good.config.settings).toContainEqual({ name: 'LEDGER_DIR', value: 'unused (the ledger is in Vercel Blob)' });
      expect(fake.counts()).toMatchObject({ put: 2, get: 1, list: 1 });
      expect(refused.ledger).toMatchObject({ ok: false, store: 'Vercel Blob' });
      expect(refused.ledger.fix).toMatch(/^the ledger's Vercel Blob store refused: connect a private Blob store to the project/);
    } finally {
      if (apiUrlBefore === undefined) delete process.env.VERCEL_BLOB_API_URL;
      else process.env.VERCEL_BLOB_API_URL = apiUrlBefore;
      await fake.close();
    }
  });

  it('fails the configuration row for a Blob token of the wrong kind, checking nothing else', async () => {
    const report = await preflight({ BLOB_READ_WRITE_TOKEN: 'not-a-blob-token' });

    expect(report.config).toMatchObject({ ok: false, problems: ['BLOB_READ_WRITE_TOKEN is not a read-write token (vercel_blob_rw_<store>_<secret>)'] });
    expect(report.next_api.skipped).toBe(true);
  });
});

describe('the configuration rows of the preflight npm run check runs', () => {
  it('fails without a CRON_SECRET, which cron-poll cannot run without, still checking the services', async () => {
    const report = await preflight({ CRON_SECRET: undefined });

    expect(report.ok).toBe(false);
    expect(report.config).toMatchObject({ ok: false, problems: ['CRON_SECRET is missing (cron-poll refuses every call without it)'] });
    expect(report.config.fix).toMatch(/^CRON_SECRET: any long random string: openssl rand -base64 32; set them/);
    expect(report.config.settings).toContainEqual({ name: 'CRON_SECRET', value: 'not set' });
    expect(report.next_api.ok && report.runway.ok && report.qstash.ok && report.ledger.ok).toBe(true);
  });

  it('points at the allowed values for a variable with a bad value, and lists every problem at once', async () => {
    const report = await preflight({ RUNWAY_MODEL: 'gen9', RUNWAY_API_KEY: undefined, CRON_SECRET: '' });

    expect(report.config.problems).toEqual([
      'RUNWAY_API_KEY is missing',
      expect.stringMatching(/^RUNWAY_MODEL: /),
      'CRON_SECRET is missing (cron-poll refuses every call without it)',
    ]);
    expect(report.config.fix).toBe(
      'RUNWAY_API_KEY: create one at dev.runwayml.com (API Keys); CRON_SECRET: any long random string: openssl rand -base64 32; ' +
        'for allowed values and defaults see .env.example and the README (Configuration); ' +
        'set them where the worker reads its environment (on Vercel: Settings → Environment Variables, then redeploy)',
    );
  });
});

describe('the callback row', () => {
  it('fails when QStash on the internet would have to call a loopback or private address', () => {
    for (const base of ['http://127.0.0.1:3000', 'http://localhost:3000', 'http://192.168.1.20:3000', 'http://10.0.0.5', 'http://172.20.1.1']) {
      const check = checkCallback({ qstashUrl: 'https://qstash.upstash.io', workerBaseUrl: base });
      expect(check, base).toMatchObject({ ok: false, detail: `QStash at https://qstash.upstash.io cannot call ${base}` });
      expect(check.fix).toMatch(/^set WORKER_BASE_URL to the deployment's public https URL/);
    }
  });

  it('passes a public URL, and any URL for a QStash on this machine', () => {
    expect(checkCallback({ qstashUrl: 'https://qstash.upstash.io', workerBaseUrl: 'https://worker.vercel.app' }).ok).toBe(true);
    expect(checkCallback({ qstashUrl: 'https://qstash.upstash.io', workerBaseUrl: 'https://172.32.0.1' }).ok).toBe(true);
    expect(checkCallback({ qstashUrl: 'http://127.0.0.1:8080', workerBaseUrl: 'http://127.0.0.1:3000' }).ok).toBe(true);
  });
});
