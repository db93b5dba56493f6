import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../lib/config.js';
import { itemViewOf, tasksToAsk, unknownItemMessage, type AttemptFacts, type LiveTask } from '../../lib/decide/item-view.js';
import { handleCronGet } from '../../lib/handlers/cron-poll.js';
import type { JobRecord } from '../../lib/ledger/ledger.js';
import { createDeps } from '../../lib/runtime.js';
import { closeExtraWorkers, startExtraWorker } from '../support/extra-worker.js';
import { closeStandIns, startStandIn } from '../support/extra-stand-in.js';
import { finishedUpload, pollJobs, submit, waitForTaskStatus } from '../support/flow.js';
import { CRON_SECRET, closeHarnesses, seedItem, silentLogger, startHarness, workerEnv, type Answer, type Harness } from '../support/harness.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * `GET /api/cron-poll?item=<id>`: what the ledger knows of one item, with Runway's live word
 * on the tasks the ledger does not show finished. It leases nothing and sends nothing.
 */

const CALLBACK = '/api/runway-callback';
const STEP_UPLOAD = '/api/step-upload';

const lookup = (harness: Harness, itemId: string): Promise<Answer> => harness.cron(`?item=${encodeURIComponent(itemId)}`);
const taskLooks = (harness: Harness, since = { requests: 0, messages: 0 }) =>
  harness.requests({ service: 'runway', method: 'GET', path: /^\/v1\/tasks\//, since });

/** One landscape item taken through the whole pipeline: submitted, polled, uploaded, reported completed. */
async function completedItem(): Promise<{ harness: Harness; itemId: string; taskId: string }> {
  const item = seedItem('landscape.jpg');
  const harness = await startHarness({ items: [item] });
  const upload = await finishedUpload(harness, item.item_id);
  expect((await harness.deliver(STEP_UPLOAD, upload)).status).toBe(200);
  return { harness, itemId: item.item_id, taskId: upload.job.runway_task_id };
}

describe('an item the worker has finished', () => {
  it('answers its attempt: task, model, duration, ratio, timestamps, the report sent and what it cost', async () => {
    const { harness, itemId, taskId } = await completedItem();

    const answer = await lookup(harness, itemId);

    expect(answer.status).toBe(200);
    const task = harness.sandbox.runway.task(taskId);
    expect(answer.json).toEqual({
      item_id: itemId,
      attempts: [
        {
          attempt: 1,
          state: 'reported',
          generations: [
            {
              generation: 1,
              runway_task_id: taskId,
              model: 'gen4_turbo',
              duration: 5,
              ratio: task?.ratio,
              submitting_at: expect.any(String) as unknown,
              submitted_at: expect.any(String) as unknown,
              photo: { original: expect.objectContaining({ type: 'jpeg' }) as unknown, sent: expect.objectContaining({ type: 'jpeg' }) as unknown },
              estimated_credits: 25,
            },
          ],
          uploaded: { storage_path: `videos/${itemId}.mp4`, bytes: expect.any(Number) as unknown, at: expect.any(String) as unknown },
          report: {
            status: 'completed',
            at: expect.any(String) as unknown,
            video_storage_path: `videos/${itemId}.mp4`,
            veo_operation_id: taskId,
            outcome: 'sent',
          },
          credits: 25,
          credits_source: 'runway',
          usd: 0.25,
        },
      ],
    });
  });

  it('asks Runway nothing about a task the ledger shows finished, and leases nothing', async () => {
    const { harness, itemId } = await completedItem();
    const mark = harness.mark();

    await lookup(harness, itemId);

    expect(harness.requests({ since: mark })).toEqual([]);
    expect(harness.messages(undefined, mark)).toEqual([]);
  });
});

describe('an item whose Runway task is still running', () => {
  async function running(): Promise<{ harness: Harness; itemId: string; taskId: string }> {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 60_000 } } });
    const job = await submit(harness, item.item_id);
    return { harness, itemId: item.item_id, taskId: job.runway_task_id };
  }

  it("adds Runway's live status, with one task GET per open task", async () => {
    const { harness, itemId, taskId } = await running();
    const mark = harness.mark();

    const answer = await lookup(harness, itemId);

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({
      attempts: [
        {
          state: 'at-runway',
          generations: [{ runway_task_id: taskId, runway: { status: expect.stringMatching(/^(PENDING|RUNNING)$/) as unknown } }],
          // Priced as Runway estimated it at create until it names a cost.
          credits: 25,
          credits_source: 'runway',
        },
      ],
    });
    expect(taskLooks(harness, mark).map((request) => request.path)).toEqual([`/v1/tasks/${taskId}`]);
    expect(harness.requests({ service: 'app', since: mark })).toEqual([]);
  });

  it('still answers when Runway refuses the task GET, showing the error in place of the status', async () => {
    const { harness, itemId, taskId } = await running();
    const runway = await startStandIn({
      target: harness.runtime.deps.config.runwayApiUrl,
      answer: (request) => (request.path.startsWith('/v1/tasks/') ? { status: 401, json: { error: 'Incorrect or missing API key' } } : undefined),
    });
    const worker = await startExtraWorker(harness, { env: { RUNWAY_API_URL: runway.url } });

    const answer = await worker.cron(`?item=${itemId}`);

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({
      attempts: [{ generations: [{ runway_task_id: taskId, runway: { error: expect.stringMatching(/^runway: .*401.*Incorrect or missing API key/) as unknown } }] }],
    });
  });

  it('says the task is gone when Runway no longer has it', async () => {
    const { harness, itemId, taskId } = await running();
    await fetch(`${harness.sandbox.runwayApiUrl}/v1/tasks/${taskId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${harness.runtime.deps.config.runwayApiKey}`, 'x-runway-version': '2024-11-06' },
    });

    const answer = await lookup(harness, itemId);

    expect(answer.json).toMatchObject({ attempts: [{ generations: [{ runway: { status: 'NOT_FOUND', error: expect.stringMatching(/no such task/) as unknown } }] }] });
  });
});

describe('an item with more than one attempt or generation', () => {
  it('lists attempt 1, reported failed, beside attempt 2 still at Runway', async () => {
    const item = seedItem('refused.jpg');
    const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 300 } } });
    const first = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, first.runway_task_id, 'FAILED');
    expect((await harness.deliver(CALLBACK, { job: first })).status).toBe(489);
    harness.sandbox.app.adminRetry(item.item_id);
    await harness.cron();
    const second = pollJobs(harness, item.item_id).find((job) => job.attempt === 2);
    const mark = harness.mark();

    const answer = await lookup(harness, item.item_id);

    expect(answer.json).toMatchObject({
      attempts: [
        {
          attempt: 1,
          state: 'reported',
          generations: [{ runway_task_id: first.runway_task_id }],
          report: { status: 'failed', error_message: expect.stringMatching(/^runway: SAFETY\.INPUT\.IMAGE/) as unknown, outcome: 'sent' },
          credits: 25,
        },
        { attempt: 2, state: 'at-runway', generations: [{ runway_task_id: second?.runway_task_id, runway: { status: expect.any(String) as unknown } }] },
      ],
    });
    // Only attempt 2's task is open.
    expect(taskLooks(harness, mark).map((request) => request.path)).toEqual([`/v1/tasks/${second?.runway_task_id}`]);
  });

  it('lists a generation replaced after a transient failure, with its code and credits, beside the new one', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    harness.sandbox.runway.failNextTasks({ code: 'INTERNAL' });
    const first = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, first.runway_task_id, 'FAILED');
    expect((await harness.deliver(CALLBACK, { job: first })).status).toBe(200);
    const second = pollJobs(harness, item.item_id).find((job) => job.generation === 2);
    const mark = harness.mark();

    const answer = await lookup(harness, item.item_id);

    expect(answer.json).toMatchObject({
      attempts: [
        {
          state: 'at-runway',
          generations: [
            { generation: 1, runway_task_id: first.runway_task_id, replaced: { failure_code: 'INTERNAL' }, final_credits: 25 },
            { generation: 2, runway_task_id: second?.runway_task_id, estimated_credits: 25, runway: { status: expect.any(String) as unknown } },
          ],
          credits: 50,
        },
      ],
    });
    expect(taskLooks(harness, mark).map((request) => request.path)).toEqual([`/v1/tasks/${second?.runway_task_id}`]);
  });

  it('finds the generations of an older attempt by reading on until one has no facts', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    // Both generations fail transiently: one new generation is allowed, then the item is reported failed.
    harness.sandbox.runway.failNextTasks({ code: 'INTERNAL', count: 2 });
    const first = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, first.runway_task_id, 'FAILED');
    await harness.deliver(CALLBACK, { job: first });
    const second = pollJobs(harness, item.item_id).find((job) => job.generation === 2);
    if (!second) throw new Error('no second generation');
    await waitForTaskStatus(harness, second.runway_task_id, 'FAILED');
    expect((await harness.deliver(CALLBACK, { job: second })).status).toBe(489);
    harness.sandbox.app.adminRetry(item.item_id);
    await harness.cron();

    const answer = await lookup(harness, item.item_id);

    expect(answer.json).toMatchObject({
      attempts: [
        {
          attempt: 1,
          state: 'reported',
          generations: [
            { generation: 1, runway_task_id: first.runway_task_id, replaced: { failure_code: 'INTERNAL' }, final_credits: 25 },
            { generation: 2, runway_task_id: second.runway_task_id, estimated_credits: 25 },
          ],
          report: { status: 'failed', error_message: expect.stringMatching(/\(after 2 generations\)$/) as unknown },
          credits: 50,
          credits_source: 'runway',
        },
        { attempt: 2, state: 'at-runway', generations: [{ generation: 1 }] },
      ],
    });
    expect((answer.json as { attempts: { generations: unknown[] }[] }).attempts[0]?.generations).toHaveLength(2);
  });
});

describe('ids the ledger cannot answer for', () => {
  it('answers 404 with a message saying where the ledger was looked for', async () => {
    const harness = await startHarness();
    const itemId = '0b6f3c1e-2d4a-4f5b-9c8d-7e6f5a4b3c2d';

    const answer = await lookup(harness, itemId);

    expect(answer.status).toBe(404);
    expect(answer.json).toEqual({
      outcome: 'unknown',
      detail: `no record of item ${itemId} in the ledger: it was never leased by this worker, or LEDGER_DIR / the Blob store is another one`,
    });
    expect(unknownItemMessage(itemId)).toBe((answer.json as { detail: string }).detail);
  });

  it.each(['', '../items', 'a b', 'x'.repeat(129), '-leading-dash', 'item#report-1', 'é'])('answers 400 for the id %j', async (itemId) => {
    const harness = await startHarness();
    const mark = harness.mark();

    const answer = await lookup(harness, itemId);

    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({ outcome: 'invalid', detail: expect.stringMatching(/^item must be an item id/) as unknown });
    expect(harness.requests({ since: mark })).toEqual([]);
  });

  it('answers 401 without the cron secret, and shows nothing of the item', async () => {
    const { harness, itemId } = await completedItem();

    const answer = await harness.cron(`?item=${itemId}`, null);

    expect(answer.status).toBe(401);
    expect(JSON.stringify(answer.json)).not.toContain(itemId);
  });

  it('answers 503 with the reason when the ledger cannot be read', async () => {
    const harness = await startHarness();
    const dir = await mkdtemp(path.join(tmpdir(), 'item-lookup-'));
    try {
      // A file where the ledger directory should be: every listing fails.
      const notADirectory = path.join(dir, 'ledger');
      await writeFile(notADirectory, 'not a directory');
      const deps = createDeps(parseConfig({ ...workerEnv(harness), LEDGER_DIR: notADirectory, CRON_SECRET }), { log: silentLogger() });
      const request = new Request(`${harness.url}/api/cron-poll?item=abc`, { headers: { authorization: `Bearer ${CRON_SECRET}` } });

      const response = await handleCronGet(request, () => deps);

      expect(response.status).toBe(503);
      expect(await response.json()).toEqual({ outcome: 'error', detail: expect.stringMatching(/^ledger directory: list .* failed \(ENOTDIR\)/) as unknown });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the view of one attempt, from its facts', () => {
  const AT = '2026-11-01T10:00:00.000Z';
  const task = (id: string, extra: Partial<NonNullable<JobRecord['task']>> = {}): NonNullable<JobRecord['task']> => ({
    runway_task_id: id,
    model: 'gen4_turbo',
    submitted_at: AT,
    duration: 5,
    ratio: '1280:720',
    ...extra,
  });
  const record = (facts: Partial<JobRecord> = {}): JobRecord => ({ itemId: 'item-1', attempt: 1, ...facts });
  const view = (facts: AttemptFacts, live: ReadonlyMap<string, LiveTask> = new Map(), audio = false) =>
    itemViewOf('item-1', [facts], live, audio).attempts[0];

  it.each([
    { name: 'closed without a report', generations: [record({ submitting: { at: AT }, abandoned: { reason: 'photo', at: AT } })], state: 'abandoned' },
    { name: 'with no facts of its own', generations: [record()], state: 'no-task' },
    { name: 'whose create is claimed', generations: [record({ submitting: { at: AT } })], state: 'submitting' },
    { name: 'with a task', generations: [record({ submitting: { at: AT }, task: task('t1') })], state: 'at-runway' },
    { name: 'whose video is stored', generations: [record({ task: task('t1'), uploaded: { storage_path: 'videos/i.mp4', bytes: 1, at: AT } })], state: 'uploaded' },
    { name: 'whose second generation is claimed, not created', generations: [record({ task: task('t1') }), record({ generation: 2, submitting: { at: AT } })], state: 'submitting' },
  ] as const)('calls an attempt $name "$state"', ({ generations, state }) => {
    expect(view({ generations })?.state).toBe(state);
  });

  it.each([
    ['sent', undefined, {}, 'sent'],
    ['sent again', { round: 2, unconfirmed: false }, {}, 'sent again (round 2)'],
    ['not confirmed', { round: 1, unconfirmed: true }, {}, 'not confirmed (round 1 got no answer; the next delivery sends it again)'],
    ['refused', undefined, { abandoned: { reason: 'lease lost (report refused)', at: AT } }, 'refused: the lease was lost'],
  ] as const)('words a report %s', (_name, rounds, extra, outcome) => {
    const own = record({ task: task('t1'), reported: { status: 'failed', at: AT, error_message: 'runway: x' }, ...extra });
    expect(view({ generations: [own], rounds })?.report).toEqual({ status: 'failed', at: AT, error_message: 'runway: x', outcome });
  });

  it('prices a task Runway named no figure for from the model table, marked as an estimate', () => {
    const own = record({ task: task('t1', { model: 'veo3.1', duration: 8 }) });
    expect(view({ generations: [own] })).toMatchObject({ credits: 160, credits_source: 'estimate', usd: 1.6 });
    expect(view({ generations: [own] }, new Map(), true)).toMatchObject({ credits: 320, credits_source: 'estimate' });
  });

  it('takes the figure a report logged over anything worked out again, and works one out for a ledger written before', () => {
    const logged = record({ task: task('t1', { estimated_credits: 25 }), reported: { status: 'completed', at: AT, credits: 30, credits_source: 'runway' } });
    expect(view({ generations: [logged] })).toMatchObject({ credits: 30, credits_source: 'runway' });
    const older = record({ task: task('t1', { estimated_credits: 25 }), reported: { status: 'completed', at: AT } });
    expect(view({ generations: [older] })).toMatchObject({ credits: 25, credits_source: 'runway' });
  });

  it("prices an open task from Runway's live cost once it names one, and from the cost fact over that", () => {
    const own = record({ task: task('t1', { estimated_credits: 25 }) });
    const live = new Map<string, LiveTask>([['t1', { kind: 'task', status: 'SUCCEEDED', cost: 20 }]]);
    expect(view({ generations: [own] }, live)).toMatchObject({ credits: 20, generations: [{ final_credits: 20, runway: { status: 'SUCCEEDED', cost_credits: 20 } }] });
    const recorded = record({ ...own, cost: { runway_task_id: 't1', generation: 1, credits: 22, at: AT } });
    expect(view({ generations: [recorded] }, live)).toMatchObject({ credits: 22 });
  });

  it('asks Runway only about the last generation of an attempt the ledger shows open', () => {
    const open: AttemptFacts = { generations: [record({ task: task('a') }), record({ generation: 2, task: task('b') })] };
    const costed: AttemptFacts = { generations: [record({ task: task('c'), cost: { runway_task_id: 'c', generation: 1, at: AT } })] };
    const closed = (facts: Partial<JobRecord>): AttemptFacts => ({ generations: [record({ task: task('d'), ...facts })] });
    expect(
      tasksToAsk([
        open,
        costed,
        closed({ reported: { status: 'failed', at: AT } }),
        closed({ abandoned: { reason: 'x', at: AT } }),
        closed({ uploaded: { storage_path: 'v', bytes: 0, at: AT } }),
        { generations: [record({ submitting: { at: AT } })] },
      ]),
    ).toEqual(['b']);
  });

  it('marks a replaced generation even when Runway gave no failure code for it', () => {
    const generations = [record({ task: task('a') }), record({ generation: 2, submitting: { at: AT, replaces: { runway_task_id: 'a' } }, task: task('b') })];
    expect(view({ generations })?.generations[0]).toMatchObject({ generation: 1, replaced: {} });
    expect(view({ generations })?.generations[0]).not.toHaveProperty('final_credits');
  });

  it('shows a failed live task with its code and progress as Runway gave them', () => {
    const live = new Map<string, LiveTask>([['t1', { kind: 'task', status: 'FAILED', progress: 0.5, failureCode: 'INTERNAL' }]]);
    expect(view({ generations: [record({ task: task('t1') })] }, live)?.generations[0]?.runway).toEqual({
      status: 'FAILED',
      progress: 0.5,
      failure_code: 'INTERNAL',
    });
  });

  it('leaves the price out when no generation ever had a task, or named a model the table does not know', () => {
    expect(view({ generations: [record({ submitting: { at: AT } })] })).not.toHaveProperty('credits');
    expect(view({ generations: [record({ task: task('t1', { model: 'gen3a_turbo' }) })] })).not.toHaveProperty('credits');
  });
});
