import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import type { Deps } from '../../lib/deps.js';
import { handleStepUpload } from '../../lib/handlers/step-upload.js';
import type { UploadMessage } from '../../lib/steps/messages.js';
import { readyToUpload as readyFor, type ReadyToUpload } from '../support/flow.js';
import { answerOf, closeHarnesses, WORKER_ID, type Answer, type Harness, type HarnessOptions } from '../support/harness.js';
import { mintQStashJwt } from '../support/qstash-jwt.js';
import { SCRIPTED_FAULT_RATE, scriptedRng } from '../support/scripted-rng.js';
import { storedVideoOf } from '../../lib/ledger/ledger.js';

/**
 * step-upload against a storage that refuses the way Supabase does (contract §6): it checks
 * the token, an existing object and the declared size before reading the body, answers at
 * once and closes the connection under the worker while it is still streaming.
 */

afterEach(closeHarnesses);

const STEP_UPLOAD = '/api/step-upload';
const MB = 1024 * 1024;
/** Large enough that the worker is still streaming when storage answers early. */
const OUTPUT_BYTES = 12 * MB;

type Ready = ReadyToUpload;

/** Large outputs, so the worker is still streaming when storage answers early. */
function readyToUpload(sandbox: HarnessOptions['sandbox'] = {}): Promise<Ready> {
  return readyFor({ sandbox: { runway: { generationMs: 300, outputBytes: OUTPUT_BYTES }, ...sandbox } });
}

function puts(ready: Ready): RecordedRequest[] {
  return ready.harness.requests({ service: 'storage', method: 'PUT', since: ready.mark });
}

function reports(ready: Ready): unknown[] {
  return ready.harness.appCalls('report').map((request) => request.json);
}

function completedReport(ready: Ready): unknown {
  return {
    item_id: ready.itemId,
    worker_id: WORKER_ID,
    status: 'completed',
    video_storage_path: ready.videoPath,
    veo_operation_id: ready.taskId,
  };
}

function videos(harness: Harness) {
  return harness.sandbox.storage.objects().filter((object) => object.bucket === 'generated-videos');
}

/** Delivers the message as QStash would, retry after retry, until the worker stops asking for one. */
async function deliverUntilDone(harness: Harness, message: UploadMessage): Promise<Answer[]> {
  const answers: Answer[] = [];
  for (let retried = 0; retried <= 3; retried += 1) {
    const answer = await harness.deliver(STEP_UPLOAD, message, { retried });
    answers.push(answer);
    if (answer.status < 500) break;
  }
  return answers;
}

/** One signed delivery to the worker's step-upload handler, run with these deps. */
async function deliverWith(harness: Harness, deps: Deps, message: UploadMessage): Promise<Answer> {
  const url = `${harness.url}${STEP_UPLOAD}`;
  const body = JSON.stringify(message);
  const signature = await mintQStashJwt({ signingKey: deps.config.qstashCurrentSigningKey, url, body });
  const request = new Request(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'upstash-message-id': `msg_${randomUUID().replace(/-/g, '')}`,
      'upstash-retried': '0',
      'upstash-signature': signature,
    },
    body,
  });
  return answerOf(await handleStepUpload(request, () => deps));
}

describe('step-upload when another worker stores the video between our presign and our PUT', () => {
  it('takes the early duplicate refusal as done: one completed report, and the stored video untouched', async () => {
    const ready = await readyToUpload();
    const { harness, message, videoPath } = ready;
    const theirs = Buffer.from('\0\0\0\x18ftypmp42 — the video another worker uploaded first');
    const real = harness.runtime.deps;
    // The other worker's upload lands right after our presign: our PUT meets an existing object.
    const deps: Deps = {
      ...real,
      app: {
        ...real.app,
        async presignUpload(itemId) {
          const target = await real.app.presignUpload(itemId);
          const other = await fetch(harness.sandbox.storage.signUpload('generated-videos', videoPath), {
            method: 'PUT',
            headers: { 'content-type': 'video/mp4' },
            body: theirs,
          });
          expect(other.status).toBe(200);
          return target;
        },
      },
    };

    const answer = await deliverWith(harness, deps, message);

    expect(answer.status).toBe(200);
    // Theirs, then ours, refused before storage read any of the 12 MB.
    expect(puts(ready).map((request) => request.bytes)).toEqual([theirs.length, 0]);
    expect(videos(harness)).toHaveLength(1);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)).toMatchObject({ size: theirs.length, uploads: 2 });
    expect(reports(ready)).toEqual([completedReport(ready)]);
    expect(harness.sandbox.app.item(ready.itemId)?.status).toBe('completed');
    const record = await real.ledger.read({ itemId: ready.itemId, attempt: 1 });
    expect(storedVideoOf(record)).toMatchObject({ storage_path: videoPath, bytes: 0 });
  });
});

describe('step-upload when the video is already stored from an earlier delivery', () => {
  it('never uploads again: the refused presign sends the completed report at once, and the app finds the video', async () => {
    const ready = await readyToUpload();
    const { harness, message, videoPath } = ready;
    const earlier = Buffer.from('\0\0\0\x18ftypmp42 — stored by an earlier delivery whose answer was lost');
    await harness.sandbox.storage.putObject('generated-videos', videoPath, earlier, 'video/mp4');

    const answers = await deliverUntilDone(harness, message);

    expect(answers.map((answer) => answer.status)).toEqual([200]);
    expect(puts(ready)).toEqual([]);
    expect(videos(harness)).toHaveLength(1);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)?.size).toBe(earlier.length);
    expect(reports(ready)).toEqual([completedReport(ready)]);
    // Recorded, so a late duplicate of the message is done at once.
    const record = await harness.runtime.deps.ledger.read({ itemId: ready.itemId, attempt: 1 });
    expect(storedVideoOf(record)).toMatchObject({ storage_path: videoPath });
    expect(record.reported).toMatchObject({ status: 'completed', video_storage_path: videoPath });
    expect((await harness.deliver(STEP_UPLOAD, message, { retried: 1 })).status).toBe(200);
    expect(harness.sandbox.app.reports(ready.itemId)).toHaveLength(1);
  });
});

describe('a duplicate delivery that reaches the upload presign after the first one stored and reported the video', () => {
  it('settles the report the first one claimed and never sends a second one', async () => {
    const ready = await readyToUpload();
    const { harness, message, itemId } = ready;
    const real = harness.runtime.deps;
    const deps: Deps = {
      ...real,
      app: {
        ...real.app,
        async presignUpload(id) {
          // The duplicate has read the ledger (nothing yet); now the first delivery runs to its end.
          expect((await harness.deliver(STEP_UPLOAD, message)).status).toBe(200);
          return real.app.presignUpload(id);
        },
      },
    };

    const duplicate = await deliverWith(harness, deps, message);

    expect(duplicate.status).toBe(200);
    expect(harness.sandbox.app.reports(itemId).filter((report) => report.applied)).toHaveLength(1);
    expect(reports(ready)).toEqual([completedReport(ready)]);
    expect(videos(harness)).toHaveLength(1);
  });
});

describe('step-upload when the upload presign fails for a moment with the same 500 and no video is stored', () => {
  it('asks the app, which finds no video and applies nothing, then uploads on the next delivery', async () => {
    const ready = await readyToUpload();
    const { harness, message, videoPath } = ready;
    harness.sandbox.app.failNext('presign-upload', 3, { itemId: ready.itemId });

    const first = await harness.deliver(STEP_UPLOAD, message);

    expect(first.status).toBe(503);
    expect(harness.sandbox.app.reports(ready.itemId).map(({ status, applied, httpStatus }) => ({ status, applied, httpStatus }))).toEqual([
      { status: 'completed', applied: false, httpStatus: 500 },
    ]);
    expect(harness.sandbox.app.item(ready.itemId)?.status).toBe('processing');
    expect((await harness.runtime.deps.ledger.read({ itemId: ready.itemId, attempt: 1 })).reported).toBeUndefined();

    const second = await harness.deliver(STEP_UPLOAD, message, { retried: 1 });

    expect(second.status).toBe(200);
    expect(videos(harness)).toHaveLength(1);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)).toBeDefined();
    expect(harness.sandbox.app.reports(ready.itemId).filter((report) => report.applied)).toMatchObject([{ status: 'completed' }]);
  });

  it('reports failed on QStash\'s last delivery when the presign never works and the app never finds a video', async () => {
    const ready = await readyToUpload();
    const { harness, message } = ready;
    harness.sandbox.app.failNext('presign-upload', 1_000, { itemId: ready.itemId });

    const answers = await deliverUntilDone(harness, message);

    expect(answers.map((answer) => answer.status)).toEqual([503, 503, 503, 489]);
    expect(videos(harness)).toEqual([]);
    const applied = harness.sandbox.app.reports(ready.itemId).filter((report) => report.applied);
    expect(applied).toMatchObject([{ status: 'failed', error_message: expect.stringMatching(/^app: presign upload answered 500/) as unknown }]);
    expect(harness.sandbox.app.item(ready.itemId)?.status).toBe('failed');
  });
});

describe('step-upload when storage refuses the upload token as expired', () => {
  it('reads the early refusal while still streaming, presigns again and stores the video exactly once', async () => {
    const faults = scriptedRng();
    const ready = await readyToUpload({ rng: faults.rng, faults: { storage: { expiredTokenRate: SCRIPTED_FAULT_RATE } } });
    const { harness, message, taskId, videoPath } = ready;
    faults.fireNext();

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(200);
    // The refused PUT was answered before storage read its body; the second carried every byte.
    expect(puts(ready).map((request) => request.bytes)).toEqual([0, OUTPUT_BYTES]);
    expect(harness.appCalls('presign', ready.mark)).toHaveLength(2);
    expect(videos(harness)).toHaveLength(1);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)).toMatchObject({
      size: OUTPUT_BYTES,
      sha256: harness.sandbox.runway.outputSha256(taskId),
      uploads: 2,
    });
    expect(reports(ready)).toEqual([completedReport(ready)]);
  });

  it('with self-hosted storage\'s short-lived tokens, asks QStash to come back and stores nothing until a token holds', async () => {
    const ready = await readyToUpload({ uploadTokenTtlSeconds: 0 });
    const { harness, message } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message);

    expect(answer.status).toBe(503);
    expect(puts(ready).map((request) => request.bytes)).toEqual([0, 0]);
    expect(videos(harness)).toEqual([]);
    expect(reports(ready)).toEqual([]);
  });
});

describe('step-upload when the video is larger than storage allows', () => {
  it('reports failed with the storage reason at once, stores nothing and never reports completed', async () => {
    const ready = await readyToUpload({ maxUploadBytes: 5 * MB });
    const { harness, message } = ready;

    const answer = await harness.deliver(STEP_UPLOAD, message);

    // Reported: QStash is told not to deliver again.
    expect(answer.status).toBe(489);
    expect(answer.headers.get('upstash-nonretryable-error')).toBe('true');
    expect(puts(ready).map((request) => [request.headers['content-length'], request.bytes])).toEqual([[String(OUTPUT_BYTES), 0]]);
    expect(videos(harness)).toEqual([]);
    expect(reports(ready)).toEqual([
      {
        item_id: ready.itemId,
        worker_id: WORKER_ID,
        status: 'failed',
        error_message: 'storage: the video is over the storage size limit',
        veo_operation_id: ready.taskId,
      },
    ]);
    expect(harness.sandbox.app.item(ready.itemId)).toMatchObject({ status: 'failed', retry_count: 1 });
  });
});

describe('step-upload when storage stores the video but the answer is lost', () => {
  it('ends with exactly one completed report and one stored video, never failed', async () => {
    const ready = await readyToUpload({ faults: { storage: { lostAnswerRate: 1 } } });
    const { harness, message, taskId, videoPath } = ready;

    const answers = await deliverUntilDone(harness, message);

    expect(answers.at(-1)?.status).toBe(200);
    expect(answers.slice(0, -1).map((answer) => answer.status)).toEqual(answers.slice(0, -1).map(() => 503));
    expect(puts(ready).map((request) => request.bytes)).toEqual([OUTPUT_BYTES]);
    expect(videos(harness)).toHaveLength(1);
    expect(harness.sandbox.storage.object('generated-videos', videoPath)).toMatchObject({
      size: OUTPUT_BYTES,
      sha256: harness.sandbox.runway.outputSha256(taskId),
    });
    expect(reports(ready)).toEqual([completedReport(ready)]);
    expect(harness.sandbox.app.item(ready.itemId)).toMatchObject({ status: 'completed', retry_count: 0 });
  });
});
