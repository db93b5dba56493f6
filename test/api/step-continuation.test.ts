import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LocalMessage } from '../../server/local-qstash.js';
import { startWorkerServer } from '../../server/worker-server.js';
import { parseConfig } from '../../lib/config.js';
import { CONTINUATION_HEADER, MAX_CONTINUATIONS } from '../../lib/handlers/step-handler.js';
import { createDeps } from '../../lib/runtime.js';
import type { Job } from '../../lib/steps/messages.js';
import { finishedUpload, readyToUpload, submit, waitForTaskStatus, type ReadyToUpload } from '../support/flow.js';
import {
  answerOf,
  closeHarnesses,
  seedItem,
  startHarness,
  type Answer,
  type Harness,
  type HarnessOptions,
} from '../support/harness.js';
import { mintQStashJwt } from '../support/qstash-jwt.js';
import { storedVideoOf } from '../../lib/ledger/ledger.js';

afterEach(closeHarnesses);

/**
 * The shared step handler's answers to QStash (design §2 "Errors and retries"): a retry
 * before the last delivery is a 503 with Retry-After; on the last one, a step that still
 * needs another try is published afresh as a new message (a continuation), a bounded number
 * of times, instead of leaving the item leased and forgotten.
 */

const STEP_UPLOAD = '/api/step-upload';
const CALLBACK = '/api/runway-callback';

interface SignedDelivery {
  /** `Upstash-Retried` (default 0; 3 is QStash's last delivery). */
  readonly retried?: number;
  /** `Upstash-Message-Id`; null sends none. Default: a fresh id. */
  readonly messageId?: string | null;
  /** Forwarded headers, as QStash delivers them (prefix removed). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** A POST signed as QStash signs a delivery, with the message id and forwarded headers chosen. */
async function deliver(harness: Harness, pathname: string, body: unknown, delivery: SignedDelivery = {}): Promise<Answer> {
  const target = `${harness.url}${pathname}`;
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const messageId = delivery.messageId === undefined ? `msg_${randomUUID().replace(/-/g, '')}` : delivery.messageId;
  const headers: Record<string, string> = {
    ...delivery.headers,
    'content-type': 'application/json',
    'upstash-retried': String(delivery.retried ?? 0),
    'upstash-signature': await mintQStashJwt({
      signingKey: harness.runtime.deps.config.qstashCurrentSigningKey,
      url: target,
      body: raw,
    }),
    ...(messageId === null ? {} : { 'upstash-message-id': messageId }),
  };
  return answerOf(await fetch(target, { method: 'POST', headers, body: raw, signal: AbortSignal.timeout(30_000) }));
}

/** Delivers a published message as QStash would: its body, id and forwarded headers. */
function deliverMessage(harness: Harness, pathname: string, message: LocalMessage, retried = 0): Promise<Answer> {
  return deliver(harness, pathname, message.body, { retried, messageId: message.messageId, headers: message.forwardedHeaders });
}

/** An item whose video is ready to upload, and whose completed reports the app answers 500 `count` times. */
async function reportFailing(count: number, options: HarnessOptions = {}): Promise<ReadyToUpload> {
  const ready = await readyToUpload(options);
  ready.harness.sandbox.app.failNext('report', count, { itemId: ready.itemId });
  return ready;
}

const statuses = (harness: Harness, itemId: string): string[] =>
  harness
    .appCalls('report')
    .map((request) => request.json)
    .filter((body): body is { item_id: string; status: string } => typeof body === 'object' && body !== null && 'status' in body)
    .filter((body) => body.item_id === itemId)
    .map((body) => body.status);

describe('step-upload whose completed report the app answers 500 to every send', () => {
  it('answers 503 with a Retry-After that doubles per redelivery, and publishes nothing before the last delivery', async () => {
    const { harness, message, mark } = await reportFailing(3);

    const answer = await deliver(harness, STEP_UPLOAD, message, { retried: 1 });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry' });
    expect(answer.headers.get('retry-after')).toBe('20');
    expect(harness.messages(undefined, mark)).toEqual([]);
  });

  it('on QStash\'s last delivery publishes the same message afresh, reporting nothing failed', async () => {
    const { harness, message, itemId, videoPath, mark } = await reportFailing(3);
    const messageId = `msg_${randomUUID().replace(/-/g, '')}`;

    const answer = await deliver(harness, STEP_UPLOAD, message, { retried: 3, messageId });

    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ outcome: 'done', detail: 'continued as a new message in 60 s' });
    const published = harness.messages(undefined, mark);
    expect(published).toHaveLength(1);
    const [fresh] = published;
    expect(fresh?.url).toBe(`${harness.url}${STEP_UPLOAD}`);
    expect(JSON.parse(fresh?.body ?? '')).toEqual(message);
    expect(fresh?.forwardedHeaders).toMatchObject({ [CONTINUATION_HEADER]: '1' });
    // The Retry-After QStash would have honoured (80 s), within the poll bounds.
    expect(fresh?.headers['upstash-delay']).toBe('60s');
    expect(fresh?.deduplicationId).toBe(`continue-${messageId}-1`);
    expect(fresh?.retries).toBe(3);
    // Three sends, all `completed`, none applied; the video stays and the item stays leased.
    expect(statuses(harness, itemId)).toEqual(['completed', 'completed', 'completed']);
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
    expect(harness.sandbox.app.item(itemId)?.status).toBe('processing');
    expect(harness.sandbox.storage.has('generated-videos', videoPath)).toBe(true);
    const record = await harness.runtime.deps.ledger.read({ itemId, attempt: 1 });
    expect(storedVideoOf(record)?.storage_path).toBe(videoPath);
    expect(record.reported?.status).toBe('completed');
  });

  it('sends the completed report when the fresh message is delivered', async () => {
    const { harness, message, itemId, videoPath, taskId, mark } = await reportFailing(3);
    expect((await deliver(harness, STEP_UPLOAD, message, { retried: 3 })).status).toBe(200);
    const [fresh] = harness.messages(STEP_UPLOAD, mark);
    if (!fresh) throw new Error('no continuation was published');

    const answer = await deliverMessage(harness, STEP_UPLOAD, fresh);

    expect(answer.status).toBe(200);
    expect(harness.sandbox.app.reports(itemId)).toMatchObject([
      { status: 'completed', video_storage_path: videoPath, veo_operation_id: taskId, applied: true },
    ]);
    expect(harness.sandbox.app.item(itemId)).toMatchObject({ status: 'completed', video_storage_path: videoPath });
    expect(harness.messages(undefined, mark)).toHaveLength(1);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)?.uploads).toBe(1);
  });

  it('answers 503 and reports nothing failed when QStash cannot take the fresh message', async () => {
    const { harness, message, itemId, mark } = await reportFailing(3);
    await harness.qstash.close();

    const answer = await deliver(harness, STEP_UPLOAD, message, { retried: 3 });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry' });
    expect(answer.headers.get('retry-after')).toBe('80');
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(statuses(harness, itemId)).toEqual(['completed', 'completed', 'completed']);
    expect(harness.sandbox.app.item(itemId)?.status).toBe('processing');
  });

  it('publishes one fresh message when the last delivery arrives twice at once', async () => {
    // Enough failures for both, whichever way their sends interleave.
    const { harness, message, itemId, mark } = await reportFailing(6);
    const messageId = `msg_${randomUUID().replace(/-/g, '')}`;

    const answers = await Promise.all([
      deliver(harness, STEP_UPLOAD, message, { retried: 3, messageId }),
      deliver(harness, STEP_UPLOAD, message, { retried: 3, messageId }),
    ]);

    expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
    expect(harness.messages(undefined, mark)).toHaveLength(1);
    expect(harness.qstash.stats().deduplicated).toBe(1);
    expect(new Set(statuses(harness, itemId))).toEqual(new Set(['completed']));
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
  });

  it('keys a delivery that names no message on its body: one fresh message per message, none shared between items', async () => {
    const items = [seedItem('landscape.jpg'), seedItem('landscape.jpg')];
    const harness = await startHarness({ items });
    const uploads = [];
    for (const item of items) uploads.push(await finishedUpload(harness, item.item_id));
    // Every send of all three deliveries below fails.
    harness.sandbox.app.failNext('report', 9);
    const mark = harness.mark();

    for (const upload of uploads) {
      expect((await deliver(harness, STEP_UPLOAD, upload, { retried: 3, messageId: null })).status).toBe(200);
    }
    expect((await deliver(harness, STEP_UPLOAD, uploads[0], { retried: 3, messageId: null })).status).toBe(200);

    const published = harness.messages(STEP_UPLOAD, mark).map((fresh) => JSON.parse(fresh.body) as unknown);
    expect(published).toEqual(uploads);
    expect(harness.qstash.stats().deduplicated).toBe(1);
  });
});

describe('a fresh message whose own last delivery fails as well', () => {
  async function lastDelivery(continuation: string): Promise<{ ready: ReadyToUpload; answer: Answer; messageId: string }> {
    const ready = await reportFailing(3);
    const messageId = `msg_${randomUUID().replace(/-/g, '')}`;
    const answer = await deliver(ready.harness, STEP_UPLOAD, ready.message, {
      retried: 3,
      messageId,
      headers: { [CONTINUATION_HEADER]: continuation },
    });
    return { ready, answer, messageId };
  }

  it('publishes the next one, counted one higher under its own deduplication id', async () => {
    const { ready, answer, messageId } = await lastDelivery('4');

    expect(answer.status).toBe(200);
    const published = ready.harness.messages(undefined, ready.mark);
    expect(published.map((fresh) => [fresh.forwardedHeaders[CONTINUATION_HEADER], fresh.deduplicationId])).toEqual([
      ['5', `continue-${messageId}-5`],
    ]);
  });

  it(`gives up after ${MAX_CONTINUATIONS}: answers 489, publishes nothing and reports nothing failed`, async () => {
    const { ready, answer } = await lastDelivery(String(MAX_CONTINUATIONS));

    expect(answer.status).toBe(489);
    expect(answer.headers.get('upstash-nonretryable-error')).toBe('true');
    expect(answer.json).toEqual({ outcome: 'stop', detail: `gave up after ${MAX_CONTINUATIONS} continuations` });
    expect(ready.harness.messages(undefined, ready.mark)).toEqual([]);
    expect(statuses(ready.harness, ready.itemId)).toEqual(['completed', 'completed', 'completed']);
    expect(ready.harness.sandbox.app.item(ready.itemId)?.status).toBe('processing');
  });

  it.each(['abc', '-1', '2.5'])('reads an unusable count (%s) as none so far: the chain stays bounded', async (count) => {
    const { ready, answer } = await lastDelivery(count);

    expect(answer.status).toBe(200);
    const published = ready.harness.messages(undefined, ready.mark);
    expect(published.map((fresh) => fresh.forwardedHeaders[CONTINUATION_HEADER])).toEqual(['1']);
  });
});

describe('runway-callback while another delivery is starting the new generation', () => {
  /** An item whose first Runway task failed INTERNAL, with generation 2 claimed a moment ago. */
  async function generationInFlight(options: HarnessOptions = {}): Promise<{ harness: Harness; itemId: string; job: Job }> {
    const item = seedItem('landscape.jpg');
    const harness = await startHarness({ ...options, items: [item] });
    harness.sandbox.runway.failNextTasks({ code: 'INTERNAL' });
    const job = await submit(harness, item.item_id);
    await waitForTaskStatus(harness, job.runway_task_id, 'FAILED');
    await harness.runtime.deps.ledger.claim(
      { itemId: item.item_id, attempt: 1, generation: 2 },
      'submitting',
      { at: new Date().toISOString() },
    );
    return { harness, itemId: item.item_id, job };
  }

  const creates = (harness: Harness) => harness.requests({ service: 'runway', method: 'POST', path: '/v1/image_to_video' });

  it('answers 503 with the wait it asked for, cut to one heartbeat interval so the lease cannot lapse', async () => {
    const { harness, itemId, job } = await generationInFlight({ env: { HEARTBEAT_INTERVAL_SECONDS: '45' } });
    const mark = harness.mark();

    const answer = await deliver(harness, CALLBACK, { job });

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: 'a new generation is being started' });
    expect(answer.headers.get('retry-after')).toBe('45');
    expect(harness.messages(undefined, mark)).toEqual([]);
    expect(creates(harness)).toHaveLength(1);
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
  });

  it('on QStash\'s last delivery continues the poll as a fresh message, creating and reporting nothing', async () => {
    const { harness, itemId, job } = await generationInFlight();
    const mark = harness.mark();

    const answer = await deliver(harness, CALLBACK, { job }, { retried: 3 });

    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ outcome: 'done', detail: 'continued as a new message in 60 s' });
    const published = harness.messages(undefined, mark);
    expect(published.map((fresh) => fresh.url)).toEqual([`${harness.url}${CALLBACK}`]);
    expect(JSON.parse(published[0]?.body ?? '')).toEqual({ job });
    expect(published[0]?.headers['upstash-delay']).toBe('60s');
    expect(published[0]?.forwardedHeaders).toMatchObject({ [CONTINUATION_HEADER]: '1' });
    expect(creates(harness)).toHaveLength(1);
    expect(harness.sandbox.app.reports(itemId)).toEqual([]);
    expect(harness.appCalls('report', mark)).toEqual([]);
  });
});

describe('a step whose ledger cannot be read', () => {
  it('answers 503 without calling any service, so QStash delivers again', async () => {
    const { harness, message, itemId, mark } = await readyToUpload();
    // A fact that reads as a directory: every read of this attempt fails (EISDIR).
    const ledgerDir = harness.runtime.deps.config.ledgerDir;
    await mkdir(path.join(ledgerDir, 'items', itemId, '1', 'reported.json'), { recursive: true });

    const answer = await deliver(harness, STEP_UPLOAD, message);

    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ outcome: 'retry', detail: 'internal error' });
    expect(answer.headers.get('retry-after')).toBe('10');
    expect(harness.requests({ since: mark })).toEqual([]);
    expect(harness.messages(undefined, mark)).toEqual([]);
  });
});

describe.each([STEP_UPLOAD, CALLBACK])('%s on a deployment whose configuration is incomplete', (pathname) => {
  it('answers 500 naming the missing settings without any value, before reading the message', async () => {
    const secret = 'runway-key-that-must-not-leak-9f3a';
    const env = { RUNWAY_API_KEY: secret, WORKER_API_KEY: 'worker-key-that-must-not-leak-77c1', LOG_LEVEL: 'silent' };
    const server = await startWorkerServer(() => createDeps(parseConfig(env)));
    try {
      const response = await fetch(`${server.url}${pathname}`, { method: 'POST', body: '{"job":{}}' });
      const text = await response.text();

      expect(response.status).toBe(500);
      const json = JSON.parse(text) as { outcome: string; problems: string[] };
      expect(json.outcome).toBe('error');
      expect(json.problems).toEqual(
        expect.arrayContaining([expect.stringMatching(/^NEXT_API_URL/), expect.stringMatching(/^QSTASH_CURRENT_SIGNING_KEY/)]),
      );
      expect(json.problems.some((problem) => problem.startsWith('RUNWAY_API_KEY'))).toBe(false);
      expect(text).not.toContain(secret);
      expect(text).not.toContain(env.WORKER_API_KEY);
    } finally {
      await server.close();
    }
  });
});
