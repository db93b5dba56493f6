import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startLocalQStash, type LocalQStash } from '../../server/local-qstash.js';
import { closeHarnesses, DEV_QSTASH, startHarness, until } from '../support/harness.js';
import { runCli, writeEnvFile, type CliRun } from './run-cli.js';

/**
 * `npm run schedule`: one QStash schedule, `runway-worker-cron`, that POSTs to the
 * deployment's cron-poll — created, updated and removed through the real SDK against the
 * local QStash — and the daily message budget it leaves for videos.
 */

const DEPLOYMENT = 'https://runway-worker.example.vercel.app';
/** A schedule minute takes ten: nothing fires while a test runs. */
const STILL = 10;

let dir: string;
const open: LocalQStash[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'schedule-cli-'));
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((qstash) => qstash.close()));
  await closeHarnesses();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function startQStash(timeScale = STILL): Promise<LocalQStash> {
  const qstash = await startLocalQStash({ token: DEV_QSTASH.token, currentSigningKey: DEV_QSTASH.currentSigningKey, nextSigningKey: DEV_QSTASH.nextSigningKey, timeScale });
  open.push(qstash);
  return qstash;
}

let files = 0;
/** `npm run schedule -- <args> --env-file <file>` with QStash settings for `qstash`. */
async function schedule(qstash: LocalQStash, args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  files += 1;
  const file = await writeEnvFile(path.join(dir, `qstash-${files}.env`), { QSTASH_URL: qstash.url, QSTASH_TOKEN: DEV_QSTASH.token, ...env });
  return runCli('schedule', [...args, '--env-file', file]);
}

/** The `name  value` line of the output, value only. */
function valueOf(run: CliRun, name: string): string | undefined {
  return new RegExp(`^ {2}${name} {2,}(.*)$`, 'm').exec(run.stdout)?.[1];
}

describe('npm run schedule --url, the first time', () => {
  let qstash: LocalQStash;
  let run: CliRun;
  beforeAll(async () => {
    qstash = await startLocalQStash({ token: DEV_QSTASH.token, currentSigningKey: DEV_QSTASH.currentSigningKey, nextSigningKey: DEV_QSTASH.nextSigningKey, timeScale: STILL });
    run = await schedule(qstash, ['--url', DEPLOYMENT]);
  });
  afterAll(() => qstash.close());

  it('creates one schedule with the fixed id that POSTs an empty body to cron-poll every 10 minutes, without retries', () => {
    expect(run.code).toBe(0);
    expect(qstash.schedules()).toEqual([
      expect.objectContaining({
        scheduleId: 'runway-worker-cron',
        cron: '*/10 * * * *',
        destination: `${DEPLOYMENT}/api/cron-poll`,
        method: 'POST',
        body: '',
        retries: 0,
        forwardedHeaders: {},
      }),
    ]);
    expect(run.stdout).toContain(`QStash schedule runway-worker-cron created at ${qstash.url}\n`);
    expect(valueOf(run, 'destination')).toBe(`POST ${DEPLOYMENT}/api/cron-poll (empty body)`);
    expect(valueOf(run, 'cron')).toBe('*/10 * * * * (every 10 minutes, UTC)');
  });

  it('prints the daily budget: 144 schedule messages, 5.83 per video, 146 videos within the free 1,000', () => {
    expect(run.stdout).toContain('QStash messages a day (free tier: 1,000, every delivery counted):');
    expect(valueOf(run, 'schedule')).toBe('144 (every 10 minutes)');
    expect(valueOf(run, 'per video')).toBe('5.83 (measured: npm run bench: 4.73 polls (polls_per_video_mean) + 1 upload + 0.1 drain)');
    expect(valueOf(run, 'videos a day that fit')).toBe('146 ((1,000 − 144) / 5.83)');
  });
});

describe('npm run schedule --url with VERCEL_AUTOMATION_BYPASS_SECRET set', () => {
  it('forwards the protection bypass secret as QStash forwards headers, without printing it', async () => {
    const qstash = await startQStash();

    const run = await schedule(qstash, ['--url', DEPLOYMENT], { VERCEL_AUTOMATION_BYPASS_SECRET: 'bypass-secret-0123456789' });

    expect(run.code).toBe(0);
    expect(qstash.schedules()[0]?.forwardedHeaders).toEqual({ 'x-vercel-protection-bypass': 'bypass-secret-0123456789' });
    expect(qstash.schedules()[0]?.headers['upstash-forward-x-vercel-protection-bypass']).toBe('bypass-secret-0123456789');
    expect(valueOf(run, 'forwarded')).toBe('x-vercel-protection-bypass (VERCEL_AUTOMATION_BYPASS_SECRET)');
    expect(run.stdout + run.stderr).not.toContain('bypass-secret-0123456789');
  });
});

describe('npm run schedule --url, run again', () => {
  it('updates the same schedule to the new cadence and budget: still one', async () => {
    const qstash = await startQStash();
    await schedule(qstash, ['--url', DEPLOYMENT]);

    const run = await schedule(qstash, ['--url', DEPLOYMENT, '--every', '5']);

    expect(run.code).toBe(0);
    expect(qstash.schedules().map((s) => [s.scheduleId, s.cron, s.destination])).toEqual([['runway-worker-cron', '*/5 * * * *', `${DEPLOYMENT}/api/cron-poll`]]);
    expect(run.stdout).toContain(`QStash schedule runway-worker-cron updated at ${qstash.url} (was */10 * * * * → ${DEPLOYMENT}/api/cron-poll)\n`);
    expect(valueOf(run, 'schedule')).toBe('288 (every 5 minutes)');
    expect(valueOf(run, 'videos a day that fit')).toBe('122 ((1,000 − 288) / 5.83)');
  });

  it('warns about another schedule that also calls cron-poll', async () => {
    const qstash = await startQStash();
    const other = await fetch(`${qstash.url}/v2/schedules/${DEPLOYMENT}/api/cron-poll`, {
      method: 'POST',
      headers: { authorization: `Bearer ${DEV_QSTASH.token}`, 'upstash-cron': '* * * * *', 'upstash-schedule-id': 'made-by-hand' },
    });
    expect(other.status).toBe(200);

    const run = await schedule(qstash, ['--url', DEPLOYMENT, '--every', '60']);

    expect(run.stdout).toContain(`warning: schedule made-by-hand (* * * * * → ${DEPLOYMENT}/api/cron-poll) also calls cron-poll`);
    expect(valueOf(run, 'cron')).toBe('0 * * * * (every hour, UTC)');
    expect(qstash.schedules()).toHaveLength(2);
  });
});

describe('npm run schedule --every 1', () => {
  it('warns that the schedule alone spends the free quota', async () => {
    const run = await schedule(await startQStash(), ['--url', DEPLOYMENT, '--every', '1']);

    expect(run.code).toBe(0);
    expect(valueOf(run, 'schedule')).toBe('1,440 (every minute)');
    expect(valueOf(run, 'videos a day that fit')).toBe('0 (the schedule alone uses the quota)');
    expect(run.stdout).toContain('warning: every minute spends the whole free quota');
  });
});

describe('npm run schedule --remove', () => {
  it('deletes the schedule, and says there is nothing to remove the second time', async () => {
    const qstash = await startQStash();
    await schedule(qstash, ['--url', DEPLOYMENT]);

    const removed = await schedule(qstash, ['--remove']);
    const again = await schedule(qstash, ['--remove']);

    expect(removed.code).toBe(0);
    expect(qstash.schedules()).toEqual([]);
    expect(removed.stdout).toContain(`QStash schedule runway-worker-cron removed from ${qstash.url} (it was */10 * * * * → ${DEPLOYMENT}/api/cron-poll)\n`);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`no QStash schedule runway-worker-cron at ${qstash.url}: nothing to remove\n`);
  });
});

describe('npm run schedule with a token QStash rejects', () => {
  it('prints a clear error with where the token is found, exits 1 and creates nothing', async () => {
    const qstash = await startQStash();

    const run = await schedule(qstash, ['--url', DEPLOYMENT], { QSTASH_TOKEN: 'not-the-token' });

    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `error: QStash at ${qstash.url} rejected the token (401)\n` +
        'fix: use the QSTASH_TOKEN from the Upstash console (QStash → Request builder), with the QSTASH_URL shown there\n',
    );
    expect(run.stderr + run.stdout).not.toContain('not-the-token');
    expect(qstash.schedules()).toEqual([]);
  });
});

describe('npm run schedule called wrongly', () => {
  it('without --url is a usage error: exit 2, the usage on stderr, nothing created', async () => {
    const qstash = await startQStash();

    const run = await schedule(qstash, []);

    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^error: --url https:\/\/<deployment> is required \(or --remove\)\n\nUsage: npm run schedule -- --url https:\/\/<deployment>/);
    expect(qstash.schedules()).toEqual([]);
  });

  it('with an uneven --every is a usage error naming the choices', async () => {
    const run = await schedule(await startQStash(), ['--url', DEPLOYMENT, '--every', '7']);

    expect(run.code).toBe(2);
    expect(run.stderr).toContain('error: --every takes minutes that divide an hour or a day evenly: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440; got "7"');
  });
});

describe('the schedule, once it comes due', () => {
  it("delivers signed empty POSTs that the worker's cron-poll accepts", async () => {
    const harness = await startHarness({ delivery: 'auto' });
    const target = `${harness.url}/api/cron-poll`;

    const run = await schedule(harness.qstash, ['--url', harness.url, '--every', '1']);
    expect(run.code).toBe(0);
    const fired = (): readonly string[] => harness.qstash.schedules()[0]?.firedMessageIds ?? [];
    const delivered = () =>
      harness.qstash.messages().filter((message) => fired().includes(message.messageId) && message.attempts.some((attempt) => attempt.status !== undefined));
    await until(() => delivered().length > 0, 'a scheduled cron-poll delivery', 15_000);

    const [message] = delivered();
    expect(message?.url).toBe(target);
    expect(message?.body).toBe('');
    expect(message?.forwardedHeaders).toMatchObject({ 'upstash-schedule-id': 'runway-worker-cron' });
    expect(message?.attempts[0]).toMatchObject({ status: 200 });
    expect(JSON.parse(message?.attempts[0]?.responseBody ?? '{}')).toMatchObject({ stopped: 'idle' });
  });
});
