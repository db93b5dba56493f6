import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../../lib/config.js';
import {
  checkCallback,
  deploymentProblems,
  preflightOfConfigProblems,
  type PreflightReport,
} from '../../lib/steps/preflight.js';
import { startBlobFake } from '../../sandbox/blob-fake.js';
import { preflightHere } from '../../tools/cli/local-preflight.js';
import { closeStandIns, startStandIn, type StandInReply } from '../support/extra-stand-in.js';
import { CRON_SECRET, closeHarnesses, startHarness, workerEnv, type Harness } from '../support/harness.js';
import { REFUSED_URL } from '../support/refused.js';

/**
 * What an operator reads in each preflight row (`GET /api/cron-poll?check=1`, `npm run check`):
 * ok, detail and fix for good and bad answers, the settings table, Runway's limits and usage.
 * Run in this process against the sandbox services and loopback stand-ins.
 */

let harness: Harness;
let dir: string;
let env: Env;

beforeAll(async () => {
  harness = await startHarness();
  dir = await mkdtemp(path.join(tmpdir(), 'preflight-rows-'));
  env = { ...workerEnv(harness), CRON_SECRET };
});

afterEach(closeStandIns);

afterAll(async () => {
  await closeHarnesses();
  await rm(dir, { recursive: true, force: true });
});

const required = (value: string | undefined): string => {
  if (value === undefined) throw new Error('expected the harness env to set this');
  return value;
};

/** The preflight `npm run check` runs, in this process, for the harness's env with `changes`. */
function preflight(changes: Env = {}): Promise<PreflightReport> {
  return preflightHere({ ...env, ...changes });
}

/** A stand-in for the service at `target` answering every request with `reply`. */
async function answering(target: string | undefined, reply: StandInReply): Promise<string> {
  return (await startStandIn({ target: required(target), answer: () => reply })).url;
}

describe('a preflight of a good configuration against the sandbox', () => {
  it('passes every row, with exactly the facts each row shows', async () => {
    const report = await preflight();

    expect(report.ok).toBe(true);
    expect(report.next_api).toEqual({ ok: true, detail: 'key accepted', url: env.NEXT_API_URL });
    expect(report.qstash).toEqual({ ok: true, detail: 'token accepted', url: env.QSTASH_URL });
    expect(report.ledger).toEqual({ ok: true, detail: 'writable and readable', store: `directory ${required(env.LEDGER_DIR)}` });
    expect(report.callback).toEqual({ ok: true, detail: `QStash calls back ${required(env.WORKER_BASE_URL)}` });
    expect(report.callback_base_url).toBe(env.WORKER_BASE_URL);
    const limits = { maxConcurrentGenerations: 1000, maxDailyGenerations: 1000 };
    expect(report.runway).toEqual({
      ok: true,
      detail: 'key accepted',
      url: env.RUNWAY_API_URL,
      credit_balance: 100000,
      models: { gen4_turbo: limits, 'gen4.5': limits, 'veo3.1': limits, 'veo3.1_fast': limits },
      usage: { gen4_turbo: 0, 'gen4.5': 0, 'veo3.1': 0, 'veo3.1_fast': 0 },
    });
  });

  it('lists every setting in effect in order, defaults applied, secrets only as set', async () => {
    const report = await preflight();

    expect(report.config).toEqual({
      ok: true,
      detail: 'valid',
      settings: [
        { name: 'NEXT_API_URL', value: env.NEXT_API_URL },
        { name: 'WORKER_API_KEY', value: 'set (secret)' },
        { name: 'WORKER_ID', value: 'runway-worker' },
        { name: 'WORKER_TYPE', value: 'runway' },
        { name: 'RUNWAY_API_KEY', value: 'set (secret)' },
        { name: 'RUNWAY_API_URL', value: env.RUNWAY_API_URL },
        { name: 'RUNWAY_MODEL', value: 'gen4_turbo' },
        { name: 'RUNWAY_AUDIO', value: 'false' },
        { name: 'RUNWAY_TIMEOUT_SECONDS', value: '600' },
        { name: 'RUNWAY_POLL_MIN_SECONDS', value: '5' },
        { name: 'RUNWAY_POLL_MAX_SECONDS', value: '60' },
        { name: 'RUNWAY_REGENERATIONS', value: '1' },
        { name: 'LEASE_DURATION_SECONDS', value: '600' },
        { name: 'HEARTBEAT_INTERVAL_SECONDS', value: '120' },
        { name: 'MAX_TASKS_PER_RUN', value: '10' },
        { name: 'QSTASH_URL', value: env.QSTASH_URL },
        { name: 'QSTASH_TOKEN', value: 'set (secret)' },
        { name: 'QSTASH_CURRENT_SIGNING_KEY', value: 'set (secret)' },
        { name: 'QSTASH_NEXT_SIGNING_KEY', value: 'set (secret)' },
        { name: 'WORKER_BASE_URL', value: env.WORKER_BASE_URL },
        { name: 'CRON_SECRET', value: 'set (secret)' },
        { name: 'BLOB_READ_WRITE_TOKEN', value: 'not set' },
        { name: 'LEDGER_DIR', value: env.LEDGER_DIR },
        { name: 'VERCEL_AUTOMATION_BYPASS_SECRET', value: 'not set' },
        { name: 'LOG_LEVEL', value: 'silent' },
        { name: 'PORT', value: '3000 (self-hosted server only)' },
        { name: 'LOCAL_CRON_SECONDS', value: '5 (self-hosted server only)' },
      ],
    });
  });

  it('shows a protection bypass secret as set, never its value', async () => {
    const secret = 'bypass-secret-value-7f3a9c';
    const report = await preflight({ VERCEL_AUTOMATION_BYPASS_SECRET: secret });

    expect(report.config.settings).toContainEqual({ name: 'VERCEL_AUTOMATION_BYPASS_SECRET', value: 'set (secret)' });
    expect(JSON.stringify(report)).not.toContain(secret);
  });
});

describe('the app worker API row, for each answer the empty heartbeat gets', () => {
  it('says how to get the right key when the app answers 401', async () => {
    const report = await preflight({ WORKER_API_KEY: 'wk_not-the-right-key' });

    expect(report.ok).toBe(false);
    expect(report.next_api).toEqual({
      ok: false,
      detail: 'key rejected (401)',
      url: env.NEXT_API_URL,
      fix: "WORKER_API_KEY rejected by the app (401): copy the key from the app's worker settings",
    });
  });

  it.each([404, 405])('says the URL serves no worker API when the app answers %i', async (status) => {
    const url = await answering(env.NEXT_API_URL, { status, json: { error: 'nope' } });
    const report = await preflight({ NEXT_API_URL: url });

    expect(report.next_api).toEqual({
      ok: false,
      detail: `unexpected answer ${status}`,
      url,
      fix: `NEXT_API_URL (${url}) serves no worker API (${status}): use the app's base URL, ending in /api`,
    });
  });

  it('names the status and the heartbeat URL for any other answer', async () => {
    const url = await answering(env.NEXT_API_URL, { status: 500, json: { success: false, error: 'Internal server error' } });
    const report = await preflight({ NEXT_API_URL: url });

    expect(report.next_api).toEqual({
      ok: false,
      detail: 'unexpected answer 500',
      url,
      fix: `the app answered 500 to an empty heartbeat (400 expected) at ${url}/worker/heartbeat: check NEXT_API_URL and the app's logs`,
    });
  });

  it('gives the network error and says to check the URL when nobody answers', async () => {
    const url = `${REFUSED_URL}/api`;
    const report = await preflight({ NEXT_API_URL: url });

    expect(report.next_api).toEqual({
      ok: false,
      detail: 'app: POST /api/worker/heartbeat failed (network error)',
      url,
      fix: `the app did not answer at NEXT_API_URL (${url}): check the URL (the app's base URL, ending in /api) and that the app is up`,
    });
  });
});

const organization = (creditBalance: number, usage?: Record<string, number>): unknown => ({
  creditBalance,
  tier: {
    models: {
      gen4_turbo: { maxConcurrentGenerations: 2, maxDailyGenerations: 50 },
      'veo3.1_fast': { maxConcurrentGenerations: 3, maxDailyGenerations: 70 },
    },
  },
  ...(usage
    ? { usage: { models: Object.fromEntries(Object.entries(usage).map(([model, used]) => [model, { dailyGenerations: used }])) } }
    : {}),
});

const MODELS = {
  gen4_turbo: { maxConcurrentGenerations: 2, maxDailyGenerations: 50 },
  'veo3.1_fast': { maxConcurrentGenerations: 3, maxDailyGenerations: 70 },
};

describe('the Runway row, for each organization Runway reports', () => {
  it("passes with any credit, showing the balance, each model's limits and today's usage", async () => {
    const url = await answering(env.RUNWAY_API_URL, { status: 200, json: organization(1, { gen4_turbo: 7, 'veo3.1_fast': 12 }) });
    const report = await preflight({ RUNWAY_API_URL: url });

    expect(report.runway).toEqual({
      ok: true,
      detail: 'key accepted',
      url,
      credit_balance: 1,
      models: MODELS,
      usage: { gen4_turbo: 7, 'veo3.1_fast': 12 },
    });
  });

  it('shows no usage when Runway reports none', async () => {
    const url = await answering(env.RUNWAY_API_URL, { status: 200, json: organization(250) });
    const report = await preflight({ RUNWAY_API_URL: url });

    expect(report.runway).toEqual({ ok: true, detail: 'key accepted', url, credit_balance: 250, models: MODELS });
  });

  it('fails with a zero or negative balance, still showing the limits, and says where to buy credits', async () => {
    const url = await answering(env.RUNWAY_API_URL, { status: 200, json: organization(0, { gen4_turbo: 50 }) });
    const report = await preflight({ RUNWAY_API_URL: url });
    const owing = await answering(env.RUNWAY_API_URL, { status: 200, json: organization(-5) });
    const negative = await preflight({ RUNWAY_API_URL: owing });

    const fix = 'buy credits at dev.runwayml.com (Billing): Runway refuses new generations without them';
    expect(report.ok).toBe(false);
    expect(report.runway).toEqual({
      ok: false,
      detail: 'key accepted, but no credits left (balance 0)',
      url,
      credit_balance: 0,
      models: MODELS,
      usage: { gen4_turbo: 50 },
      fix,
    });
    expect(negative.runway).toEqual({ ok: false, detail: 'key accepted, but no credits left (balance -5)', url: owing, credit_balance: -5, models: MODELS, fix });
  });

  it.each([401, 403])('says where to create a key when Runway answers %i', async (status) => {
    const url = await answering(env.RUNWAY_API_URL, { status, json: { error: 'Incorrect or missing API key' } });
    const report = await preflight({ RUNWAY_API_URL: url });

    expect(report.runway).toEqual({
      ok: false,
      detail: `runway: organization answered ${status} (Incorrect or missing API key)`,
      url,
      fix: `RUNWAY_API_KEY rejected by Runway (${status}): create a key at dev.runwayml.com (API Keys) in the organization that holds the credits`,
    });
  });

  it("says a 500 is on Runway's side", async () => {
    const url = await answering(env.RUNWAY_API_URL, { status: 500, json: { error: 'oops' } });
    const report = await preflight({ RUNWAY_API_URL: url });

    expect(report.runway.ok).toBe(false);
    expect(report.runway.fix).toBe(
      `Runway answered 500 at RUNWAY_API_URL (${url}): check the URL (default https://api.dev.runwayml.com); a 5xx is on Runway's side, try again shortly`,
    );
  });

  it('asks only to check the URL for a 4xx other than a rejected key', async () => {
    const url = await answering(env.RUNWAY_API_URL, { status: 404, json: { error: 'not found' } });
    const report = await preflight({ RUNWAY_API_URL: url });

    expect(report.runway).toMatchObject({ ok: false, url });
    expect(report.runway.fix).toBe(`Runway answered 404 at RUNWAY_API_URL (${url}): check the URL (default https://api.dev.runwayml.com)`);
  });

  it('says the URL did not answer as Runway does for an answer of the wrong shape', async () => {
    const url = await answering(env.RUNWAY_API_URL, { status: 200, json: { hello: 'world' } });
    const report = await preflight({ RUNWAY_API_URL: url });

    expect(report.runway).toEqual({
      ok: false,
      detail: 'runway: organization answered an unexpected shape',
      url,
      fix: `Runway did not answer as Runway does at RUNWAY_API_URL (${url}): check the URL (default https://api.dev.runwayml.com)`,
    });
  });
});

describe('the QStash row, for each answer to the token check', () => {
  const rejected = 'QStash token rejected: use the QSTASH_TOKEN from the Upstash console (QStash → Request builder), with the QSTASH_URL shown there';

  it('says where the token is found when QStash answers 401', async () => {
    const report = await preflight({ QSTASH_TOKEN: 'not-the-right-token' });

    expect(report.qstash).toEqual({ ok: false, detail: 'QStash answered 401', url: env.QSTASH_URL, fix: rejected });
  });

  it('says where the token is found when QStash answers 403', async () => {
    const url = await answering(env.QSTASH_URL, { status: 403, json: { error: 'forbidden' } });
    const report = await preflight({ QSTASH_URL: url });

    expect(report.qstash).toEqual({ ok: false, detail: 'QStash answered 403', url, fix: rejected });
  });

  it('reads 429 as a quota to look at', async () => {
    const url = await answering(env.QSTASH_URL, { status: 429, json: { error: 'slow down' } });
    const report = await preflight({ QSTASH_URL: url });

    expect(report.qstash).toEqual({
      ok: false,
      detail: 'QStash answered 429',
      url,
      fix: 'QStash is refusing this token for now (429): its daily message quota may be used up (Upstash console → QStash → Usage)',
    });
  });

  it('names the status and the default URL for any other answer', async () => {
    const url = await answering(env.QSTASH_URL, { status: 404, json: { error: 'not found' } });
    const report = await preflight({ QSTASH_URL: url });

    expect(report.qstash).toEqual({
      ok: false,
      detail: 'QStash answered 404',
      url,
      fix: `QStash answered 404 at QSTASH_URL (${url}): check the URL (default https://qstash.upstash.io)`,
    });
  });

  it('says QStash did not answer when nobody is there', async () => {
    const report = await preflight({ QSTASH_URL: REFUSED_URL });

    expect(report.qstash).toEqual({
      ok: false,
      detail: 'QStash unreachable',
      url: REFUSED_URL,
      fix: `QStash did not answer at QSTASH_URL (${REFUSED_URL}): check the URL (default https://qstash.upstash.io)`,
    });
  });
});

describe('the ledger row with the ledger in a directory', () => {
  it('shows a relative LEDGER_DIR as the absolute directory it uses', async () => {
    const ledgerDir = path.join(dir, 'relative-ledger');
    const report = await preflight({ LEDGER_DIR: path.relative(process.cwd(), ledgerDir) });

    expect(report.ledger).toEqual({ ok: true, detail: 'writable and readable', store: `directory ${ledgerDir}` });
  });

  it('names the absolute directory to change when it cannot be written', async () => {
    const file = path.join(dir, 'ledger-is-a-file');
    await writeFile(file, 'not a folder');
    const report = await preflight({ LEDGER_DIR: path.relative(process.cwd(), file) });

    expect(report.ledger).toMatchObject({ ok: false, store: `directory ${file}` });
    expect(report.ledger.detail).toMatch(/^ledger directory: mkdir .*ledger-is-a-file failed \((EEXIST|ENOTDIR)\)$/);
    expect(report.ledger.fix).toBe(`LEDGER_DIR (${file}) cannot be used: point LEDGER_DIR at a directory this process can write (it is created when missing)`);
  });
});

describe('the ledger row with the ledger in Vercel Blob', () => {
  it('fails when the store can be written but not listed, saying how to connect a store', async () => {
    const fake = await startBlobFake();
    const apiUrlBefore = process.env.VERCEL_BLOB_API_URL;
    process.env.VERCEL_BLOB_API_URL = fake.apiUrl;
    try {
      fake.failNext('list', { type: 'status', status: 403, code: 'forbidden' });
      const report = await preflight({ BLOB_READ_WRITE_TOKEN: fake.token });

      expect(fake.counts()).toMatchObject({ put: 1, get: 1, list: 1 });
      expect(report.ledger).toMatchObject({ ok: false, store: 'Vercel Blob' });
      expect(report.ledger.fix).toBe(
        "the ledger's Vercel Blob store refused: connect a private Blob store to the project (Storage → Blob), which sets BLOB_READ_WRITE_TOKEN, then redeploy",
      );
      expect(report.config.settings).toContainEqual({ name: 'BLOB_READ_WRITE_TOKEN', value: 'set (secret)' });
      expect(report.config.settings).toContainEqual({ name: 'LEDGER_DIR', value: 'unused (the ledger is in Vercel Blob)' });
      expect(JSON.stringify(report)).not.toContain(fake.token);
    } finally {
      if (apiUrlBefore === undefined) delete process.env.VERCEL_BLOB_API_URL;
      else process.env.VERCEL_BLOB_API_URL = apiUrlBefore;
      await fake.close();
    }
  });
});

describe('the configuration row of a configuration that parses', () => {
  it('fails without a CRON_SECRET, saying where to get one, with the settings still listed', async () => {
    const report = await preflight({ CRON_SECRET: undefined });

    expect(report.ok).toBe(false);
    expect(report.config).toMatchObject({
      ok: false,
      detail: 'invalid: CRON_SECRET is missing (cron-poll refuses every call without it)',
      problems: ['CRON_SECRET is missing (cron-poll refuses every call without it)'],
      fix: 'CRON_SECRET: any long random string: openssl rand -base64 32; set them where the worker reads its environment (on Vercel: Settings → Environment Variables, then redeploy)',
    });
    expect(report.config.settings).toHaveLength(27);
    expect((report.config.settings ?? []).slice(-2).map((setting) => setting.name)).toEqual(['PORT', 'LOCAL_CRON_SECONDS']);
  });

  it('never shows credentials written into a URL setting', async () => {
    const report = await preflight({ QSTASH_URL: 'https://user:hunter2@qstash.example.com' });

    expect(report.config.settings).toContainEqual({ name: 'QSTASH_URL', value: 'https://qstash.example.com/ (credentials in the URL hidden)' });
    expect(JSON.stringify(report.config)).not.toContain('hunter2');
  });

  it('counts a CRON_SECRET of blanks as missing', () => {
    expect(deploymentProblems('   ')).toEqual(['CRON_SECRET is missing (cron-poll refuses every call without it)']);
    expect(deploymentProblems(undefined)).toEqual(['CRON_SECRET is missing (cron-poll refuses every call without it)']);
    expect(deploymentProblems('s3cret')).toEqual([]);
  });
});

describe('the report of a configuration that cannot be parsed', () => {
  const skipped = { ok: false, skipped: true, detail: 'not checked: the configuration is incomplete' };
  const setThem = 'set them where the worker reads its environment (on Vercel: Settings → Environment Variables, then redeploy)';
  const allowed = 'for allowed values and defaults see .env.example and the README (Configuration)';

  it('fails the configuration row with every problem and skips every other row', () => {
    const report = preflightOfConfigProblems(['WORKER_API_KEY is missing', 'QSTASH_TOKEN is missing']);

    expect(report).toEqual({
      ok: false,
      config: {
        ok: false,
        detail: 'invalid: WORKER_API_KEY is missing; QSTASH_TOKEN is missing',
        problems: ['WORKER_API_KEY is missing', 'QSTASH_TOKEN is missing'],
        fix: `WORKER_API_KEY: copy it from the app's worker settings; QSTASH_TOKEN: Upstash console, QStash → Request builder; ${setThem}`,
      },
      next_api: skipped,
      runway: skipped,
      qstash: skipped,
      ledger: skipped,
      callback: skipped,
    });
  });

  it('names where to find each variable once, in the order of the problems', () => {
    const report = preflightOfConfigProblems([
      'WORKER_BASE_URL is missing',
      'QSTASH_NEXT_SIGNING_KEY is missing',
      'WORKER_BASE_URL must be an https URL',
      'NEXT_API_URL is missing',
      'BLOB_READ_WRITE_TOKEN is not a read-write token',
      'QSTASH_CURRENT_SIGNING_KEY is missing',
    ]);

    expect(report.config.fix).toBe(
      [
        "WORKER_BASE_URL: the deployment's public https URL (on Vercel, VERCEL_PROJECT_PRODUCTION_URL is set for you)",
        'QSTASH_NEXT_SIGNING_KEY: Upstash console, QStash → Signing keys',
        "NEXT_API_URL: the app's base URL, ending in /api",
        'BLOB_READ_WRITE_TOKEN: connect a private Blob store to the project (Vercel → Storage → Blob)',
        'QSTASH_CURRENT_SIGNING_KEY: Upstash console, QStash → Signing keys',
        setThem,
      ].join('; '),
    );
  });

  it('points at the allowed values when a problem names no variable it has a source for', () => {
    const unknownVariable = preflightOfConfigProblems(['RUNWAY_MODEL: must be one of gen4_turbo, veo3.1']);
    const noVariable = preflightOfConfigProblems(['the env file holds WORKER_API_KEY twice']);
    const mixed = preflightOfConfigProblems(['CRON_SECRET is missing', 'LOG_LEVEL: must be one of info, debug']);

    expect(unknownVariable.config.fix).toBe(`${allowed}; ${setThem}`);
    expect(noVariable.config.fix).toBe(`${allowed}; ${setThem}`);
    expect(mixed.config.fix).toBe(`CRON_SECRET: any long random string: openssl rand -base64 32; ${allowed}; ${setThem}`);
  });

  it('reads the variable name to its end, digits and underscores included', () => {
    // Only the full name has a source: a name cut short would fall back to the allowed-values pointer.
    expect(preflightOfConfigProblems(['CRON_SECRET is missing']).config.fix).toBe(
      `CRON_SECRET: any long random string: openssl rand -base64 32; ${setThem}`,
    );
    expect(preflightOfConfigProblems(['X9_RUNWAY_API_KEY is missing']).config.fix).toBe(`${allowed}; ${setThem}`);
  });
});

describe('the callback row, for where QStash runs and where it must call', () => {
  const publicQStash = 'https://qstash.upstash.io';
  const fix = "set WORKER_BASE_URL to the deployment's public https URL (on Vercel, leave it unset: https://$VERCEL_PROJECT_PRODUCTION_URL is used)";

  it.each([
    'http://127.0.0.1:3000',
    'http://localhost:3000',
    'http://0.0.0.0:3000',
    'http://10.0.0.5',
    'http://192.168.1.20:3000',
    'http://172.16.0.1',
    'http://172.19.4.4',
    'http://172.25.0.1',
    'http://172.31.255.1',
    'http://169.254.169.254',
    'http://100.64.0.1',
    'http://100.127.255.254',
    'http://[::1]:3000',
    'http://[fd12:3456::1]:3000',
    'http://[fe80::1]:3000',
    'http://worker:3000',
    'http://worker.local:3000',
    'http://api.internal',
    'http://nas.home.arpa',
  ])('fails when QStash on the internet would have to call %s', (base) => {
    expect(checkCallback({ qstashUrl: publicQStash, workerBaseUrl: base })).toEqual({
      ok: false,
      detail: `QStash at ${publicQStash} cannot call ${base}`,
      fix,
    });
  });

  it.each([
    'https://worker.vercel.app',
    'https://172.15.0.1',
    'https://172.32.0.1',
    'https://100.1.2.3',
    'https://110.0.0.1',
    'https://1.10.0.1',
    'https://192.169.1.1',
    'https://1.192.168.1',
    'https://100.63.255.255',
    'https://100.128.0.1',
    'https://169.255.0.1',
    'https://[2001:db8::1]',
    'https://worker.example.com',
  ])('passes %s, an address QStash on the internet can reach', (base) => {
    expect(checkCallback({ qstashUrl: publicQStash, workerBaseUrl: base })).toEqual({ ok: true, detail: `QStash calls back ${base}` });
  });

  it('passes any address for a QStash on this machine', () => {
    for (const qstashUrl of ['http://127.0.0.1:8080', 'http://localhost:8080']) {
      expect(checkCallback({ qstashUrl, workerBaseUrl: 'http://192.168.1.20:3000' })).toEqual({
        ok: true,
        detail: 'QStash calls back http://192.168.1.20:3000',
      });
    }
  });
});
