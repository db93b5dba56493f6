import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { pollMessageSchema, uploadMessageSchema, type Job } from '../../lib/steps/messages.js';
import {
  DEV_QSTASH,
  RUNWAY_AUTH,
  WORKER_AUTH,
  WORKER_ID,
  closeHarnesses,
  seedItem,
  startHarness,
  type DeliveryOptions,
  type Harness,
  type HarnessOptions,
  type Mark,
} from '../support/harness.js';
import { submit, waitForTaskStatus } from '../support/flow.js';
import { nowSeconds } from '../support/qstash-jwt.js';

afterEach(closeHarnesses);

const CALLBACK = '/api/runway-callback';

/** A failed report, with no field beyond these. */
const failedReportSchema = z
  .object({
    item_id: z.string(),
    worker_id: z.string(),
    status: z.literal('failed'),
    error_message: z.string(),
    veo_operation_id: z.string(),
  })
  .strict();

/** Runway tasks that start RUNNING after 30 ms and never finish. */
const RUNNING_FOREVER: HarnessOptions['sandbox'] = { runway: { generationMs: 300 }, faults: { runway: { neverFinishRate: 1 } } };

interface Started {
  readonly harness: Harness;
  readonly job: Job;
  readonly mark: Mark;
}

/** One item submitted by a real cron-poll run; `mark` is taken after it. */
async function submitted(options: HarnessOptions & { photo?: 'landscape.jpg' | 'refused.jpg' } = {}): Promise<Started> {
  const item = seedItem(options.photo ?? 'landscape.jpg');
  const harness = await startHarness({ ...options, items: [item] });
  const job = await submit(harness, item.item_id);
  return { harness, job, mark: harness.mark() };
}

async function running(options: HarnessOptions = {}): Promise<Started> {
  const started = await submitted({ sandbox: RUNNING_FOREVER, ...options });
  await waitForTaskStatus(started.harness, started.job.runway_task_id, 'RUNNING');
  return { ...started, mark: started.harness.mark() };
}

function delaySecondsOf(header: string | undefined): number {
  const match = /^(\d+)s$/.exec(header ?? '');
  if (!match) throw new Error(`no Upstash-Delay in seconds: ${String(header)}`);
  return Number(match[1]);
}

function polledOnce(harness: Harness, job: Job, since: Mark): void {
  const looks = harness.requests({ service: 'runway', since });
  expect(looks.map((request) => `${request.method} ${request.path}`)).toContain(`GET /v1/tasks/${job.runway_task_id}`);
  for (const look of looks) {
    expect(look.headers['authorization']).toBe(RUNWAY_AUTH);
    expect(look.headers['x-runway-version']).toBe('2024-11-06');
  }
}

const FORGERIES: readonly (readonly [string, (harness: Harness, job: Job) => DeliveryOptions])[] = [
  ['no Upstash-Signature header', () => ({ unsigned: true })],
  ['a signature made with a key that is not ours', () => ({ signingKey: 'sig_4nYjw48mhY7kAjqNGcy6cr29RJ6r' })],
  ['a signature for another URL (step-upload)', (harness) => ({ signedUrl: `${harness.url}/api/step-upload` })],
  [
    'a signature for the same path on another host name',
    (harness) => ({ signedUrl: `${harness.url.replace('127.0.0.1', 'localhost')}${CALLBACK}` }),
  ],
  ['a signature over a different body', (_harness, job) => ({ signedBody: JSON.stringify({ job: { ...job, polls: job.polls + 1 } }) })],
  ['a signature that expired five minutes ago', () => ({ issuedAtSeconds: nowSeconds() - 601 })],
];

describe('runway-callback receiving a message whose signature does not hold', () => {
  it.each(FORGERIES)('answers 401 to %s and sends nothing to Runway', async (_label, forge) => {
    const { harness, job, mark } = await running();

    const answer = await harness.deliver(CALLBACK, { job }, forge(harness, job));

    expect(answer.status).toBe(401);
    expect(harness.requests({ since: mark })).toEqual([]);
    expect(harness.messages(undefined, mark)).toEqual([]);
  });

  it('accepts a signature made with the next signing key, and polls the task', async () => {
    const { harness, job } = await running();
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job }, { signingKey: DEV_QSTASH.nextSigningKey });

    expect(answer.status).toBe(200);
    expect(harness.requests({ service: 'runway', method: 'GET', path: `/v1/tasks/${job.runway_task_id}`, since: mark })).toHaveLength(1);
  });
});

const UNUSABLE_BODIES: readonly (readonly [string, (job: Job) => unknown])[] = [
  ['text that is not JSON', () => 'not json at all'],
  ['an empty object', () => ({})],
  [
    'a job without a Runway task id',
    ({ runway_task_id: _dropped, ...withoutTask }) => ({ job: withoutTask }),
  ],
  ['a job with attempt 0', (job) => ({ job: { ...job, attempt: 0 } })],
  ['a job for a retired model', (job) => ({ job: { ...job, model: 'gen3a_turbo' } })],
];

describe('runway-callback receiving a signed message that is not a poll', () => {
  it.each(UNUSABLE_BODIES)('stops QStash with 489 for %s and sends nothing anywhere', async (_label, bodyOf) => {
    const { harness, job, mark } = await running();

    const answer = await harness.deliver(CALLBACK, bodyOf(job));

    expect(answer.status).toBe(489);
    expect(answer.headers.get('upstash-nonretryable-error')).toBe('true');
    expect(answer.json).toMatchObject({ outcome: 'invalid' });
    expect(harness.requests({ since: mark })).toEqual([]);
    expect(harness.messages(undefined, mark)).toEqual([]);
  });
});

describe('runway-callback while the Runway task is running', () => {
  it('publishes the next poll with polls + 1, a delay within the configured bounds, and no heartbeat yet', async () => {
    const { harness, job, mark } = await running({ env: { RUNWAY_POLL_MIN_SECONDS: '7', RUNWAY_POLL_MAX_SECONDS: '20' } });

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    polledOnce(harness, job, mark);
    expect(harness.requests({ service: 'app', since: mark })).toEqual([]);
    const next = harness.messages(undefined, mark);
    expect(next).toHaveLength(1);
    expect(next[0]?.url).toBe(`${harness.url}${CALLBACK}`);
    expect(next[0]?.headers['upstash-deduplication-id']).toBe(`${job.item_id}-1-poll-1`);
    const delay = delaySecondsOf(next[0]?.headers['upstash-delay']);
    expect(delay).toBeGreaterThanOrEqual(7);
    expect(delay).toBeLessThanOrEqual(20);
    expect(answer.json).toMatchObject({ outcome: 'done', status: 'RUNNING', next_poll_seconds: delay });
    expect(pollMessageSchema.parse(JSON.parse(next[0]?.body ?? '')).job).toEqual({
      ...job,
      polls: 1,
      last_status: 'RUNNING',
    });
  });

  it('keeps the delay between 5 and 60 s with the default bounds', async () => {
    const { harness, job, mark } = await running();

    await harness.deliver(CALLBACK, { job: { ...job, polls: 4 } });

    const [next] = harness.messages(undefined, mark);
    const delay = delaySecondsOf(next?.headers['upstash-delay']);
    expect(delay).toBeGreaterThanOrEqual(5);
    expect(delay).toBeLessThanOrEqual(60);
    expect(next?.headers['upstash-deduplication-id']).toBe(`${job.item_id}-1-poll-5`);
  });

  it('sends no heartbeat while HEARTBEAT_INTERVAL_SECONDS have not passed since the last one', async () => {
    const { harness, job, mark } = await running();
    const lastHeartbeat = Date.now() - 100_000;

    await harness.deliver(CALLBACK, { job: { ...job, last_heartbeat_at: lastHeartbeat } });

    expect(harness.appCalls('heartbeat', mark)).toEqual([]);
    const [next] = harness.messages(undefined, mark);
    expect(pollMessageSchema.parse(JSON.parse(next?.body ?? '')).job.last_heartbeat_at).toBe(lastHeartbeat);
  });

  it('heartbeats with extend_seconds = LEASE_DURATION_SECONDS once the interval has passed, and records when', async () => {
    const { harness, job, mark } = await running();
    const before = Date.now();

    const answer = await harness.deliver(CALLBACK, { job: { ...job, last_heartbeat_at: before - 121_000 } });

    expect(answer.status).toBe(200);
    const heartbeats = harness.appCalls('heartbeat', mark);
    expect(heartbeats).toHaveLength(1);
    expect(heartbeats[0]?.headers['authorization']).toBe(WORKER_AUTH);
    expect(heartbeats[0]?.json).toEqual({ item_id: job.item_id, worker_id: WORKER_ID, extend_seconds: 600 });
    const [next] = harness.messages(undefined, mark);
    const nextJob = pollMessageSchema.parse(JSON.parse(next?.body ?? '')).job;
    expect(nextJob.last_heartbeat_at).toBeGreaterThanOrEqual(before);
    expect(nextJob.last_heartbeat_at).toBeLessThanOrEqual(Date.now());
    const leasedUntil = Date.parse(harness.sandbox.app.item(job.item_id)?.leased_until ?? '');
    expect(leasedUntil).toBeGreaterThanOrEqual(before + 600_000);
    expect(harness.appCalls('report', mark)).toEqual([]);
  });
});

describe('runway-callback for a task running past RUNWAY_TIMEOUT_SECONDS', () => {
  it('cancels the task with DELETE, then reports failed once with the timeout and the last status', async () => {
    const { harness, job, mark } = await running({ env: { RUNWAY_TIMEOUT_SECONDS: '30' } });

    const answer = await harness.deliver(CALLBACK, { job: { ...job, submitted_at: Date.now() - 31_000 } });

    expect(answer.status).toBe(489);
    expect(answer.headers.get('upstash-nonretryable-error')).toBe('true');
    const sent = harness.requests({ since: mark }).map((request) => `${request.service} ${request.method} ${request.path}`);
    const cancel = sent.indexOf(`runway DELETE /v1/tasks/${job.runway_task_id}`);
    const report = sent.indexOf('app POST /worker/report');
    expect(cancel).toBeGreaterThanOrEqual(0);
    expect(report).toBeGreaterThan(cancel);
    const [deleteRequest] = harness.requests({ service: 'runway', method: 'DELETE', since: mark });
    expect(deleteRequest?.headers['authorization']).toBe(RUNWAY_AUTH);
    expect(deleteRequest?.headers['x-runway-version']).toBe('2024-11-06');
    const reports = harness.appCalls('report', mark);
    expect(reports).toHaveLength(1);
    expect(reports[0]?.headers['authorization']).toBe(WORKER_AUTH);
    expect(reports[0]?.json).toEqual({
      item_id: job.item_id,
      worker_id: WORKER_ID,
      status: 'failed',
      error_message: 'runway: timed out after 30 s (last status RUNNING)',
      veo_operation_id: job.runway_task_id,
    });
    expect(harness.sandbox.runway.task(job.runway_task_id)?.deleted).toBe(true);
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(harness.sandbox.app.item(job.item_id)).toMatchObject({ status: 'failed', retry_count: 1 });
  });
});

describe('runway-callback after the lease was lost', () => {
  it.each([
    ['the lease lapsed and another worker leased the item', 'taken'],
    ['an admin marked the item failed', 'admin-failed'],
  ] as const)('when %s: cancels the Runway task, marks the job abandoned and reports nothing', async (_label, how) => {
    const { harness, job } = await running();
    if (how === 'taken') {
      harness.sandbox.app.expireLease(job.item_id);
      await harness.leaseAs('another-worker');
    } else {
      harness.sandbox.app.adminFail(job.item_id);
    }
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job: { ...job, last_heartbeat_at: Date.now() - 200_000 } });

    expect(answer.status).toBe(200);
    const sent = harness.requests({ since: mark }).map((request) => `${request.service} ${request.method} ${request.path}`);
    expect(sent).toEqual([
      `runway GET /v1/tasks/${job.runway_task_id}`,
      'app POST /worker/heartbeat',
      `runway DELETE /v1/tasks/${job.runway_task_id}`,
    ]);
    expect(harness.appCalls('heartbeat', mark)[0]?.json).toEqual({ item_id: job.item_id, worker_id: WORKER_ID, extend_seconds: 600 });
    expect(harness.sandbox.runway.task(job.runway_task_id)?.deleted).toBe(true);
    const record = await harness.runtime.deps.ledger.read({ itemId: job.item_id, attempt: 1 });
    expect(record.abandoned?.reason).toMatch(/lease lost/);
    expect(record.reported).toBeUndefined();
    expect(harness.messages(undefined, mark)).toEqual([]);
    const item = harness.sandbox.app.item(job.item_id);
    expect(item?.reports).toEqual([]);
    if (how === 'taken') expect(item?.worker_id).toBe('another-worker');
  });

  it('when the report of a failed task is refused with 403: marks the job abandoned and counts no attempt against the item', async () => {
    const { harness, job } = await submitted({ photo: 'refused.jpg', sandbox: { runway: { generationMs: 300 } } });
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');
    harness.sandbox.app.expireLease(job.item_id);
    await harness.leaseAs('another-worker');
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    const refused = harness.sandbox.app.reports(job.item_id);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ httpStatus: 403, applied: false, status: 'failed' });
    expect(harness.requests({ since: mark }).map((request) => `${request.service} ${request.method} ${request.path}`)).toContain(
      `runway DELETE /v1/tasks/${job.runway_task_id}`,
    );
    const record = await harness.runtime.deps.ledger.read({ itemId: job.item_id, attempt: 1 });
    expect(record.abandoned?.reason).toMatch(/lease lost \(report refused\)/);
    expect(harness.sandbox.app.item(job.item_id)).toMatchObject({ status: 'processing', worker_id: 'another-worker', retry_count: 0 });
  });

  it('answers 200 to a later delivery for the abandoned job without calling anyone', async () => {
    const { harness, job } = await running();
    harness.sandbox.app.adminFail(job.item_id);
    await harness.deliver(CALLBACK, { job: { ...job, last_heartbeat_at: Date.now() - 200_000 } });
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job: { ...job, polls: 1 } }, { retried: 1 });

    expect(answer.status).toBe(200);
    expect(harness.requests({ since: mark })).toEqual([]);
    expect(harness.messages(undefined, mark)).toEqual([]);
  });
});

describe('runway-callback for a task that succeeded', () => {
  it('hands over to step-upload with the output URL and reports nothing yet', async () => {
    const { harness, job } = await submitted();
    await waitForTaskStatus(harness, job.runway_task_id, 'SUCCEEDED');
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(200);
    expect(harness.requests({ since: mark }).map((request) => `${request.service} ${request.method} ${request.path}`)).toEqual([
      `runway GET /v1/tasks/${job.runway_task_id}`,
    ]);
    const messages = harness.messages(undefined, mark);
    expect(messages).toHaveLength(1);
    expect(messages[0]?.url).toBe(`${harness.url}/api/step-upload`);
    expect(messages[0]?.headers['upstash-deduplication-id']).toBe(`${job.item_id}-1-upload`);
    expect([undefined, '0s']).toContain(messages[0]?.headers['upstash-delay']);
    const upload = uploadMessageSchema.parse(JSON.parse(messages[0]?.body ?? ''));
    expect(upload.job).toEqual({ ...job, last_status: 'SUCCEEDED' });
    expect(upload.output_url).toMatch(new RegExp(`^${harness.sandbox.runwayApiUrl}/outputs/${job.runway_task_id}\\.mp4\\?`));
    // What Runway charged travels to the upload step, which prices the report without a ledger read.
    expect(upload.credits).toBe(harness.sandbox.runway.task(job.runway_task_id)?.credits);
    expect(upload.credits).toBe(25);
    expect(harness.sandbox.app.item(job.item_id)?.reports).toEqual([]);
  });

  it('publishes the upload step once when the poll is delivered twice', async () => {
    const { harness, job } = await submitted();
    await waitForTaskStatus(harness, job.runway_task_id, 'SUCCEEDED');

    const answers = [await harness.deliver(CALLBACK, { job }), await harness.deliver(CALLBACK, { job }, { retried: 1 })];

    expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
    expect(harness.messages('/api/step-upload')).toHaveLength(1);
    expect(harness.qstash.stats().deduplicated).toBe(1);
  });
});

describe('runway-callback for a task Runway refused (SAFETY.INPUT.IMAGE)', () => {
  it('reports failed once with the code, no URL and the task id, and stops QStash with 489', async () => {
    const { harness, job } = await submitted({ photo: 'refused.jpg' });
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(answer.headers.get('upstash-nonretryable-error')).toBe('true');
    const reports = harness.appCalls('report', mark);
    expect(reports).toHaveLength(1);
    expect(reports[0]?.headers['authorization']).toBe(WORKER_AUTH);
    const report = failedReportSchema.parse(reports[0]?.json);
    expect(report).toMatchObject({ item_id: job.item_id, worker_id: WORKER_ID, status: 'failed', veo_operation_id: job.runway_task_id });
    const message = report.error_message;
    expect(message.startsWith('runway: SAFETY.INPUT.IMAGE')).toBe(true);
    expect(message).not.toMatch(/[a-z][a-z0-9+.-]*:\/\/|token=|sig=|eyJ/i);
    expect(message.length).toBeLessThanOrEqual(500);
    expect(harness.requests({ service: 'runway', method: 'DELETE', since: mark })).toEqual([]);
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(harness.sandbox.app.item(job.item_id)).toMatchObject({ status: 'failed', retry_count: 1, error_message: message });
  });

  it('answers 200 to a duplicate delivery after the report and sends no second report', async () => {
    const { harness, job } = await submitted({ photo: 'refused.jpg' });
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');
    await harness.deliver(CALLBACK, { job });
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job }, { retried: 1 });

    expect(answer.status).toBe(200);
    expect(harness.appCalls('report', mark)).toEqual([]);
    expect(harness.requests({ service: 'runway', since: mark })).toEqual([]);
    // At most a heartbeat asking whether the earlier report landed (it did: the item left processing).
    for (const request of harness.requests({ since: mark })) expect(request.path).toBe('/worker/heartbeat');
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(harness.sandbox.app.reports(job.item_id)).toHaveLength(1);
    expect(harness.sandbox.app.item(job.item_id)?.retry_count).toBe(1);
  });

  it('sends one report when the same poll is delivered twice at once', async () => {
    const { harness, job } = await submitted({ photo: 'refused.jpg' });
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');

    const answers = await Promise.all([harness.deliver(CALLBACK, { job }), harness.deliver(CALLBACK, { job })]);

    // One sends the report (489: done for good). The other finds the claim: 200 once the report
    // has landed, or 503 + Retry-After while it may still be in flight, so QStash looks again.
    const statuses = answers.map((answer) => answer.status).sort();
    expect(statuses).toContain(489);
    expect([[200, 489], [489, 503]]).toContainEqual(statuses);
    expect(harness.sandbox.app.reports(job.item_id)).toHaveLength(1);
    expect(harness.sandbox.app.item(job.item_id)?.retry_count).toBe(1);
  });
});

describe('runway-callback for a task Runway no longer knows (deleted)', () => {
  it('reports failed with a plain reason and the task id', async () => {
    const { harness, job } = await running();
    await fetch(`${harness.sandbox.runwayApiUrl}/v1/tasks/${job.runway_task_id}`, {
      method: 'DELETE',
      headers: { authorization: RUNWAY_AUTH, 'x-runway-version': '2024-11-06' },
    });
    const mark = harness.mark();

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(harness.appCalls('report', mark).map((request) => request.json)).toEqual([
      {
        item_id: job.item_id,
        worker_id: WORKER_ID,
        status: 'failed',
        error_message: 'runway: the task was cancelled or deleted',
        veo_operation_id: job.runway_task_id,
      },
    ]);
  });
});

describe('runway-callback finding the task gone after its timeout passed', () => {
  it('reports the timeout (a duplicate delivery cancelled it), not a task deleted by someone', async () => {
    const { harness, job } = await running({ env: { RUNWAY_TIMEOUT_SECONDS: '1' } });
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    // What the delivery that timed the task out did first.
    await fetch(`${harness.sandbox.runwayApiUrl}/v1/tasks/${job.runway_task_id}`, {
      method: 'DELETE',
      headers: { authorization: RUNWAY_AUTH, 'x-runway-version': '2024-11-06' },
    });

    const answer = await harness.deliver(CALLBACK, { job });

    expect(answer.status).toBe(489);
    expect(harness.sandbox.app.reports(job.item_id)).toMatchObject([{ status: 'failed', error_message: 'runway: timed out after 1 s' }]);
  });

  it('still reports a task deleted before its timeout as cancelled or deleted', async () => {
    const { harness, job } = await running();
    await fetch(`${harness.sandbox.runwayApiUrl}/v1/tasks/${job.runway_task_id}`, {
      method: 'DELETE',
      headers: { authorization: RUNWAY_AUTH, 'x-runway-version': '2024-11-06' },
    });

    expect((await harness.deliver(CALLBACK, { job })).status).toBe(489);
    expect(harness.sandbox.app.reports(job.item_id)).toMatchObject([{ status: 'failed', error_message: 'runway: the task was cancelled or deleted' }]);
  });
});
