import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { RUNWAY_MODELS } from '../../lib/config.js';
import {
  attemptCredits,
  generationCredits,
  tableCredits,
  totalCredits,
  usdOf,
  USD_PER_CREDIT,
} from '../../lib/decide/credits.js';
import { MODEL_SPECS } from '../../lib/decide/models.js';
import type { Deps } from '../../lib/deps.js';
import { parseFact, type JobKey, type Ledger } from '../../lib/ledger/ledger.js';
import { pollMessageSchema, uploadMessageSchema, type Job } from '../../lib/steps/messages.js';
import { pollTask } from '../../lib/steps/poll-task.js';
import { sendReport } from '../../lib/steps/report.js';
import { captureLog, type CapturedLog } from '../support/extra-log.js';
import { closeExtraWorkers, startExtraWorker, type ExtraWorker } from '../support/extra-worker.js';
import { closeStandIns, startStandIn, type StandInReply, type StandInRequest } from '../support/extra-stand-in.js';
import { pollJobs, readyToUpload, submit, uploadMessages, waitForTaskStatus } from '../support/flow.js';
import { RUNWAY_AUTH, closeHarnesses, seedItem, startHarness, type Harness } from '../support/harness.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * What a video costs: Runway's estimate at create, its charge once the task has ended (or the
 * model table when it names neither), recorded in the ledger, and named on the line logged
 * when the item's report is sent.
 */

const CALLBACK = '/api/runway-callback';
const STEP_UPLOAD = '/api/step-upload';

/** The line logged when a report went out, from a captured log. */
function reportedLines(records: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  return records.filter((record) => record.msg === 'reported');
}

async function sandboxTask(harness: Harness, taskId: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${harness.sandbox.runwayApiUrl}/v1/tasks/${taskId}`, {
    headers: { authorization: RUNWAY_AUTH, 'x-runway-version': '2024-11-06' },
  });
  return (await response.json()) as Record<string, unknown>;
}

describe('the sandbox Runway', () => {
  it('names what a task cost once it has succeeded, and no cost while it runs or after it failed', async () => {
    const item = seedItem('landscape.jpg');
    const refused = seedItem('refused.jpg');
    const harness = await startHarness({ items: [item, refused], sandbox: { runway: { generationMs: 400 } } });
    await harness.cron();
    const [ok, failed] = [item, refused].map((seed) => pollJobs(harness, seed.item_id)[0]?.runway_task_id ?? '');

    const running = await sandboxTask(harness, ok ?? '');
    await waitForTaskStatus(harness, ok ?? '', 'SUCCEEDED');
    await waitForTaskStatus(harness, failed ?? '', 'FAILED');

    expect(running).not.toHaveProperty('cost');
    expect(await sandboxTask(harness, ok ?? '')).toMatchObject({ status: 'SUCCEEDED', estimatedCost: { credits: 25 }, cost: { credits: 25 } });
    expect(await sandboxTask(harness, failed ?? '')).not.toHaveProperty('cost');
  });
});

describe('a video Runway charged as it estimated at create', () => {
  it('writes no cost fact, and names 25 Runway credits on the report line and in the reported fact', async () => {
    const log = captureLog();
    const ready = await readyToUpload({ log: log.logger });
    const { harness, itemId } = ready;

    expect((await harness.deliver(STEP_UPLOAD, ready.message)).status).toBe(200);

    const record = await harness.runtime.deps.ledger.read({ itemId, attempt: 1 });
    expect(record.task?.estimated_credits).toBe(25);
    expect(record.cost).toBeUndefined();
    expect(record.reported).toMatchObject({ status: 'completed', credits: 25, credits_source: 'runway' });
    expect(reportedLines(log.records())).toEqual([
      expect.objectContaining({ item_id: itemId, step: 'report', status: 'completed', credits: 25, credits_source: 'runway' }),
    ]);
  });
});

/** A worker whose Runway answers pass through a stand-in that bends them. */
async function workerWithRunway(
  harness: Harness,
  rewrite: (request: StandInRequest, reply: StandInReply) => StandInReply,
  env: Record<string, string> = {},
): Promise<ExtraWorker> {
  const runway = await startStandIn({ target: harness.runtime.deps.config.runwayApiUrl, rewrite });
  return startExtraWorker(harness, { env: { RUNWAY_API_URL: runway.url, ...env } });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** The reply with some of its top-level fields replaced or (undefined) removed. */
function withFields(reply: StandInReply, fields: Record<string, unknown>): StandInReply {
  if (!isObject(reply.json)) return reply;
  const json: Record<string, unknown> = { ...reply.json, ...fields };
  for (const [name, value] of Object.entries(fields)) if (value === undefined) delete json[name];
  return { ...reply, json };
}

const isTaskLook = (request: StandInRequest): boolean => request.method === 'GET' && request.path.startsWith('/v1/tasks/');
const statusOf = (reply: StandInReply): unknown => (isObject(reply.json) ? reply.json.status : undefined);

/** Leases the item through `worker`, waits for its task to end and delivers the poll; returns the poll job. */
async function pollToTheEnd(harness: Harness, worker: ExtraWorker, itemId: string, status: string): Promise<Job> {
  await worker.cron();
  const job = worker
    .messages(CALLBACK)
    .map((message) => pollMessageSchema.parse(JSON.parse(message.body)).job)
    .find((candidate) => candidate.item_id === itemId);
  if (!job) throw new Error('no poll published');
  await waitForTaskStatus(harness, job.runway_task_id, status);
  await worker.deliver(CALLBACK, { job });
  return job;
}

async function uploadThrough(worker: ExtraWorker, itemId: string): Promise<void> {
  const upload = worker
    .messages(STEP_UPLOAD)
    .map((message) => uploadMessageSchema.parse(JSON.parse(message.body)))
    .find((message) => message.job.item_id === itemId);
  expect((await worker.deliver(STEP_UPLOAD, upload)).status).toBe(200);
}

describe('a video Runway charged other than it estimated', () => {
  it('records the charge as the cost fact when the poll sees the task succeed, and the report names it', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const worker = await workerWithRunway(harness, (request, reply) =>
      isTaskLook(request) && statusOf(reply) === 'SUCCEEDED' ? withFields(reply, { cost: { credits: 30 } }) : reply,
    );

    const job = await pollToTheEnd(harness, worker, item.item_id, 'SUCCEEDED');

    const key: JobKey = { itemId: item.item_id, attempt: 1 };
    expect((await harness.runtime.deps.ledger.read(key)).cost).toEqual({
      runway_task_id: job.runway_task_id,
      generation: 1,
      credits: 30,
      at: expect.any(String) as unknown,
    });
    await uploadThrough(worker, item.item_id);
    expect((await harness.runtime.deps.ledger.read(key)).reported).toMatchObject({ credits: 30, credits_source: 'runway' });
    expect(reportedLines(worker.log.records())).toEqual([expect.objectContaining({ credits: 30, credits_source: 'runway' })]);
  });
});

describe('a video Runway named no price for at all', () => {
  const noPrices = (request: StandInRequest, reply: StandInReply): StandInReply =>
    request.path === '/v1/image_to_video' || isTaskLook(request) ? withFields(reply, { estimatedCost: undefined, cost: undefined }) : reply;

  it.each([
    { audio: 'false', credits: 120 },
    { audio: 'true', credits: 240 },
  ])('is priced from the model table (veo3.1, 6 s, audio $audio: $credits credits) and marked as an estimate', async ({ audio, credits }) => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const worker = await workerWithRunway(harness, noPrices, { RUNWAY_MODEL: 'veo3.1', RUNWAY_AUDIO: audio });

    await pollToTheEnd(harness, worker, item.item_id, 'SUCCEEDED');
    await uploadThrough(worker, item.item_id);

    const record = await harness.runtime.deps.ledger.read({ itemId: item.item_id, attempt: 1 });
    expect(record.task).toMatchObject({ model: 'veo3.1', duration: 6 });
    expect(record.task).not.toHaveProperty('estimated_credits');
    expect(record.cost).toBeUndefined();
    expect(record.reported).toMatchObject({ credits, credits_source: 'estimate' });
    expect(reportedLines(worker.log.records())).toEqual([expect.objectContaining({ credits, credits_source: 'estimate' })]);
  });
});

describe('a video made by a second generation', () => {
  it('records the last generation in the cost fact and names both generations together on the report line', async () => {
    const log = captureLog();
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item], log: log.logger });
    harness.sandbox.runway.failNextTasks({ code: 'INTERNAL' });
    const first = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, first.runway_task_id, 'FAILED');
    await harness.deliver(CALLBACK, { job: first });
    const second = pollJobs(harness, item.item_id).find((job) => job.generation === 2);
    if (!second) throw new Error('no second generation');
    await waitForTaskStatus(harness, second.runway_task_id, 'SUCCEEDED');
    await harness.deliver(CALLBACK, { job: second });
    const [upload] = uploadMessages(harness, item.item_id);

    expect((await harness.deliver(STEP_UPLOAD, upload)).status).toBe(200);

    const record = await harness.runtime.deps.ledger.read({ itemId: item.item_id, attempt: 1 });
    expect(record.cost).toMatchObject({ runway_task_id: second.runway_task_id, generation: 2, credits: 25 });
    // The failed first generation counts at the figure Runway gave for it (its estimate), the second at its charge.
    expect(record.reported).toMatchObject({ status: 'completed', credits: 50, credits_source: 'runway' });
    expect(reportedLines(log.records())).toEqual([expect.objectContaining({ status: 'completed', credits: 50, credits_source: 'runway' })]);
  });
});

describe('an item reported failed by the poll that saw its task fail', () => {
  it("names the failed task's own charge when Runway gives one (a refund: 0)", async () => {
    const item = seedItem('refused.jpg');
    const harness = await startHarness({ items: [item] });
    const worker = await workerWithRunway(harness, (request, reply) =>
      isTaskLook(request) && statusOf(reply) === 'FAILED' ? withFields(reply, { cost: { credits: 0 } }) : reply,
    );

    await pollToTheEnd(harness, worker, item.item_id, 'FAILED');

    const record = await harness.runtime.deps.ledger.read({ itemId: item.item_id, attempt: 1 });
    expect(record.reported).toMatchObject({ status: 'failed', credits: 0, credits_source: 'runway' });
    expect(record.cost).toBeUndefined();
    expect(reportedLines(worker.log.records())).toEqual([expect.objectContaining({ status: 'failed', credits: 0 })]);
  });

  it('names the estimate at create when Runway gives no charge for the failed task', async () => {
    const log = captureLog();
    const item = seedItem('refused.jpg');
    const harness = await startHarness({ items: [item], log: log.logger });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');

    expect((await harness.deliver(CALLBACK, { job })).status).toBe(489);

    expect(reportedLines(log.records())).toEqual([expect.objectContaining({ status: 'failed', credits: 25, credits_source: 'runway' })]);
  });
});

describe('when the ledger fails on the way to a price', () => {
  /** The harness's deps with a captured log and a ledger that refuses some calls. */
  function depsWith(harness: Harness, ledger: Partial<Ledger>): { deps: Deps; log: CapturedLog } {
    const base = harness.runtime.deps;
    const log = captureLog();
    return { deps: { ...base, log: log.logger, ledger: { ...base.ledger, ...ledger } }, log };
  }

  it('still hands a finished video over to the upload when the cost fact cannot be written', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'SUCCEEDED');
    const base = harness.runtime.deps;
    const { deps, log } = depsWith(harness, {
      claim: (key, fact, value) => (fact === 'cost' ? Promise.reject(new Error('disk full')) : base.ledger.claim(key, fact, value)),
    });
    // A charge other than the estimate: the cost fact is due.
    const runway = {
      ...base.runway,
      getTask: async (id: string) => {
        const task = await base.runway.getTask(id);
        return task && { ...task, cost: { credits: 30 } };
      },
    };

    const outcome = await pollTask({ ...deps, runway }, { job }, { retried: 0, last: false });

    expect(outcome).toEqual({ kind: 'done', detail: 'succeeded: upload scheduled' });
    expect(uploadMessages(harness, item.item_id)).toHaveLength(1);
    expect(log.records()).toContainEqual(expect.objectContaining({ msg: 'could not record what the task cost', err: 'Error: disk full' }));
  });

  it('still sends the report, without a price, when a later generation cannot be read', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const job = await submit(harness, item.item_id);
    const base = harness.runtime.deps;
    const { deps, log } = depsWith(harness, {
      read: (key) => (key.generation === 2 ? Promise.reject(new Error('gone')) : base.ledger.read(key)),
    });
    const key: JobKey = { itemId: item.item_id, attempt: 1 };
    const report = { item_id: item.item_id, status: 'failed', error_message: 'runway: x', veo_operation_id: job.runway_task_id } as const;

    const result = await sendReport(deps, key, report, undefined, { generation: 2 });

    expect(result).toEqual({ kind: 'reported' });
    const reported = (await base.ledger.read(key)).reported;
    expect(reported).toMatchObject({ status: 'failed' });
    expect(reported).not.toHaveProperty('credits');
    expect(log.records()).toContainEqual(expect.objectContaining({ msg: 'could not work out what the attempt cost', err: 'Error: gone' }));
    const [line] = reportedLines(log.records());
    expect(line).toMatchObject({ status: 'failed' });
    expect(line).not.toHaveProperty('credits');
  });
});

describe('the ledger facts that carry a price', () => {
  it('reads a reported fact written before prices were kept, and one with its price', () => {
    expect(parseFact('reported', { status: 'completed', at: 'x' })).toEqual({ status: 'completed', at: 'x' });
    expect(parseFact('reported', { status: 'failed', at: 'x', credits: 25, credits_source: 'estimate' })).toMatchObject({ credits: 25 });
    expect(parseFact('reported', { status: 'failed', at: 'x', credits: 25, credits_source: 'guess' })).toBeUndefined();
    expect(parseFact('reported', { status: 'failed', at: 'x', credits: -1 })).toBeUndefined();
  });

  it('reads a cost fact with or without a charge, and refuses one without its generation', () => {
    expect(parseFact('cost', { runway_task_id: 't', generation: 2, at: 'x' })).toEqual({ runway_task_id: 't', generation: 2, at: 'x' });
    expect(parseFact('cost', { runway_task_id: 't', generation: 1, credits: 30, at: 'x' })).toMatchObject({ credits: 30 });
    expect(parseFact('cost', { runway_task_id: 't', credits: 30, at: 'x' })).toBeUndefined();
  });
});

describe('prices worked out from what the ledger holds', () => {
  const task = (extra: { estimated_credits?: number; model?: string; duration?: number } = {}) => ({
    task: { model: extra.model ?? 'gen4_turbo', duration: extra.duration ?? 5, ...(extra.estimated_credits === undefined ? {} : { estimated_credits: extra.estimated_credits }) },
  });

  it("prefers Runway's charge at the end, then its estimate at create, then the model table", () => {
    expect(generationCredits(task({ estimated_credits: 25 }), 30, false)).toEqual({ credits: 30, source: 'runway' });
    expect(generationCredits(task({ estimated_credits: 25 }), undefined, false)).toEqual({ credits: 25, source: 'runway' });
    expect(generationCredits(task(), undefined, false)).toEqual({ credits: 25, source: 'estimate' });
    expect(generationCredits(task({ model: 'veo3.1_fast', duration: 8 }), undefined, true)).toEqual({ credits: 120, source: 'estimate' });
    expect(generationCredits({}, undefined, false)).toBeUndefined();
    expect(generationCredits(task({ model: 'seedance2' }), undefined, false)).toBeUndefined();
  });

  it('sums generations, and calls the sum an estimate as soon as one part is', () => {
    expect(totalCredits([{ credits: 25, source: 'runway' }, undefined, { credits: 12.5, source: 'runway' }])).toEqual({ credits: 37.5, source: 'runway' });
    expect(totalCredits([{ credits: 25, source: 'runway' }, { credits: 25, source: 'estimate' }])).toEqual({ credits: 50, source: 'estimate' });
    expect(totalCredits([undefined])).toBeUndefined();
    expect(totalCredits([{ credits: 0.1, source: 'runway' }, { credits: 0.2, source: 'runway' }])?.credits).toBe(0.3);
  });

  it('prices a replaced generation at what the next one kept of it, and the last at its final charge', () => {
    const generations = [task({ estimated_credits: 25 }), { ...task({ estimated_credits: 25 }), submitting: { replaces: { credits: 20 } } }];
    expect(attemptCredits(generations, 30, false)).toEqual({
      total: { credits: 50, source: 'runway' },
      generations: [
        { credits: 20, source: 'runway' },
        { credits: 30, source: 'runway' },
      ],
    });
    expect(attemptCredits([task(), { submitting: {} }], undefined, false).generations).toEqual([{ credits: 25, source: 'estimate' }, undefined]);
  });

  it('turns credits into dollars at $0.01 each, to the cent', () => {
    expect(USD_PER_CREDIT).toBe(0.01);
    expect(usdOf(25)).toBe(0.25);
    expect(usdOf(320)).toBe(3.2);
    expect(usdOf(12.5)).toBe(0.13);
  });

  it('knows the table price of every model and none for a model it does not know', () => {
    expect(tableCredits('gen4.5', 10, false)).toBe(120);
    expect(tableCredits('veo3', 8, false)).toBeUndefined();
  });
});

describe("the README's cost table", () => {
  const DURATIONS = [2, 3, 4, 5, 6, 7, 8, 9, 10];

  /** The table as the model table makes it: one row per model (per audio setting for Veo). */
  function expectedTable(): string {
    const rows = [
      `| model | credits / s | ${DURATIONS.map((seconds) => `${seconds} s`).join(' | ')} |`,
      `|---|--:|${DURATIONS.map(() => '--:').join('|')}|`,
    ];
    for (const model of RUNWAY_MODELS) {
      const spec = MODEL_SPECS[model];
      const price = spec.creditsPerSecond;
      const variants: [string, number][] =
        typeof price === 'number'
          ? [[`\`${model}\``, price]]
          : [
              [`\`${model}\`, silent`, price.silent],
              [`\`${model}\`, with audio`, price.audio],
            ];
      for (const [label, perSecond] of variants) {
        const cells = DURATIONS.map((seconds) =>
          spec.durationsSeconds.includes(seconds) ? `$${usdOf(perSecond * seconds).toFixed(2)} (${perSecond * seconds})` : '—',
        );
        rows.push(`| ${label} | ${perSecond} | ${cells.join(' | ')} |`);
      }
    }
    return rows.join('\n');
  }

  it('lists the cost of every model at every duration it accepts, as the model table prices it', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.split('\n## Cost per video\n')[1]?.split('\n## ')[0] ?? '';

    expect(section).toContain(expectedTable());
    expect(section).toContain('1 credit = $0.01');
  });
});
