import { afterEach, describe, expect, it } from 'vitest';
import type { Job } from '../../lib/steps/messages.js';
import { SUBMIT_STALE_MS } from '../../lib/steps/submit-task.js';
import { pollJobs, submit, uploadMessages, waitForTaskStatus } from '../support/flow.js';
import { closeHarnesses, seedItem, startHarness, type Harness, type HarnessOptions } from '../support/harness.js';
import { createBodySchema } from '../support/runway-create.js';
import { countedRng, SCRIPTED_FAULT_RATE } from '../support/scripted-rng.js';

afterEach(closeHarnesses);

/**
 * One new Runway generation after a transient failure: the
 * worker plays QStash's part here one signed delivery at a time, so each test sees exactly
 * which deliveries created which tasks.
 */

const CALLBACK = '/api/runway-callback';

interface Failing {
  readonly harness: Harness;
  readonly itemId: string;
  /** The first generation's poll job; its Runway task has FAILED by now. */
  readonly job: Job;
}

/** One item whose first Runway task fails with `code`. */
async function firstGenerationFails(code: string, options: HarnessOptions = {}): Promise<Failing> {
  const item = seedItem('landscape.jpg');
  const harness = await startHarness({ ...options, items: [item] });
  harness.sandbox.runway.failNextTasks({ code });
  const job = await submit(harness, item.item_id);
  await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');
  return { harness, itemId: item.item_id, job };
}

const creates = (harness: Harness) => harness.requests({ service: 'runway', method: 'POST', path: '/v1/image_to_video' });

/** The poll job of generation `generation`, as published. */
function generationJob(harness: Harness, itemId: string, generation: number): Job | undefined {
  return pollJobs(harness, itemId).find((job) => job.generation === generation);
}

/** Delivers the poll of a finished task and then its upload; returns the upload answer. */
async function finish(harness: Harness, job: Job): Promise<number> {
  await waitForTaskStatus(harness, job.runway_task_id, 'SUCCEEDED');
  expect((await harness.deliver(CALLBACK, { job })).status).toBe(200);
  const [upload] = uploadMessages(harness, job.item_id);
  expect(upload?.job.runway_task_id).toBe(job.runway_task_id);
  return (await harness.deliver('/api/step-upload', upload)).status;
}

describe('a first generation that fails with a transient code', () => {
  it.each(['INTERNAL', 'THIRD_PARTY.UNAVAILABLE', 'INPUT_PREPROCESSING.INTERNAL'])(
    'on %s starts exactly one new generation and completes with the task that made the video',
    async (code) => {
      const { harness, itemId, job } = await firstGenerationFails(code);

      const answer = await harness.deliver(CALLBACK, { job });

      expect(answer.status).toBe(200);
      expect(answer.json).toMatchObject({ outcome: 'done', detail: expect.stringMatching(/^generation 2 started/) as unknown });
      const bodies = creates(harness).map((request) => createBodySchema.parse(request.json));
      expect(bodies).toHaveLength(2);
      // The same request again: model, ratio, duration, prompt and the same prepared photo.
      expect(bodies[1]).toEqual(bodies[0]);
      const second = generationJob(harness, itemId, 2);
      const [, secondTask] = harness.sandbox.runway.tasks();
      expect(second).toMatchObject({ attempt: 1, generation: 2, polls: 0, runway_task_id: secondTask?.id });
      expect(second?.runway_task_id).not.toBe(job.runway_task_id);
      expect(harness.sandbox.app.reports(itemId)).toEqual([]);

      expect(await finish(harness, second as Job)).toBe(200);
      expect(harness.sandbox.app.reports(itemId).map(({ status, veo_operation_id }) => ({ status, veo_operation_id }))).toEqual([
        { status: 'completed', veo_operation_id: secondTask?.id },
      ]);
      expect(creates(harness)).toHaveLength(2);
    },
  );

  it('keeps the failed generation (task, code, credits) in the ledger and the new one beside it', async () => {
    const { harness, itemId, job } = await firstGenerationFails('THIRD_PARTY.UNAVAILABLE');

    await harness.deliver(CALLBACK, { job });

    const [first, second] = harness.sandbox.runway.tasks();
    const generation = await harness.runtime.deps.ledger.read({ itemId, attempt: 1, generation: 2 });
    expect(generation.submitting?.replaces).toEqual({
      runway_task_id: first?.id,
      failure_code: 'THIRD_PARTY.UNAVAILABLE',
      credits: first?.credits,
    });
    expect(generation.task).toMatchObject({ runway_task_id: second?.id, model: 'gen4_turbo', ratio: job.ratio, duration: job.duration });
    expect(generation.task?.photo?.sent).toMatchObject({ type: 'jpeg' });
    // The attempt's own record still names its first task.
    expect((await harness.runtime.deps.ledger.read({ itemId, attempt: 1 })).task?.runway_task_id).toBe(first?.id);
    expect((await harness.runtime.deps.ledger.latest(itemId))?.latestGeneration).toBe(2);
  });

  it('heartbeats the lease before the new generation and gives it its own timeout', async () => {
    const { harness, itemId, job } = await firstGenerationFails('INTERNAL');
    const before = Date.now();

    await harness.deliver(CALLBACK, { job });

    expect(harness.appCalls('heartbeat').map((request) => request.json)).toEqual([
      { item_id: itemId, worker_id: 'runway-worker', extend_seconds: 600 },
    ]);
    const second = generationJob(harness, itemId, 2);
    expect(second?.submitted_at).toBeGreaterThanOrEqual(before);
    expect(second?.submitted_at).toBeGreaterThan(job.submitted_at);
  });

  it('reports failed, naming both generations, when the new one fails transiently too', async () => {
    const { harness, itemId, job } = await firstGenerationFails('INTERNAL');
    harness.sandbox.runway.failNextTasks({ code: 'INTERNAL' });
    await harness.deliver(CALLBACK, { job });
    const second = generationJob(harness, itemId, 2) as Job;
    await waitForTaskStatus(harness, second.runway_task_id, 'FAILED');

    const answer = await harness.deliver(CALLBACK, { job: second });

    expect(answer.status).toBe(489);
    expect(creates(harness)).toHaveLength(2);
    expect(harness.sandbox.app.reports(itemId).map(({ status, error_message, veo_operation_id }) => ({ status, error_message, veo_operation_id }))).toEqual([
      {
        status: 'failed',
        error_message: 'runway: INTERNAL — a temporary internal failure at Runway (after 2 generations)',
        veo_operation_id: second.runway_task_id,
      },
    ]);
  });

  it('starts none with RUNWAY_REGENERATIONS=0: reported failed at once', async () => {
    const { harness, itemId, job } = await firstGenerationFails('INTERNAL', { env: { RUNWAY_REGENERATIONS: '0' } });

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(creates(harness)).toHaveLength(1);
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([
      { status: 'failed', error_message: 'runway: INTERNAL — a temporary internal failure at Runway', veo_operation_id: job.runway_task_id },
    ]);
  });
});

describe('a new generation whose create Runway answers with a 502', () => {
  it('gives the item back untouched (no task was made), and the next lease starts a fresh attempt', async () => {
    const faults = countedRng();
    const { harness, itemId, job } = await firstGenerationFails('INTERNAL', {
      sandbox: { rng: faults.rng, runway: { generationMs: 300 }, faults: { runway: { error502Rate: SCRIPTED_FAULT_RATE } } },
    });
    // This delivery: the task lookup, then the new generation's create.
    faults.fireOn(faults.draws() + 2);

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    expect(creates(harness).map((request) => request.json)).toHaveLength(2);
    expect(harness.sandbox.runway.tasks()).toHaveLength(1);
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
    expect(harness.appCalls('heartbeat').map((request) => (request.json as { extend_seconds: number }).extend_seconds)).toEqual([600, 0]);
    expect((await harness.runtime.deps.ledger.read({ itemId, attempt: 1 })).abandoned).toMatchObject({ transient_failures: 1 });

    const next = await harness.cron();

    expect(next.json).toMatchObject({ items: [{ item_id: itemId, outcome: 'submitted' }] });
    expect(pollJobs(harness, itemId).at(-1)).toMatchObject({ attempt: 2, generation: 1 });
    expect(harness.sandbox.runway.tasks()).toHaveLength(2);
  });
});

describe('a failure that a new generation would not fix', () => {
  it.each([
    ['SAFETY.INPUT.IMAGE', "runway: SAFETY.INPUT.IMAGE — the photo was rejected by Runway's content moderation"],
    ['SAFETY.OUTPUT.VIDEO', "runway: SAFETY.OUTPUT.VIDEO — the generated video was blocked by Runway's content moderation"],
    ['INPUT_PREPROCESSING.SAFETY.TEXT', "runway: INPUT_PREPROCESSING.SAFETY.TEXT — the prompt was rejected by Runway's content moderation"],
    ['ASSET.INVALID', 'runway: ASSET.INVALID — the photo could not be used'],
    ['INTERNAL.BAD_OUTPUT.CODE01', 'runway: INTERNAL.BAD_OUTPUT.CODE01 — Runway produced an unusable video (often text over the photo)'],
    ['SOMETHING.NEW', /^runway: SOMETHING\.NEW — /],
  ])('is never re-generated (%s): one task, reported failed', async (code, message) => {
    const { harness, itemId, job } = await firstGenerationFails(code);

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(creates(harness)).toHaveLength(1);
    expect(harness.appCalls('presign')).toHaveLength(1);
    const [report] = harness.sandbox.app.reports(itemId);
    expect(harness.sandbox.app.reports(itemId)).toHaveLength(1);
    expect(report?.status).toBe('failed');
    if (typeof message === 'string') expect(report?.error_message).toBe(message);
    else expect(report?.error_message).toMatch(message);
  });
});

describe('duplicate and late deliveries around a new generation', () => {
  it('creates one new task when the failed poll is delivered twice at once, and none for a late third delivery', async () => {
    const { harness, itemId, job } = await firstGenerationFails('INTERNAL');

    const answers = await Promise.all([harness.deliver(CALLBACK, { job }), harness.deliver(CALLBACK, { job })]);

    expect(creates(harness)).toHaveLength(2);
    expect(answers.map((answer) => answer.status).sort()).toEqual(expect.arrayContaining([200]));
    const late = await harness.deliver(CALLBACK, { job }, { retried: 1 });
    expect(late.status).toBe(200);
    expect(late.json).toMatchObject({ detail: expect.stringMatching(/^superseded by generation 2/) as unknown });
    expect(creates(harness)).toHaveLength(2);
    expect(pollJobs(harness, itemId).filter((published) => published.generation === 2)).toHaveLength(1);

    const second = generationJob(harness, itemId, 2) as Job;
    expect(await finish(harness, second)).toBe(200);
    // And the first generation's poll once more, after the report: closed, nothing new.
    expect((await harness.deliver(CALLBACK, { job }, { retried: 2 })).status).toBe(200);
    expect(creates(harness)).toHaveLength(2);
    expect(harness.sandbox.app.reports(itemId)).toHaveLength(1);
  });

  it('starts over after a delivery died before its claim (photo unavailable for a moment): still one new task', async () => {
    const { harness, itemId, job } = await firstGenerationFails('INTERNAL');
    // The photo cannot be signed now (three tries in one delivery): nothing is claimed.
    harness.sandbox.app.failNext('presign-download', 3);

    const first = await harness.deliver(CALLBACK, { job });
    expect(first.status).toBe(503);
    expect(creates(harness)).toHaveLength(1);
    expect(await harness.runtime.deps.ledger.read({ itemId, attempt: 1, generation: 2 })).toEqual({ itemId, attempt: 1, generation: 2 });

    const again = await harness.deliver(CALLBACK, { job }, { retried: 1 });
    expect(again.status).toBe(200);
    expect(creates(harness)).toHaveLength(2);
  });

  it('never creates again when a delivery died between its claim and the create: waits, then reports', async () => {
    const { harness, itemId, job } = await firstGenerationFails('INTERNAL');
    const ledger = harness.runtime.deps.ledger;
    const generationKey = { itemId, attempt: 1, generation: 2 };
    // What a delivery that died right after claiming the new generation leaves behind.
    await ledger.claim(generationKey, 'submitting', { at: new Date().toISOString() });

    const fresh = await harness.deliver(CALLBACK, { job });
    expect(fresh.status).toBe(503);
    expect(creates(harness)).toHaveLength(1);
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);

    // The same, with a claim older than any create can take.
    const { harness: other, itemId: otherId, job: otherJob } = await firstGenerationFails('INTERNAL');
    await other.runtime.deps.ledger.claim(
      { itemId: otherId, attempt: 1, generation: 2 },
      'submitting',
      { at: new Date(Date.now() - SUBMIT_STALE_MS - 1_000).toISOString() },
    );
    const stale = await other.deliver(CALLBACK, { job: otherJob });
    expect(stale.status).toBe(489);
    expect(creates(other)).toHaveLength(1);
    expect(other.sandbox.app.reports(otherId)).toMatchObject([
      {
        status: 'failed',
        error_message: 'runway: INTERNAL — a temporary internal failure at Runway (a new generation was interrupted; a task may have been created)',
      },
    ]);
  });

  it('resumes the newest generation when the lease lapsed before its first poll', async () => {
    const { harness, itemId, job } = await firstGenerationFails('INTERNAL');
    await harness.deliver(CALLBACK, { job });
    const second = generationJob(harness, itemId, 2) as Job;
    // The new generation's poll is lost with the process; the lease lapses.
    harness.sandbox.app.expireLease(itemId);
    const mark = harness.mark();

    const summary = await harness.cron();

    expect(summary.json).toMatchObject({ items: [{ item_id: itemId, outcome: 'resumed' }] });
    expect(creates(harness)).toHaveLength(2);
    const resumed = harness.messages(CALLBACK, mark).map((message) => JSON.parse(message.body) as { job: Job });
    expect(resumed.map((message) => message.job)).toEqual([
      expect.objectContaining({ runway_task_id: second.runway_task_id, generation: 2, attempt: 1 }),
    ]);
    expect(await finish(harness, resumed[0]?.job as Job)).toBe(200);
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([{ status: 'completed', veo_operation_id: second.runway_task_id }]);
  });
});
