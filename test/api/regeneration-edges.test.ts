import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { slotPath, type JobKey } from '../../lib/ledger/ledger.js';
import type { Job } from '../../lib/steps/messages.js';
import { closeExtraWorkers, startExtraWorker, type ExtraWorkerOptions } from '../support/extra-worker.js';
import { closeStandIns, startStandIn, type StandInOptions } from '../support/extra-stand-in.js';
import { describeRequest, pollJobs, submit, waitForTaskStatus } from '../support/flow.js';
import { WORKER_ID, closeHarnesses, seedItem, startHarness, until, type Harness, type HarnessOptions } from '../support/harness.js';
import { SCRIPTED_FAULT_RATE, scriptedRng } from '../support/scripted-rng.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/**
 * A new Runway generation after a transient failure, when something on its way goes wrong
 * (design §2 "runway-callback"): the lease, the photo, the create, the first poll's publish,
 * and the ledger's slot markers.
 */

const CALLBACK = '/api/runway-callback';
const INTERNAL_FAILURE = 'runway: INTERNAL — a temporary internal failure at Runway';

interface Failing {
  readonly harness: Harness;
  readonly itemId: string;
  /** The first generation's poll job; its Runway task has FAILED by now. */
  readonly job: Job;
  readonly key: JobKey;
}

/** One item whose first Runway task fails with `code`. */
async function firstGenerationFails(code: string, options: HarnessOptions = {}): Promise<Failing> {
  const item = seedItem('landscape.jpg');
  const harness = await startHarness({ ...options, items: [item] });
  harness.sandbox.runway.failNextTasks({ code });
  const job = await submit(harness, item.item_id);
  await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');
  return { harness, itemId: item.item_id, job, key: { itemId: item.item_id, attempt: 1 } };
}

const creates = (harness: Harness) => harness.requests({ service: 'runway', method: 'POST', path: '/v1/image_to_video' });

function reportsOf(harness: Harness, itemId: string) {
  return harness.sandbox.app.reports(itemId).map(({ status, error_message, veo_operation_id }) => ({ status, error_message, veo_operation_id }));
}

/** A second worker whose calls to one service go through a stand-in in front of it. */
async function workerBehind(
  harness: Harness,
  service: 'app' | 'runway' | 'qstash',
  standIn: Omit<StandInOptions, 'target'>,
  options: ExtraWorkerOptions = {},
) {
  const targets = { app: harness.sandbox.nextApiUrl, runway: harness.sandbox.runwayApiUrl, qstash: harness.runtime.deps.config.qstashUrl };
  const variables = { app: 'NEXT_API_URL', runway: 'RUNWAY_API_URL', qstash: 'QSTASH_URL' };
  const front = await startStandIn({ target: targets[service], ...standIn });
  const worker = await startExtraWorker(harness, { ...options, env: { ...options.env, [variables[service]]: front.url } });
  return { front, worker };
}

const isCreate = (request: { method: string; path: string }): boolean => request.method === 'POST' && request.path === '/v1/image_to_video';
const isDownloadPresign = (request: { path: string; json: unknown }): boolean =>
  request.path === '/worker/presign' && JSON.stringify(request.json).includes('"download"');

/** The app answering the photo's download presign as a missing resource: 404. */
const PHOTO_GONE: Omit<StandInOptions, 'target'> = {
  answer: (request) => (isDownloadPresign(request) ? { status: 404, json: { success: false, error: 'Photo not found' } } : undefined),
};

describe('a new generation whose lease was lost meanwhile', () => {
  it('creates nothing and reports nothing: abandons the job and frees the model\'s slot', async () => {
    const { harness, itemId, job, key } = await firstGenerationFails('INTERNAL');
    harness.sandbox.app.adminFail(itemId);
    const { ledger } = harness.runtime.deps;
    expect((await ledger.slots(0)).inFlight).toHaveLength(1);
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: 'lease lost: no new generation' });
    expect(harness.requests({ since: mark }).map(describeRequest)).toEqual([`runway GET /v1/tasks/${job.runway_task_id}`, 'app POST /worker/heartbeat']);
    expect(harness.appCalls('heartbeat', mark)[0]?.json).toEqual({ item_id: itemId, worker_id: WORKER_ID, extend_seconds: 600 });
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
    expect((await ledger.read(key)).abandoned?.reason).toBe('lease lost before a new generation');
    expect(await ledger.read({ ...key, generation: 2 })).not.toHaveProperty('submitting');
    expect((await ledger.slots(0)).inFlight).toEqual([]);
  });
});

describe('the app answering 404 to the photo\'s download presign', () => {
  it('reports the photo not found when the first generation is prepared', async () => {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ items: [item] });
    const { worker } = await workerBehind(harness, 'app', PHOTO_GONE);

    const summary = await worker.cron();

    expect(summary.json).toMatchObject({ items: [{ item_id: item.item_id, outcome: 'failed' }] });
    expect(creates(harness)).toEqual([]);
    expect(harness.sandbox.app.reports(item.item_id)).toMatchObject([
      { status: 'failed', error_message: 'photo: not found (the app could not sign a download URL)', applied: true },
    ]);
  });

  it('reports the Runway failure when a new generation cannot prepare the photo again', async () => {
    const { harness, itemId, job, key } = await firstGenerationFails('INTERNAL');
    const { front, worker } = await workerBehind(harness, 'app', PHOTO_GONE);

    const answer = await worker.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(front.requests().filter(isDownloadPresign)).toHaveLength(1);
    expect(creates(harness)).toHaveLength(1);
    expect(reportsOf(harness, itemId)).toEqual([{ status: 'failed', error_message: INTERNAL_FAILURE, veo_operation_id: job.runway_task_id }]);
    expect(await harness.runtime.deps.ledger.read({ ...key, generation: 2 })).not.toHaveProperty('submitting');
    expect((await harness.runtime.deps.ledger.slots(0)).inFlight).toEqual([]);
  });
});

describe('a new generation whose create Runway refuses', () => {
  it('gives the item back untouched at the daily cap (429): no report, the lease released', async () => {
    const faults = scriptedRng();
    const { harness, itemId, job, key } = await firstGenerationFails('INTERNAL', {
      sandbox: { rng: faults.rng, faults: { runway: { create429Rate: SCRIPTED_FAULT_RATE } } },
    });
    faults.fireNext();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: expect.stringMatching(/^runway: daily generation limit reached.*: item given back$/) as unknown });
    expect(creates(harness)).toHaveLength(2);
    expect(harness.sandbox.runway.tasks()).toHaveLength(1);
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
    expect(harness.appCalls('heartbeat').map((request) => (request.json as { extend_seconds: number }).extend_seconds)).toEqual([600, 0]);
    expect((await harness.runtime.deps.ledger.read(key)).abandoned).toMatchObject({
      reason: 'runway daily generation cap (new generation)',
      transient_failures: 1,
      photo_not_found: 0,
    });
    expect((await harness.runtime.deps.ledger.slots(0)).inFlight).toEqual([]);
  });

  it('gives the item back at the daily cap even when the release does not reach the app: its lease lapses', async () => {
    const faults = scriptedRng();
    const { harness, itemId, job, key } = await firstGenerationFails('INTERNAL', {
      sandbox: { rng: faults.rng, faults: { runway: { create429Rate: SCRIPTED_FAULT_RATE } } },
    });
    const releases = (request: { path: string; json: unknown }): boolean =>
      request.path === '/worker/heartbeat' && (request.json as { extend_seconds?: number }).extend_seconds === 0;
    const { front, worker } = await workerBehind(harness, 'app', {
      answer: (request) => (releases(request) ? { status: 500, json: { success: false, error: 'Internal server error' } } : undefined),
    });
    faults.fireNext();

    const answer = await worker.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ outcome: 'done', detail: expect.stringMatching(/: item given back$/) as unknown });
    expect(front.requests().filter(releases)).toHaveLength(3);
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
    expect((await harness.runtime.deps.ledger.read(key)).abandoned?.reason).toBe('runway daily generation cap (new generation)');
    expect(harness.sandbox.app.item(itemId)?.status).toBe('processing');
  });

  it('reports failed, naming the refusal, when the create is answered 400', async () => {
    const { harness, itemId, job } = await firstGenerationFails('INTERNAL');
    const { front, worker } = await workerBehind(harness, 'runway', {
      answer: (request) => (isCreate(request) ? { status: 400, json: { error: 'Validation of body failed' } } : undefined),
    });

    const answer = await worker.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(front.requests().filter(isCreate)).toHaveLength(1);
    expect(harness.sandbox.runway.tasks()).toHaveLength(1);
    expect(reportsOf(harness, itemId)).toEqual([
      {
        status: 'failed',
        error_message: `${INTERNAL_FAILURE} (a new generation was refused: runway: create answered 400 (Validation of body failed))`,
        veo_operation_id: job.runway_task_id,
      },
    ]);
    expect((await harness.runtime.deps.ledger.slots(0)).inFlight).toEqual([]);
  });

  it('reports failed, saying a task may exist, when the create gets no answer in time', async () => {
    const { harness, itemId, job, key } = await firstGenerationFails('INTERNAL');
    let answeredLate = false;
    const { worker } = await workerBehind(
      harness,
      'runway',
      {
        rewrite: async (request, reply) => {
          if (!isCreate(request)) return reply;
          // Runway made the task, but its answer comes after the worker has stopped waiting.
          await sleep(3_000);
          answeredLate = true;
          return reply;
        },
      },
      { timeouts: { runwayMs: 1_000 } },
    );

    const answer = await worker.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(harness.sandbox.runway.tasks()).toHaveLength(2);
    expect(reportsOf(harness, itemId)).toEqual([
      {
        status: 'failed',
        error_message: `${INTERNAL_FAILURE} (the new generation got no answer; a task may exist)`,
        veo_operation_id: job.runway_task_id,
      },
    ]);
    // The claim stays spent: no later delivery creates a third task.
    const generation = await harness.runtime.deps.ledger.read({ ...key, generation: 2 });
    expect(generation.submitting).toBeDefined();
    expect(generation.task).toBeUndefined();
    await until(() => answeredLate, 'the late create answer');
  });
});

describe('a new generation whose first poll QStash refuses to take', () => {
  it('still counts as started: the task is recorded, so the next lease resumes polling it', async () => {
    const { harness, itemId, job, key } = await firstGenerationFails('INTERNAL');
    const { front, worker } = await workerBehind(harness, 'qstash', { answer: () => ({ status: 500, json: { error: 'internal error' } }) });

    const answer = await worker.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    const [, second] = harness.sandbox.runway.tasks();
    expect(answer.json).toMatchObject({ outcome: 'done', detail: `generation 2 started: task ${second?.id}` });
    expect(front.requests().map((request) => request.method)).toEqual(['POST']);
    expect(worker.messages()).toEqual([]);
    expect((await harness.runtime.deps.ledger.read({ ...key, generation: 2 })).task?.runway_task_id).toBe(second?.id);

    harness.sandbox.app.expireLease(itemId);
    expect((await harness.cron()).json).toMatchObject({ items: [{ item_id: itemId, outcome: 'resumed' }] });
    expect(pollJobs(harness, itemId).at(-1)).toMatchObject({ runway_task_id: second?.id, generation: 2 });
    expect(creates(harness)).toHaveLength(2);
  });
});

describe('a ledger whose slot marker for the item cannot be written or removed', () => {
  /** The marker's name is taken by a folder: writing it and removing it both fail. */
  async function blockSlotMarker(harness: Harness, key: JobKey, model: string): Promise<void> {
    const marker = path.join(harness.runtime.deps.config.ledgerDir, ...slotPath(key, model).split('/'));
    await rm(marker, { force: true });
    await mkdir(path.join(marker, 'in-the-way'), { recursive: true });
  }

  it('starts the new generation and schedules its first poll all the same', async () => {
    const { harness, itemId, job, key } = await firstGenerationFails('INTERNAL');
    await blockSlotMarker(harness, key, job.model);
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ detail: expect.stringMatching(/^generation 2 started/) as unknown });
    expect(harness.messages(CALLBACK, mark)).toHaveLength(1);
    expect(pollJobs(harness, itemId).at(-1)).toMatchObject({ generation: 2, polls: 0 });
  });

  it('reports a failed generation all the same', async () => {
    const { harness, itemId, job, key } = await firstGenerationFails('SAFETY.INPUT.IMAGE');
    await blockSlotMarker(harness, key, job.model);

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(reportsOf(harness, itemId)).toEqual([
      { status: 'failed', error_message: "runway: SAFETY.INPUT.IMAGE — the photo was rejected by Runway's content moderation", veo_operation_id: job.runway_task_id },
    ]);
  });
});
