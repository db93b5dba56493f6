import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { SandboxFaults } from '../../sandbox/index.js';
import { sampleVideo } from '../../sandbox/runway-output.js';
import { readFixture } from '../../sandbox/seed.js';
import { DEFAULT_PROMPT } from '../../lib/decide/prompt.js';
import type { Timeouts } from '../../lib/deps.js';
import { MAX_TRANSIENT_FAILURES } from '../../lib/steps/submit-task.js';
import { pollMessageSchema, uploadMessageSchema, type UploadMessage } from '../../lib/steps/messages.js';
import { describeRequest, waitForTaskStatus } from '../support/flow.js';
import {
  DEMO_KEYS,
  WORKER_ID,
  closeHarnesses,
  startHarness,
  type Answer,
  type Harness,
  type Mark,
  RUNWAY_WORK,
} from '../support/harness.js';
import { gif, htmlPage, jpeg, truncated } from '../support/images.js';
import { SCRIPTED_FAULT_RATE, scriptedRng, type ScriptedRng } from '../support/scripted-rng.js';
import {
  closeStandIns,
  startSocketTrap,
  startStandIn,
  type StandIn,
  type StandInOptions,
  type StandInReply,
  type StandInRequest,
} from '../support/extra-stand-in.js';
import { closeExtraWorkers, startExtraWorker, type ExtraWorker } from '../support/extra-worker.js';
import { createBodySchema, type CreateBody } from '../support/runway-create.js';
import { storedVideoOf } from '../../lib/ledger/ledger.js';
import { cronSummarySchema } from '../support/cron-summary.js';

afterEach(async () => {
  await closeExtraWorkers();
  await closeStandIns();
  await closeHarnesses();
});

/** Outside calls bounded tightly, so a hanging service costs a test well under a second per try. */
const SHORT_TIMEOUTS: Timeouts = { appMs: 2_000, runwayMs: 5_000, photoMs: 500, uploadMs: 5_000 };
const LEASE_SECONDS = 600;
const PROMPT = 'The camera slowly pushes in while leaves drift across the frame in the warm evening light.';

const summarySchema = cronSummarySchema;
const leaseEnvelope = z.object({ success: z.literal(true), data: z.record(z.string(), z.unknown()) });

// --- Situations --------------------------------------------------------------------

interface Situation {
  readonly harness: Harness;
  readonly worker: ExtraWorker;
  readonly itemId: string;
  readonly photoPath: string;
  readonly faults: ScriptedRng;
  /** The stand-ins in front of the sandbox app and Runway, when the row asked for them. */
  readonly appStandIn: StandIn | undefined;
  readonly runwayStandIn: StandIn | undefined;
  /** Taken after seeding, before the worker was driven. */
  readonly mark: Mark;
}

interface StandIns {
  /** In front of the sandbox app's worker API. */
  readonly app?: Omit<StandInOptions, 'target'>;
  /** In front of the sandbox Runway API. */
  readonly runway?: Omit<StandInOptions, 'target'>;
}

/** How a situation leaves the item. `lapses`: leased, and nobody acts until the lease runs out. */
type LeaseAfter = 'reported' | 'released' | 'in-flight' | 'untouched' | 'lapses';

type Expected =
  | { readonly outcome: 'failed'; readonly message: string | RegExp }
  | {
      readonly outcome: 'submitted';
      readonly create: Partial<Omit<CreateBody, 'promptText'>> & { readonly promptText?: string | null };
      readonly checkCreate?: (body: CreateBody) => void;
    }
  | { readonly outcome: 'released' }
  | { readonly outcome: 'skipped'; readonly detail: RegExp }
  | { readonly outcome: 'completed' }
  | { readonly outcome: 'refused' };

interface Row {
  readonly name: string;
  /** Bytes at the photo path; `none` leaves storage without the photo. Default: the landscape fixture. */
  readonly photo?: Uint8Array | 'none';
  readonly photoContentType?: string;
  readonly frameNum?: number | null;
  readonly prompt?: string;
  readonly provider?: string;
  readonly faults?: (rate: number) => SandboxFaults;
  readonly standIns?: (harness: Harness) => Promise<StandIns>;
  /** Drives the worker; the default is one cron-poll run. Returns the last answer. */
  readonly drive?: (situation: Situation) => Promise<Answer>;
  readonly expected: Expected;
  readonly leaseAfter: LeaseAfter;
  /** Row-specific checks on top of the ones every outcome gets. */
  readonly also?: (situation: Situation, answer: Answer) => void | Promise<void>;
}

/** Edits the task in a next-task answer on its way from the app to the worker. */
function editLeasedTask(edit: (task: Record<string, unknown>) => Record<string, unknown>): Omit<StandInOptions, 'target'> {
  return {
    rewrite(request: StandInRequest, reply: StandInReply): StandInReply {
      if (request.path !== '/worker/next-task') return reply;
      const lease = leaseEnvelope.safeParse(reply.json);
      return lease.success ? { ...reply, json: { ...lease.data, data: edit({ ...lease.data.data }) } } : reply;
    },
  };
}

function withoutField(name: string): (task: Record<string, unknown>) => Record<string, unknown> {
  return (task) => Object.fromEntries(Object.entries(task).filter(([key]) => key !== name));
}

const isPresign = (request: StandInRequest, operation: 'download' | 'upload'): boolean =>
  request.path === '/worker/presign' && z.object({ operation: z.literal(operation) }).safeParse(request.json).success;

/** Replaces the signed URL in a download presign answer. */
function photoUrlFrom(url: string): Omit<StandInOptions, 'target'> {
  return {
    rewrite(request, reply) {
      if (!isPresign(request, 'download') || reply.status !== 200) return reply;
      return { status: 200, json: { success: true, data: { url, expires_in: 3600 } } };
    },
  };
}

const SIGNED_URL = 'https://assets.example.com/p.jpg?token=eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJlc2ln';

/** A Runway stand-in that answers every create with 400 and this body. */
function runwayRejectsCreate(json: unknown): Omit<StandInOptions, 'target'> {
  return {
    answer: (request) => (request.method === 'POST' && request.path === '/v1/image_to_video' ? { status: 400, json } : undefined),
  };
}

async function cronOnce(situation: Situation): Promise<Answer> {
  const answer = await situation.worker.cron();
  expect(answer.status).toBe(200);
  return answer;
}

/** cron-poll, the Runway task finishing, one poll delivery: the upload message, ready to deliver. */
async function throughPoll(situation: Situation): Promise<UploadMessage> {
  const { harness, worker, itemId } = situation;
  await cronOnce(situation);
  const [published] = worker.messages('/api/runway-callback');
  const { job } = pollMessageSchema.parse(JSON.parse(published?.body ?? ''));
  await waitForTaskStatus(harness, job.runway_task_id, 'SUCCEEDED');
  expect((await worker.deliver('/api/runway-callback', { job })).status).toBe(200);
  const upload = worker.messages('/api/step-upload').map((message) => uploadMessageSchema.parse(JSON.parse(message.body)));
  const [message] = upload;
  if (!message || upload.length !== 1) throw new Error(`expected one upload message for ${itemId}, got ${upload.length}`);
  return message;
}

function uploadThen(beforeUpload: (situation: Situation) => void): (situation: Situation) => Promise<Answer> {
  return async (situation) => {
    const message = await throughPoll(situation);
    beforeUpload(situation);
    return situation.worker.deliver('/api/step-upload', message);
  };
}

// --- The table ---------------------------------------------------------------------

const FIVE_THOUSAND_CHARACTER_PROMPT = Array.from({ length: 600 }, (_, index) => `scene${index % 10} drifts`)
  .join(' ')
  .slice(0, 5_000);

const frameNumRows = (
  [
    [null, 5],
    [0, 5],
    [-5, 5],
    [1e9, 10],
    [60.5, 3],
  ] as const
).map(
  ([frameNum, duration]): Row => ({
    name: `frame_num ${String(frameNum)} (gen4_turbo: ${duration} s)`,
    frameNum,
    expected: { outcome: 'submitted', create: { model: 'gen4_turbo', duration } },
    leaseAfter: 'in-flight',
  }),
);

const rows: readonly Row[] = [
  {
    name: 'a task without item_id',
    standIns: () => Promise.resolve({ app: editLeasedTask(withoutField('item_id')) }),
    expected: { outcome: 'skipped', detail: /^invalid task: item_id: / },
    // Without an item id the worker can neither report nor release it: the lease lapses.
    leaseAfter: 'lapses',
    also({ worker }) {
      const logged = worker.log.records().find((record) => record['msg'] === 'the app handed out an unusable task: skipped');
      expect(logged).toMatchObject({ level: 'error', problem: expect.stringMatching(/^item_id: /) as unknown });
    },
  },
  {
    name: 'a task without photo_storage_path',
    standIns: () => Promise.resolve({ app: editLeasedTask(withoutField('photo_storage_path')) }),
    expected: { outcome: 'failed', message: 'task: photo_storage_path is missing' },
    leaseAfter: 'reported',
    also({ harness, mark }) {
      expect(harness.appCalls('presign', mark)).toEqual([]);
    },
  },
  {
    name: 'a task without prompt (gen4_turbo takes none)',
    standIns: () => Promise.resolve({ app: editLeasedTask(withoutField('prompt')) }),
    expected: { outcome: 'submitted', create: { model: 'gen4_turbo', duration: 5, promptText: null } },
    leaseAfter: 'in-flight',
  },
  {
    name: 'an empty prompt for gen4.5, which requires one',
    prompt: '',
    provider: 'gen4.5',
    expected: { outcome: 'submitted', create: { model: 'gen4.5', duration: 5, promptText: DEFAULT_PROMPT } },
    leaseAfter: 'in-flight',
  },
  ...frameNumRows,
  {
    name: 'frame_num "121" as a string (gen4_turbo: 5 s)',
    frameNum: 169,
    standIns: () => Promise.resolve({ app: editLeasedTask((task) => ({ ...task, frame_num: '121' })) }),
    expected: { outcome: 'submitted', create: { model: 'gen4_turbo', duration: 5 } },
    leaseAfter: 'in-flight',
  },
  {
    name: 'a prompt of 5,000 characters',
    prompt: FIVE_THOUSAND_CHARACTER_PROMPT,
    expected: {
      outcome: 'submitted',
      create: { model: 'gen4_turbo', duration: 5 },
      checkCreate(body) {
        const sent = body.promptText ?? '';
        expect(sent.length).toBeLessThanOrEqual(1_000);
        expect(sent.length).toBeGreaterThan(900);
        expect(FIVE_THOUSAND_CHARACTER_PROMPT.startsWith(sent)).toBe(true);
        // Cut at a word boundary: the next character of the original is whitespace.
        expect(FIVE_THOUSAND_CHARACTER_PROMPT.charAt(sent.length)).toMatch(/\s/);
        expect(sent).toBe(sent.trim());
      },
    },
    leaseAfter: 'in-flight',
  },
  {
    name: 'provider wan_local (the GPU worker\'s)',
    provider: 'wan_local',
    expected: { outcome: 'released' },
    leaseAfter: 'released',
    async also({ harness, itemId, mark }) {
      expect(harness.appCalls('presign', mark)).toEqual([]);
      expect(await harness.runtime.deps.ledger.latest(itemId)).toBeUndefined();
    },
  },
  {
    name: 'an unknown provider',
    provider: 'dall-e-9',
    expected: { outcome: 'submitted', create: { model: 'gen4_turbo', duration: 5 } },
    leaseAfter: 'in-flight',
    also({ worker, itemId }) {
      const warnings = worker.log.records().filter((record) => record['level'] === 'warn');
      expect(warnings).toContainEqual(
        expect.objectContaining({ item_id: itemId, provider: 'dall-e-9', msg: 'unknown provider "dall-e-9"; using gen4_turbo' }),
      );
    },
  },
  {
    name: 'a photo the app cannot sign (presign answers 500), three leases in a row',
    photo: 'none',
    // The app's 500 for a missing photo is also its answer to a passing storage failure: the
    // first two leases give the item back, the third reports it.
    async drive(situation) {
      for (let lease = 1; lease < MAX_TRANSIENT_FAILURES; lease++) {
        const answer = await cronOnce(situation);
        expect(answer.json).toMatchObject({ items: [{ item_id: situation.itemId, outcome: 'released' }] });
        expect(situation.harness.sandbox.app.reports(situation.itemId)).toEqual([]);
      }
      return cronOnce(situation);
    },
    expected: { outcome: 'failed', message: 'photo: not found (the app could not sign a download URL)' },
    leaseAfter: 'reported',
    also({ harness, mark, photoPath }) {
      // Per lease, the first try and two in-process retries; then the report.
      const presigns = harness.appCalls('presign', mark);
      expect(presigns.map((request) => request.json)).toEqual(
        Array.from({ length: 3 * MAX_TRANSIENT_FAILURES }, () => ({ operation: 'download', storage_path: photoPath })),
      );
      expect(harness.requests({ service: 'storage', since: mark })).toEqual([]);
    },
  },
  {
    name: 'a photo of 0 bytes',
    photo: new Uint8Array(0),
    expected: { outcome: 'failed', message: 'photo: the file is empty' },
    leaseAfter: 'reported',
  },
  {
    name: 'an HTML error page served as 200',
    photo: htmlPage(),
    photoContentType: 'text/html; charset=utf-8',
    expected: { outcome: 'failed', message: 'photo: not a JPEG/PNG/WebP image (got text/html)' },
    leaseAfter: 'reported',
  },
  {
    name: 'a GIF',
    photo: gif({ width: 640, height: 480 }),
    expected: { outcome: 'failed', message: 'photo: not a JPEG/PNG/WebP image (got image/gif)' },
    leaseAfter: 'reported',
  },
  {
    name: 'a truncated JPEG',
    photo: truncated(jpeg({ width: 640, height: 480, paddingBytes: 2_000 }), 1_500),
    expected: { outcome: 'failed', message: 'photo: the image is damaged or truncated' },
    leaseAfter: 'reported',
  },
  {
    name: 'a 25 MB photo',
    photo: jpeg({ width: 4000, height: 3000, paddingBytes: 25 * 1024 * 1024 }),
    expected: { outcome: 'failed', message: /^photo: \d+(\.\d)? MB is over the \d+(\.\d)? MB limit$/ },
    leaseAfter: 'reported',
    also({ harness, mark }) {
      // Refused on its Content-Length: the bytes are not read, nothing goes to Runway.
      expect(harness.requests({ service: 'runway', path: RUNWAY_WORK, since: mark })).toEqual([]);
    },
  },
  {
    name: 'a photo URL that hangs',
    async standIns() {
      const trap = await startSocketTrap();
      return { app: photoUrlFrom(`http://127.0.0.1:${trap.port}/object/sign/group-photos/p.jpg?token=eyJhbGciOiJIUzI1NiJ9.e30.c2ln`) };
    },
    async drive(situation) {
      const { harness, itemId } = situation;
      // Before any Runway task exists a timeout gives the item back; the third in a row fails it.
      for (let run = 1; run < MAX_TRANSIENT_FAILURES; run++) {
        const started = Date.now();
        const summary = summarySchema.parse((await cronOnce(situation)).json);
        expect(Date.now() - started).toBeLessThan(10_000);
        expect(summary.items).toEqual([
          { item_id: itemId, outcome: 'released', detail: 'photo: download timed out after 500 ms' },
        ]);
        const record = await harness.runtime.deps.ledger.read({ itemId, attempt: run });
        expect(record.abandoned).toMatchObject({ transient_failures: run });
        expect(record.reported).toBeUndefined();
        const item = harness.sandbox.app.item(itemId);
        expect(item?.status).toBe('processing');
        expect(Date.parse(item?.leased_until ?? '')).toBeLessThanOrEqual(Date.now());
        expect(harness.appCalls('heartbeat').at(-1)?.json).toEqual({ item_id: itemId, worker_id: WORKER_ID, extend_seconds: 0 });
        expect(harness.appCalls('report')).toEqual([]);
      }
      return cronOnce(situation);
    },
    expected: { outcome: 'failed', message: 'photo: download timed out after 500 ms' },
    leaseAfter: 'reported',
    async also({ harness, itemId }) {
      expect((await harness.runtime.deps.ledger.latest(itemId))?.attempt).toBe(MAX_TRANSIENT_FAILURES);
    },
  },
  {
    name: 'Runway answering 400 to the create',
    standIns: () =>
      Promise.resolve({
        runway: runwayRejectsCreate({
          error: `Invalid asset: could not fetch ${SIGNED_URL}; Authorization: Bearer key_7f3a9c1e5b2d8f4a6c0e`,
          issues: [{ path: ['promptImage'], message: 'Unsupported image type' }],
        }),
      }),
    expected: {
      outcome: 'failed',
      message: 'runway: create answered 400 (Invalid asset: could not fetch [url] Authorization: Bearer [redacted]; promptImage: Unsupported image type)',
    },
    leaseAfter: 'reported',
    also({ runwayStandIn }) {
      // One create, never retried: a 400 will not get better.
      const creates = runwayStandIn?.requests().filter((request) => request.path === '/v1/image_to_video') ?? [];
      expect(creates).toHaveLength(1);
      expect(createBodySchema.parse(creates[0]?.json)).toMatchObject({ model: 'gen4_turbo', ratio: '1104:832', duration: 5, promptText: PROMPT });
    },
  },
  {
    name: 'a Runway output URL that answers 403',
    faults: (rate) => ({ runway: { outputForbiddenRate: rate } }),
    drive: uploadThen(({ faults }) => faults.fireNext()),
    expected: { outcome: 'completed' },
    leaseAfter: 'reported',
    also({ harness, mark }) {
      const runway = harness.requests({ service: 'runway', path: RUNWAY_WORK, since: mark }).map(describeRequest);
      const taskLooks = runway.filter((line) => line.startsWith('runway GET /v1/tasks/'));
      const outputs = runway.filter((line) => line.startsWith('runway GET /outputs/'));
      // One look to find it SUCCEEDED, one for a fresh URL after the 403; two output GETs.
      expect(taskLooks).toHaveLength(2);
      expect(outputs).toHaveLength(2);
    },
  },
  {
    name: 'Supabase answering 400 {"statusCode":"409"} (duplicate) to the PUT',
    standIns: (harness) =>
      Promise.resolve({
        app: {
          async rewrite(request, reply) {
            // An earlier delivery's PUT lands while this one is on its way.
            if (isPresign(request, 'upload') && reply.status === 200) {
              const path = z.object({ data: z.object({ storage_path: z.string() }) }).parse(reply.json).data.storage_path;
              await harness.sandbox.storage.putObject('generated-videos', path, sampleVideo(), 'video/mp4');
            }
            return reply;
          },
        },
      }),
    drive: uploadThen(() => undefined),
    expected: { outcome: 'completed' },
    leaseAfter: 'reported',
    async also({ harness, itemId }) {
      const path = `videos/${itemId}.mp4`;
      expect(harness.sandbox.storage.uploadAttempts('generated-videos', path)).toBe(1);
      const record = await harness.runtime.deps.ledger.read({ itemId, attempt: 1 });
      expect(storedVideoOf(record)).toMatchObject({ storage_path: path, bytes: 0 });
    },
  },
  {
    name: 'Supabase answering 400 InvalidJWT (expired upload token) to the PUT',
    faults: (rate) => ({ storage: { expiredTokenRate: rate } }),
    drive: uploadThen(({ faults }) => faults.fireNext()),
    expected: { outcome: 'completed' },
    leaseAfter: 'reported',
    also({ harness, itemId, mark }) {
      const uploadPresigns = harness.appCalls('presign', mark).filter((request) => JSON.stringify(request.json).includes('"upload"'));
      expect(uploadPresigns).toHaveLength(2);
      expect(harness.sandbox.storage.uploadAttempts('generated-videos', `videos/${itemId}.mp4`)).toBe(2);
    },
  },
  {
    name: 'a message with a valid signature and a body that fails validation',
    drive: ({ worker, itemId }) => worker.deliver('/api/step-upload', { job: { item_id: itemId, attempt: 'first' } }),
    expected: { outcome: 'refused' },
    leaseAfter: 'untouched',
  },
  {
    name: 'Runway answering 400 with text that quotes the configured Runway key',
    standIns: () =>
      Promise.resolve({ runway: runwayRejectsCreate({ error: `Request rejected for key ${DEMO_KEYS.runway}` }) }),
    expected: { outcome: 'failed', message: /^runway: create answered 400 / },
    leaseAfter: 'reported',
  },
  {
    name: 'a task whose photo_storage_path is not text',
    standIns: () => Promise.resolve({ app: editLeasedTask((task) => ({ ...task, photo_storage_path: 42 })) }),
    expected: { outcome: 'failed', message: /^task: / },
    leaseAfter: 'reported',
  },
  {
    name: 'the app\'s download presign answering 503 (an outage, not a missing photo)',
    standIns: () =>
      Promise.resolve({
        app: { answer: (request) => (isPresign(request, 'download') ? { status: 503, json: { success: false, error: 'Service Unavailable' } } : undefined) },
      }),
    expected: { outcome: 'released' },
    leaseAfter: 'released',
  },
];


// --- Running one row ---------------------------------------------------------------

async function setUp(row: Row): Promise<Situation> {
  const faults = scriptedRng();
  const harness = await startHarness({
    sandbox: {
      runway: { generationMs: 300 },
      ...(row.faults ? { rng: faults.rng, faults: row.faults(SCRIPTED_FAULT_RATE) } : {}),
    },
  });
  const standIns = (await row.standIns?.(harness)) ?? {};
  const app = standIns.app ? await startStandIn({ target: harness.sandbox.nextApiUrl, ...standIns.app }) : undefined;
  const runway = standIns.runway ? await startStandIn({ target: harness.sandbox.runwayApiUrl, ...standIns.runway }) : undefined;
  const worker = await startExtraWorker(harness, {
    timeouts: SHORT_TIMEOUTS,
    env: {
      ...(app ? { NEXT_API_URL: app.url } : {}),
      ...(runway ? { RUNWAY_API_URL: runway.url } : {}),
    },
  });

  const groupId = randomUUID();
  const photoPath = `${groupId}/${randomUUID()}_original.jpg`;
  if (row.photo !== 'none') {
    await harness.sandbox.storage.putObject(
      'group-photos',
      photoPath,
      row.photo ?? (await readFixture('landscape.jpg')),
      row.photoContentType ?? 'image/jpeg',
    );
  }
  const item = harness.sandbox.app.addItem({
    group_id: groupId,
    photo_id: randomUUID(),
    prompt: row.prompt ?? PROMPT,
    photo_storage_path: photoPath,
    frame_num: row.frameNum === undefined ? 121 : row.frameNum,
    ...(row.provider === undefined ? {} : { inference_provider: row.provider }),
  });
  return { harness, worker, itemId: item.item_id, photoPath, faults, appStandIn: app, runwayStandIn: runway, mark: harness.mark() };
}

function expectSafeMessage(message: string): void {
  expect(message).toMatch(/^(task|photo|runway|storage|output|app|worker): \S/);
  expect(message.length).toBeLessThanOrEqual(500);
  expect(message).not.toMatch(/[a-z][a-z0-9+.-]*:\/\/|token=|sig=|eyJ/i);
  for (const secret of Object.values(DEMO_KEYS)) expect(message).not.toContain(secret);
}

async function checkOutcome(row: Row, situation: Situation, answer: Answer): Promise<void> {
  const { harness, worker, itemId, mark } = situation;
  const expected = row.expected;
  const item = harness.sandbox.app.item(itemId);
  const reports = harness.sandbox.app.reports(itemId);
  const creates = harness.requests({ service: 'runway', method: 'POST', path: '/v1/image_to_video', since: mark });
  const parsedSummary = summarySchema.safeParse(answer.json);
  const summary = parsedSummary.success ? parsedSummary.data : undefined;

  switch (expected.outcome) {
    case 'failed': {
      expect(reports).toHaveLength(1);
      const [report] = reports;
      expect(report).toMatchObject({ worker_id: WORKER_ID, status: 'failed', video_storage_path: null, applied: true });
      const message = report?.error_message ?? '';
      if (typeof expected.message === 'string') expect(message).toBe(expected.message);
      else expect(message).toMatch(expected.message);
      expectSafeMessage(message);
      expect(item).toMatchObject({ status: 'failed', retry_count: 1, error_message: message });
      expect((await harness.runtime.deps.ledger.latest(itemId))?.reported).toMatchObject({ status: 'failed', error_message: message });
      expect(harness.sandbox.runway.tasks()).toEqual([]);
      expect(summary?.items.at(-1)).toMatchObject({ item_id: itemId, outcome: 'failed' });
      expect(worker.messages()).toEqual([]);
      break;
    }
    case 'submitted': {
      expect(creates).toHaveLength(1);
      const body = createBodySchema.parse(creates[0]?.json);
      const { promptText, ...fields } = expected.create;
      expect(body).toMatchObject(fields);
      if (promptText === null) expect(body).not.toHaveProperty('promptText');
      else if (promptText !== undefined) expect(body.promptText).toBe(promptText);
      expected.checkCreate?.(body);
      expect(reports).toEqual([]);
      expect(summary?.items).toEqual([expect.objectContaining({ item_id: itemId, outcome: 'submitted' })]);
      const [task] = harness.sandbox.runway.tasks();
      const polls = worker.messages('/api/runway-callback').map((message) => pollMessageSchema.parse(JSON.parse(message.body)).job);
      expect(polls).toEqual([expect.objectContaining({ item_id: itemId, attempt: 1, runway_task_id: task?.id, duration: body.duration })]);
      break;
    }
    case 'released': {
      expect(reports).toEqual([]);
      expect(creates).toEqual([]);
      expect(harness.appCalls('heartbeat', mark).map((request) => request.json)).toEqual([
        { item_id: itemId, worker_id: WORKER_ID, extend_seconds: 0 },
      ]);
      expect(summary?.items).toEqual([expect.objectContaining({ item_id: itemId, outcome: 'released' })]);
      expect(worker.messages()).toEqual([]);
      break;
    }
    case 'skipped': {
      expect(summary?.items).toEqual([{ item_id: null, outcome: 'skipped', detail: expect.stringMatching(expected.detail) as unknown }]);
      expect(reports).toEqual([]);
      expect(harness.appCalls('heartbeat', mark)).toEqual([]);
      expect(harness.appCalls('presign', mark)).toEqual([]);
      expect(harness.requests({ service: 'runway', path: RUNWAY_WORK, since: mark })).toEqual([]);
      expect(worker.messages()).toEqual([]);
      break;
    }
    case 'completed': {
      expect(answer.status).toBe(200);
      const [task] = harness.sandbox.runway.tasks();
      expect(reports.map(({ status, video_storage_path, veo_operation_id }) => ({ status, video_storage_path, veo_operation_id }))).toEqual([
        { status: 'completed', video_storage_path: `videos/${itemId}.mp4`, veo_operation_id: task?.id ?? 'missing' },
      ]);
      expect(item).toMatchObject({ status: 'completed', retry_count: 0 });
      expect(harness.sandbox.storage.object('generated-videos', `videos/${itemId}.mp4`)).toMatchObject({
        contentType: 'video/mp4',
        size: sampleVideo().length,
      });
      break;
    }
    case 'refused': {
      expect(answer.status).toBe(489);
      expect(answer.headers.get('upstash-nonretryable-error')).toBe('true');
      expect(answer.json).toMatchObject({ outcome: 'invalid' });
      expect(harness.requests({ since: mark })).toEqual([]);
      expect(harness.messages(undefined, mark)).toEqual([]);
      expect(worker.messages()).toEqual([]);
      break;
    }
  }
}

/** Where the item's lease stands once the worker is done with it; `lapses` means nobody will act on it. */
function leaseAfter(situation: Situation): LeaseAfter {
  const { harness, worker, itemId } = situation;
  const item = harness.sandbox.app.item(itemId);
  if (item?.status === 'completed' || item?.status === 'failed') return 'reported';
  if (item?.status === 'pending') return 'untouched';
  if (Date.parse(item?.leased_until ?? '') <= Date.now()) return 'released';
  const pending = worker.messages().filter((message) => message.body.includes(itemId));
  if (pending.length > 0) return 'in-flight';
  return 'lapses';
}

async function runRow(row: Row): Promise<void> {
  const situation = await setUp(row);
  const answer = await (row.drive ?? cronOnce)(situation);

  await checkOutcome(row, situation, answer);
  await row.also?.(situation, answer);

  // Never a lease that nobody will act on, except where the row says it lapses by itself.
  const state = leaseAfter(situation);
  expect(state).toBe(row.leaseAfter);
  if (state === 'lapses') {
    const item = situation.harness.sandbox.app.item(situation.itemId);
    expect(item).toMatchObject({ status: 'processing', worker_id: WORKER_ID });
    expect(Date.parse(item?.leased_until ?? '')).toBeLessThanOrEqual(Date.now() + LEASE_SECONDS * 1000);
  }
  // No log line carries a key or a signed-URL token.
  for (const line of situation.worker.log.lines()) {
    for (const secret of Object.values(DEMO_KEYS)) expect(line).not.toContain(secret);
    expect(line).not.toMatch(/token=(?!\[redacted\])/);
  }
}

describe('the worker meeting bad input', () => {
  it.each(rows.map((row) => [row.name, row] as const))('handles %s as its rule says, and leaves its lease accounted for', async (_name, row) => {
    await runRow(row);
  });
});
