import { afterEach, describe, expect, it } from 'vitest';
import { createRunway, RUNWAY_VERSION, type CreateTaskBody, type Runway } from '../../lib/clients/runway.js';
import { UpstreamError } from '../../lib/errors.js';
import { closeLoopbacks, dropConnection, inTurn, jsonOf, neverAnswer, rejectionOf, reply, serveScript, type Loopback, type Script } from './loopback.js';

const API_KEY = 'key_runway_test_0123456789';
const BODY: CreateTaskBody = { model: 'gen4_turbo', promptImage: 'data:image/jpeg;base64,AAAA', ratio: '1280:720', duration: 5, promptText: 'waves' };
const TASK = { id: 'task-1', status: 'RUNNING', createdAt: '2026-11-01T00:00:00.000Z', progress: 0.4 };

afterEach(closeLoopbacks);

async function runwayAnswering(script: Script, timeoutMs = 5_000): Promise<{ runway: Runway; server: Loopback }> {
  const server = await serveScript(script);
  return { runway: createRunway({ baseUrl: server.url, apiKey: API_KEY, timeoutMs }), server };
}

async function upstreamErrorOf(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await rejectionOf(promise);
  expect(error).toBeInstanceOf(UpstreamError);
  return error as UpstreamError;
}

describe('creating a Runway task', () => {
  it('posts the body with the bearer key and the pinned version, and returns the id and the estimated credits', async () => {
    const { runway, server } = await runwayAnswering(reply(200, { id: 'task-1', estimatedCost: { credits: 25 } }));

    expect(await runway.createTask(BODY)).toEqual({ id: 'task-1', estimatedCredits: 25 });

    const [request] = server.received;
    expect(request).toMatchObject({ method: 'POST', url: '/v1/image_to_video' });
    expect(request?.headers).toMatchObject({ authorization: `Bearer ${API_KEY}`, 'x-runway-version': RUNWAY_VERSION });
    expect(jsonOf(request)).toEqual(BODY);
  });

  it('takes a 201 answer as created and drops an estimated cost of the wrong shape', async () => {
    const { runway } = await runwayAnswering(reply(201, { id: 'task-2', estimatedCost: { credits: 'twenty' } }));

    expect(await runway.createTask(BODY)).toEqual({ id: 'task-2', estimatedCredits: undefined });
  });

  it('fails without retrying when a 200 answer carries no task id', async () => {
    const { runway, server } = await runwayAnswering(reply(200, { status: 'PENDING' }));

    const error = await upstreamErrorOf(runway.createTask(BODY));

    expect(error).toMatchObject({ message: 'runway: create answered without a task id', status: 200, retryable: false, code: 'no-task-id' });
    expect(server.received).toHaveLength(1);
  });

  it('reports the daily cap on a 429, with the wait Runway asked for, and does not retry', async () => {
    const { runway, server } = await runwayAnswering(reply(429, { error: 'Daily task limit reached' }, { 'retry-after': '3600' }));

    const error = await upstreamErrorOf(runway.createTask(BODY));

    expect(error).toMatchObject({
      message: 'runway: daily generation limit reached (Daily task limit reached)',
      status: 429,
      retryable: false,
      code: 'daily-cap',
      retryAfterSeconds: 3600,
    });
    expect(server.received).toHaveLength(1);
  });

  it('reports the daily cap without a detail when the 429 body names none', async () => {
    const { runway } = await runwayAnswering(reply(429));

    const error = await upstreamErrorOf(runway.createTask(BODY));

    expect(error).toMatchObject({ message: 'runway: daily generation limit reached', code: 'daily-cap', retryAfterSeconds: undefined });
  });

  it("quotes Runway's error and at most three of its issues for a 400, as final", async () => {
    const issues = [
      { path: ['ratio'], message: 'Invalid enum value' },
      { message: 'Duration must be an integer' },
      { path: ['promptText'] },
      { path: ['seed'], message: 'Too big' },
    ];
    const { runway, server } = await runwayAnswering(reply(400, { error: 'Validation of body failed', issues }));

    const error = await upstreamErrorOf(runway.createTask(BODY));

    expect(error).toMatchObject({
      message: 'runway: create answered 400 (Validation of body failed; ratio: Invalid enum value; Duration must be an integer; promptText)',
      status: 400,
      retryable: false,
    });
    expect(server.received).toHaveLength(1);
  });

  it('skips issues that say nothing, so they take none of the three places', async () => {
    const { runway } = await runwayAnswering(reply(400, { error: 'Bad', issues: [{}, { path: [] }, {}, { message: 'Ratio missing' }] }));

    const error = await upstreamErrorOf(runway.createTask(BODY));

    expect(error.message).toBe('runway: create answered 400 (Bad; Ratio missing)');
  });

  it('gives only the status when the error body says nothing usable', async () => {
    const { runway } = await runwayAnswering(reply(401, {}));

    const error = await upstreamErrorOf(runway.createTask(BODY));

    expect(error).toMatchObject({ message: 'runway: create answered 401', status: 401, retryable: false });
  });

  it('marks a 5xx with a text body retryable, but leaves the retry to the caller', async () => {
    const { runway, server } = await runwayAnswering(reply(502, '<html>Bad Gateway</html>'));

    const error = await upstreamErrorOf(runway.createTask(BODY));

    expect(error).toMatchObject({ message: 'runway: create answered 502', status: 502, retryable: true });
    expect(server.received).toHaveLength(1);
  });

  it('does not send the create again when the connection is lost, as the task may exist', async () => {
    const { runway, server } = await runwayAnswering(dropConnection);

    const error = await upstreamErrorOf(runway.createTask(BODY));

    expect(error).toMatchObject({ message: 'runway: POST /v1/image_to_video failed (network error)', retryable: true, code: 'network' });
    expect(server.received).toHaveLength(1);
  });

  it('gives up at its timeout when Runway does not answer, and does not send again', async () => {
    const { runway, server } = await runwayAnswering(neverAnswer, 300);

    const error = await upstreamErrorOf(runway.createTask(BODY));

    expect(error).toMatchObject({ message: 'runway: POST /v1/image_to_video timed out', retryable: true, code: 'timeout' });
    expect(server.received).toHaveLength(1);
  });
});

describe('looking up a Runway task', () => {
  it('gets the task by its escaped id and keeps fields and statuses it does not know', async () => {
    const { runway, server } = await runwayAnswering(reply(200, { ...TASK, id: 'a/b', status: 'QUEUED_SOMEWHERE', extra: 1 }));

    expect(await runway.getTask('a/b')).toMatchObject({ id: 'a/b', status: 'QUEUED_SOMEWHERE', progress: 0.4, extra: 1 });
    expect(server.received[0]).toMatchObject({ method: 'GET', url: '/v1/tasks/a%2Fb' });
  });

  it('answers undefined for a task Runway no longer has (404)', async () => {
    const { runway } = await runwayAnswering(reply(404, { error: 'Task not found' }));

    expect(await runway.getTask('task-gone')).toBeUndefined();
  });

  it('retries an unexpected shape and then fails as retryable', async () => {
    const { runway, server } = await runwayAnswering(reply(200, { status: 'RUNNING' }));

    const error = await upstreamErrorOf(runway.getTask('task-1'));

    expect(error).toMatchObject({ message: 'runway: task lookup answered an unexpected shape', status: 200, retryable: true });
    expect(server.received).toHaveLength(3);
  });

  it('retries a 503 after the Retry-After Runway asked for, and returns the task', async () => {
    const { runway, server } = await runwayAnswering(inTurn(reply(503, { error: 'busy' }, { 'retry-after': '1' }), reply(200, TASK)));

    expect(await runway.getTask('task-1')).toMatchObject(TASK);

    const [first, second] = server.received;
    expect(server.received).toHaveLength(2);
    expect((second?.atMs ?? 0) - (first?.atMs ?? 0)).toBeGreaterThanOrEqual(950);
  });

  it('does not retry a refused key (401)', async () => {
    const { runway, server } = await runwayAnswering(reply(401, { error: 'Invalid API key' }));

    const error = await upstreamErrorOf(runway.getTask('task-1'));

    expect(error).toMatchObject({ message: 'runway: task lookup answered 401 (Invalid API key)', status: 401, retryable: false });
    expect(server.received).toHaveLength(1);
  });
});

describe('cancelling a Runway task', () => {
  it.each([204, 200, 404])('takes a %i answer as cancelled', async (status) => {
    const { runway, server } = await runwayAnswering(reply(status));

    await expect(runway.cancelTask('task-1')).resolves.toBeUndefined();
    expect(server.received[0]).toMatchObject({ method: 'DELETE', url: '/v1/tasks/task-1' });
  });

  it('retries a 502 and succeeds on the next try', async () => {
    const { runway, server } = await runwayAnswering(inTurn(reply(502), reply(204)));

    await runway.cancelTask('task-1');

    expect(server.received.map((request) => request.method)).toEqual(['DELETE', 'DELETE']);
  });

  it('fails at once on a 400, quoting Runway', async () => {
    const { runway, server } = await runwayAnswering(reply(400, { error: 'Task already finished' }));

    const error = await upstreamErrorOf(runway.cancelTask('task-1'));

    expect(error).toMatchObject({ message: 'runway: cancel answered 400 (Task already finished)', status: 400, retryable: false });
    expect(server.received).toHaveLength(1);
  });
});

describe('uploading a photo to Runway ahead of the task (ephemeral upload)', () => {
  const PHOTO = new Uint8Array([0xff, 0xd8, 0xff, 0xd9]);

  /** Runway's API at `/v1/uploads`, handing out an upload target on the same server at `/bucket`. */
  async function uploadFlow(uploadsAnswer: (self: string) => Script, bucketAnswer: Script): Promise<{ runway: Runway; server: Loopback }> {
    let self = '';
    const result = await runwayAnswering((request, res, index) => {
      if (request.url === '/v1/uploads') uploadsAnswer(self)(request, res, index);
      else bucketAnswer(request, res, index);
    });
    self = result.server.url;
    return result;
  }

  const target = (self: string): Script =>
    reply(200, { uploadUrl: `${self}/bucket`, fields: { key: 'uploads/p.jpg', policy: 'p0l1cy' }, runwayUri: 'runway://uploads/p.jpg' });

  it('asks for an upload target, posts every field and then the file, and returns the runway:// URI', async () => {
    const { runway, server } = await uploadFlow(target, reply(204));

    expect(await runway.uploadEphemeral('p.jpg', PHOTO, 'image/jpeg')).toBe('runway://uploads/p.jpg');

    const [asked, posted] = server.received;
    expect(jsonOf(asked)).toEqual({ filename: 'p.jpg', type: 'ephemeral' });
    expect(posted?.headers['content-type']).toMatch(/^multipart\/form-data; boundary=/);
    const form = posted?.body.toString('latin1') ?? '';
    expect(form.indexOf('name="key"')).toBeLessThan(form.indexOf('name="policy"'));
    expect(form.indexOf('name="policy"')).toBeLessThan(form.indexOf('name="file"; filename="p.jpg"'));
    expect(form).toContain('Content-Type: image/jpeg');
  });

  it('fails without uploading when Runway refuses the upload request', async () => {
    const { runway, server } = await uploadFlow(() => reply(400, { error: 'Unsupported filename' }), reply(204));

    const error = await upstreamErrorOf(runway.uploadEphemeral('p.gif', PHOTO, 'image/gif'));

    expect(error).toMatchObject({ message: 'runway: upload request answered 400 (Unsupported filename)', status: 400, retryable: false });
    expect(server.received.map((request) => request.url)).toEqual(['/v1/uploads']);
  });

  it('fails as retryable, without uploading, when the upload target is not a runway:// upload', async () => {
    const { runway, server } = await uploadFlow(
      (self) => reply(200, { uploadUrl: `${self}/bucket`, fields: {}, runwayUri: 'https://cdn.example/p.jpg' }),
      reply(204),
    );

    const error = await upstreamErrorOf(runway.uploadEphemeral('p.jpg', PHOTO, 'image/jpeg'));

    expect(error).toMatchObject({ message: 'runway: upload request answered an unexpected shape', retryable: true });
    expect(server.received).toHaveLength(1);
  });

  it.each([
    [403, false],
    [503, true],
  ])('fails when the upload target answers %i (retryable: %s)', async (status, retryable) => {
    const { runway } = await uploadFlow(target, reply(status, '<Error><Code>Denied</Code></Error>'));

    const error = await upstreamErrorOf(runway.uploadEphemeral('p.jpg', PHOTO, 'image/jpeg'));

    expect(error).toMatchObject({ message: `runway: ephemeral upload answered ${status}`, status, retryable });
  });

  it('fails as retryable when the upload target drops the connection', async () => {
    const { runway } = await uploadFlow(target, dropConnection);

    const error = await upstreamErrorOf(runway.uploadEphemeral('p.jpg', PHOTO, 'image/jpeg'));

    expect(error).toMatchObject({ message: 'runway: ephemeral upload failed (network error)', retryable: true, status: undefined });
    expect(error.cause).toBeInstanceOf(Error);
  });
});
