import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Env } from '../../lib/config.js';
import { closeExtraWorkers, startExtraWorker } from '../support/extra-worker.js';
import { closeStandIns, startStandIn } from '../support/extra-stand-in.js';
import { describeRequest } from '../support/flow.js';
import { closeHarnesses, seedItem, startHarness, type Answer, type Harness, type Mark } from '../support/harness.js';
import { REFUSED_URL } from '../support/refused.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * `GET /api/cron-poll?check=1` (design §2 "cron-poll"): one row per thing the worker depends
 * on. A row that fails says why, the others still report, the whole check is not ok — and
 * nothing is leased.
 */

type Row = 'next_api' | 'runway' | 'qstash' | 'ledger';
const ROWS: readonly Row[] = ['next_api', 'runway', 'qstash', 'ledger'];

interface Checked {
  readonly harness: Harness;
  readonly answer: Answer;
  readonly mark: Mark;
}

/** Runs the preflight on a second worker configured like the harness's, but for `env`. */
async function preflightWith(env: (harness: Harness) => Env | Promise<Env>): Promise<Checked> {
  const harness = await startHarness({ items: [seedItem('landscape.jpg')] });
  const worker = await startExtraWorker(harness, { env: await env(harness) });
  const mark = harness.mark();
  const answer = await worker.cron('?check=1');
  return { harness, answer, mark };
}

/** The answer says the check failed on `failing` alone, with this detail; every other row passed. */
function expectOnlyFailing({ answer }: Checked, failing: Row, detail: string | RegExp): void {
  expect(answer.status).toBe(200);
  const report = answer.json as Record<Row, { ok: boolean; detail: string }> & { ok: boolean };
  expect(report.ok).toBe(false);
  expect(report[failing].ok).toBe(false);
  if (typeof detail === 'string') expect(report[failing].detail).toBe(detail);
  else expect(report[failing].detail).toMatch(detail);
  for (const row of ROWS.filter((name) => name !== failing)) expect(report[row]).toMatchObject({ ok: true });
}

function expectNothingLeased({ harness }: Checked): void {
  expect(harness.appCalls('next-task')).toEqual([]);
  expect(harness.sandbox.app.items().map((item) => item.status)).toEqual(['pending']);
}

describe('cron-poll ?check=1 with a worker key the app rejects', () => {
  it('fails the next_api row as a rejected key, after one empty heartbeat with that key', async () => {
    const checked = await preflightWith(() => ({ WORKER_API_KEY: 'wk_not-the-right-key' }));

    expectOnlyFailing(checked, 'next_api', 'key rejected (401)');
    const app = checked.harness.requests({ service: 'app', since: checked.mark });
    expect(app.map(describeRequest)).toEqual(['app POST /worker/heartbeat']);
    expect(app[0]?.headers['authorization']).toBe('Worker wk_not-the-right-key');
    expect(app[0]?.json).toEqual({});
    expectNothingLeased(checked);
  });
});

describe('cron-poll ?check=1 with an app that answers the key check unexpectedly', () => {
  it('fails the next_api row naming the status', async () => {
    const checked = await preflightWith(async (harness) => {
      const app = await startStandIn({ target: harness.sandbox.nextApiUrl, answer: () => ({ status: 500, json: { success: false, error: 'Internal server error' } }) });
      return { NEXT_API_URL: app.url };
    });

    expectOnlyFailing(checked, 'next_api', 'unexpected answer 500');
    expectNothingLeased(checked);
  });
});

describe('cron-poll ?check=1 with an app nobody answers at', () => {
  it('fails the next_api row with the network error', async () => {
    const checked = await preflightWith(() => ({ NEXT_API_URL: `${REFUSED_URL}/api` }));

    expectOnlyFailing(checked, 'next_api', 'app: POST /api/worker/heartbeat failed (network error)');
    expect(checked.harness.requests({ service: 'app', since: checked.mark })).toEqual([]);
    expectNothingLeased(checked);
  });
});

describe('cron-poll ?check=1 with a Runway key Runway rejects', () => {
  it('fails the runway row with Runway\'s answer, and gives no balance or limits', async () => {
    const checked = await preflightWith(() => ({ RUNWAY_API_KEY: 'key_not-the-right-one' }));

    expectOnlyFailing(checked, 'runway', 'runway: organization answered 401 (Incorrect or missing API key)');
    const runway = (checked.answer.json as { runway: Record<string, unknown> }).runway;
    expect(runway).not.toHaveProperty('credit_balance');
    expect(runway).not.toHaveProperty('models');
    const sent = checked.harness.requests({ service: 'runway', since: checked.mark });
    expect(sent.map(describeRequest)).toEqual(['runway GET /v1/organization']);
    expect(sent[0]?.headers['authorization']).toBe('Bearer key_not-the-right-one');
    expectNothingLeased(checked);
  });
});

describe('cron-poll ?check=1 with a QStash token QStash rejects', () => {
  it('fails the qstash row with QStash\'s status', async () => {
    const checked = await preflightWith(() => ({ QSTASH_TOKEN: 'not-the-right-token' }));

    expectOnlyFailing(checked, 'qstash', 'QStash answered 401');
    expect(checked.harness.messages(undefined, checked.mark)).toEqual([]);
    expectNothingLeased(checked);
  });
});

describe('cron-poll ?check=1 with a ledger directory that cannot be written', () => {
  it('fails the ledger row with the store\'s error', async () => {
    const checked = await preflightWith(async (harness) => {
      // A plain file where the directory should be.
      const file = path.join(path.dirname(harness.runtime.deps.config.ledgerDir), 'ledger-is-a-file');
      await writeFile(file, 'not a folder');
      return { LEDGER_DIR: file };
    });

    expectOnlyFailing(checked, 'ledger', /^ledger directory: mkdir .*ledger-is-a-file failed \((EEXIST|ENOTDIR)\)$/);
    expectNothingLeased(checked);
  });
});
