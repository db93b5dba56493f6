import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { createRng } from '../../sandbox/random.js';
import { MultipartParser, type MultipartPart } from '../../sandbox/runway-multipart.js';
import {
  API_KEY,
  closeSandboxes,
  createdSchema,
  dataUri,
  download,
  errorOf,
  formOf,
  jpeg,
  organizationSchema,
  PHOTO,
  PNG_1X1,
  sha256,
  startSandbox,
  terminal,
  uploadSchema,
  VERSION,
  type Harness,
} from '../support/sandbox-runway.js';

const FIXTURE = readFileSync(new URL('../../sandbox/fixtures/sample.mp4', import.meta.url));

afterEach(closeSandboxes);

/** A PNG data URI of exactly `chars` characters: the 1x1 PNG followed by zero padding, unpadded base64. */
function pngDataUriOfLength(chars: number): string {
  const prefix = 'data:image/png;base64,';
  const base64Chars = chars - prefix.length;
  const bytes = Math.floor((base64Chars * 3) / 4);
  const payload = Buffer.alloc(bytes);
  PNG_1X1.copy(payload);
  const uri = prefix + payload.toString('base64').replace(/=+$/, '');
  expect(uri.length).toBe(chars);
  return uri;
}

// --- tests ------------------------------------------------------------------

describe('a valid image_to_video request for each supported model', () => {
  it.each([
    {
      model: 'gen4_turbo',
      body: { ratio: '1584:672', duration: 5, promptText: 'waves', seed: 42, contentModeration: { publicFigureThreshold: 'low' } },
      credits: 25,
    },
    { model: 'gen4_turbo', body: { ratio: '960:960' }, credits: 50 },
    { model: 'gen4.5', body: { ratio: '720:1280', duration: 2, promptText: 'a slow pan' }, credits: 24 },
    { model: 'veo3.1', body: { ratio: '1080:1920', duration: 8, audio: false, negativePrompt: 'blur' }, credits: 160 },
    { model: 'veo3.1', body: { ratio: '1920:1080', duration: 4 }, credits: 160 },
    { model: 'veo3.1_fast', body: { ratio: '720:1280', duration: 6, promptText: 'hello' }, credits: 90 },
    { model: 'veo3.1_fast', body: { ratio: '1280:720', audio: false }, credits: 80 },
  ])('accepts $model with $body and estimates $credits credits', async ({ model, body, credits }) => {
    const sandbox = await startSandbox();
    const res = await sandbox.create({ model, promptImage: PHOTO, ...body });
    expect(res.status).toBe(200);
    const created = createdSchema.parse(await res.json());
    expect(created.estimatedCost.credits).toBe(credits);
    expect(sandbox.runway.task(created.id)).toMatchObject({ model, promptImageKind: 'data', credits });
  });

  it('accepts a duration written as 6.0 in the JSON text', async () => {
    const sandbox = await startSandbox();
    const res = await sandbox.api('/v1/image_to_video', {
      body: `{"model":"veo3.1","promptImage":"${PHOTO}","ratio":"1280:720","duration":6.0}`,
    });
    expect(res.status).toBe(200);
  });

  it('accepts a 1000-unit prompt made of surrogate pairs', async () => {
    const sandbox = await startSandbox();
    const res = await sandbox.create({ model: 'gen4_turbo', promptImage: PHOTO, ratio: '1280:720', promptText: '😀'.repeat(500) });
    expect(res.status).toBe(200);
  });

  it('accepts an https URL and a first-frame array as promptImage', async () => {
    const sandbox = await startSandbox();
    const url = await sandbox.create({ model: 'gen4_turbo', promptImage: 'https://photos.example.com/a.jpg', ratio: '1280:720' });
    expect(url.status).toBe(200);
    const frames = await sandbox.create({
      model: 'veo3.1',
      promptImage: [
        { uri: PHOTO, position: 'first' },
        { uri: dataUri(PNG_1X1, 'png'), position: 'last' },
      ],
      ratio: '1280:720',
    });
    expect(frames.status).toBe(200);
    expect(sandbox.runway.tasks().map((task) => task.promptImageKind)).toEqual(['https', 'data']);
  });
});

describe('an image_to_video request breaking a rule', () => {
  const gen4 = { model: 'gen4_turbo', promptImage: PHOTO, ratio: '1280:720' };
  const gen45 = { model: 'gen4.5', promptImage: PHOTO, ratio: '1280:720', duration: 5, promptText: 'go' };
  const veo = { model: 'veo3.1', promptImage: PHOTO, ratio: '1280:720' };
  it.each([
    { rule: 'a veo ratio on gen4_turbo', body: { ...gen4, ratio: '1080:1920' }, path: 'ratio' },
    { rule: 'a gen4 ratio on veo3.1', body: { ...veo, ratio: '960:960' }, path: 'ratio' },
    { rule: 'a missing ratio', body: { model: 'gen4_turbo', promptImage: PHOTO }, path: 'ratio' },
    { rule: 'duration 3 on veo3.1', body: { ...veo, duration: 3 }, path: 'duration' },
    { rule: 'duration 7 on veo3.1_fast', body: { ...veo, model: 'veo3.1_fast', duration: 7 }, path: 'duration' },
    { rule: 'duration 5.5 on veo3.1', body: { ...veo, duration: 5.5 }, path: 'duration' },
    { rule: 'duration 5 on veo3.1', body: { ...veo, duration: 5 }, path: 'duration' },
    { rule: 'duration 5.5 on gen4_turbo', body: { ...gen4, duration: 5.5 }, path: 'duration' },
    { rule: 'duration 11 on gen4_turbo', body: { ...gen4, duration: 11 }, path: 'duration' },
    { rule: 'duration 1 on gen4.5', body: { ...gen45, duration: 1 }, path: 'duration' },
    { rule: 'gen4.5 without a duration', body: { ...gen45, duration: undefined }, path: 'duration' },
    { rule: 'gen4.5 without a prompt', body: { ...gen45, promptText: undefined }, path: 'promptText' },
    { rule: 'a 1001-unit prompt', body: { ...gen4, promptText: `${'😀'.repeat(500)}a` }, path: 'promptText' },
    { rule: 'an empty prompt', body: { ...gen4, promptText: '' }, path: 'promptText' },
    { rule: 'an unknown field', body: { ...gen4, motion: 5 }, path: '' },
    { rule: 'a seed on veo3.1', body: { ...veo, seed: 1 }, path: '' },
    { rule: 'audio on gen4_turbo', body: { ...gen4, audio: true }, path: '' },
    { rule: 'a seed above 4294967295', body: { ...gen4, seed: 4_294_967_296 }, path: 'seed' },
    { rule: 'a negative seed', body: { ...gen4, seed: -1 }, path: 'seed' },
    { rule: 'publicFigureThreshold "high"', body: { ...gen4, contentModeration: { publicFigureThreshold: 'high' } }, path: 'contentModeration.publicFigureThreshold' },
    { rule: 'the non-existent gen4.5_turbo', body: { ...gen45, model: 'gen4.5_turbo' }, path: 'model' },
    { rule: 'the retired gen3a_turbo', body: { ...gen4, model: 'gen3a_turbo' }, path: 'model' },
    { rule: 'the retired veo3', body: { ...veo, model: 'veo3' }, path: 'model' },
    { rule: 'a missing promptImage', body: { model: 'gen4_turbo', ratio: '1280:720' }, path: 'promptImage' },
    { rule: 'an http URL', body: { ...gen4, promptImage: 'http://photos.example.com/a.jpg' }, path: 'promptImage' },
    { rule: 'a GIF data URI', body: { ...gen4, promptImage: 'data:image/gif;base64,R0lGODlh' }, path: 'promptImage' },
    { rule: 'a URL over 2048 characters', body: { ...gen4, promptImage: `https://a.example.com/${'x'.repeat(2030)}` }, path: 'promptImage' },
    { rule: 'a last frame on gen4_turbo', body: { ...gen4, promptImage: [{ uri: PHOTO, position: 'last' }] }, path: 'promptImage' },
  ])('rejects $rule with 400 naming "$path"', async ({ body, path }) => {
    const sandbox = await startSandbox();
    const res = await sandbox.create(body);
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.issues?.map((issue) => issue.path.join('.'))).toContain(path);
    expect(error.error.length).toBeGreaterThan(0);
    expect(sandbox.runway.tasks()).toHaveLength(0);
  });

  it('rejects a data URI whose bytes are not an image', async () => {
    const sandbox = await startSandbox();
    const res = await sandbox.create({ ...gen4, promptImage: dataUri(Buffer.from('GIF89a not really')) });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).issues?.[0]).toMatchObject({ code: 'ASSET.INVALID', path: ['promptImage'] });
  });

  it('rejects a runway:// URI it never issued', async () => {
    const sandbox = await startSandbox();
    const res = await sandbox.create({ ...gen4, promptImage: 'runway://ephemeral/00000000-0000-4000-8000-000000000000' });
    expect(res.status).toBe(400);
  });

  it('rejects a body that is not JSON, or not sent as JSON', async () => {
    const sandbox = await startSandbox();
    expect((await sandbox.api('/v1/image_to_video', { body: '{"model":' })).status).toBe(400);
    const plain = await sandbox.api('/v1/image_to_video', { body: JSON.stringify(gen4), headers: { 'content-type': 'text/plain' } });
    expect(plain.status).toBe(400);
  });
});

describe('a data URI promptImage near the 5,242,880-character limit', () => {
  it('accepts a data URI of exactly 5,242,880 characters', async () => {
    const sandbox = await startSandbox();
    const res = await sandbox.create({ model: 'gen4_turbo', promptImage: pngDataUriOfLength(5_242_880), ratio: '1280:720' });
    expect(res.status).toBe(200);
  });

  it('rejects one character more with the misleading 2048-character message', async () => {
    const sandbox = await startSandbox();
    const res = await sandbox.create({ model: 'gen4_turbo', promptImage: pngDataUriOfLength(5_242_881), ratio: '1280:720' });
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.error).toBe('promptImage: String must contain at most 2048 character(s)');
    expect(error.issues).toEqual([{ code: 'too_big', path: ['promptImage'], message: 'String must contain at most 2048 character(s)' }]);
  });
});

describe('a /v1 request without the right headers', () => {
  const routes = [
    { method: 'GET', path: '/v1/organization' },
    { method: 'GET', path: '/v1/tasks/00000000-0000-4000-8000-000000000000' },
    { method: 'POST', path: '/v1/image_to_video' },
    { method: 'POST', path: '/v1/uploads' },
  ];
  it.each(routes)('answers 401 to $method $path without a Bearer key', async ({ method, path }) => {
    const sandbox = await startSandbox();
    const res = await fetch(`${sandbox.base}${path}`, { method, headers: { 'x-runway-version': VERSION } });
    expect(res.status).toBe(401);
  });

  it.each(routes)('answers 401 to $method $path with the wrong key', async ({ method, path }) => {
    const sandbox = await startSandbox();
    const res = await sandbox.api(path, { method, headers: { authorization: 'Bearer key_wrong' } });
    expect(res.status).toBe(401);
  });

  it.each(routes)('answers 400 to $method $path without X-Runway-Version', async ({ method, path }) => {
    const sandbox = await startSandbox();
    const res = await fetch(`${sandbox.base}${path}`, { method, headers: { authorization: `Bearer ${API_KEY}` } });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).error).toContain('X-Runway-Version');
  });

  it('answers 400 to another API version', async () => {
    const sandbox = await startSandbox();
    const res = await sandbox.api('/v1/organization', { headers: { 'x-runway-version': '2024-09-13' } });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).error).toContain(VERSION);
  });
});

describe('a task that runs to completion', () => {
  it('goes PENDING, then RUNNING with growing progress, then SUCCEEDED with an output URL', async () => {
    const sandbox = await startSandbox({ generationMs: 1500 });
    const id = await sandbox.createTask();
    const seen = await sandbox.waitFor(id, terminal);
    const statuses = seen.map((task) => task.status).filter((status, index, all) => status !== all[index - 1]);
    expect(statuses).toEqual(['PENDING', 'RUNNING', 'SUCCEEDED']);
    const progress = seen.filter((task) => task.status === 'RUNNING').map((task) => task.progress ?? -1);
    expect(progress.every((value) => value >= 0 && value < 1)).toBe(true);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
    const last = seen.at(-1);
    expect(last?.output).toHaveLength(1);
    expect(last?.output?.[0]).toMatch(new RegExp(`^${sandbox.base}/outputs/${id}\\.mp4\\?exp=\\d+&sig=[\\w-]+$`));
    expect(last?.failure).toBeUndefined();
    expect(sandbox.runway.task(id)).toMatchObject({ status: 'SUCCEEDED', polls: seen.length, deleted: false });
  });

  it('hands out a fresh output URL on every GET', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sandbox.createTask();
    const first = await sandbox.getTask(id);
    const second = await sandbox.getTask(id);
    expect(first.output?.[0]).toBeDefined();
    expect(first.output?.[0]).not.toBe(second.output?.[0]);
  });

  it('serves the sample clip as video/mp4 with the sha256 it reports', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sandbox.createTask();
    const url = (await sandbox.getTask(id)).output?.[0] ?? '';
    const { status, bytes, headers } = await download(url);
    expect(status).toBe(200);
    expect(headers.get('content-type')).toBe('video/mp4');
    expect(headers.get('content-length')).toBe(String(FIXTURE.length));
    expect(bytes.toString('latin1', 4, 8)).toBe('ftyp');
    expect(sha256(bytes)).toBe(sha256(FIXTURE));
    expect(sandbox.runway.outputSha256(id)).toBe(sha256(bytes));
    expect(sandbox.runway.task(id)).toMatchObject({ outputBytes: FIXTURE.length, outputSha256: sha256(FIXTURE) });
  });

  it('keeps the sample clip under 100 KB', () => {
    expect(FIXTURE.length).toBeLessThan(100 * 1024);
  });
});

describe('outputs of a configured size', () => {
  it('streams exactly outputBytes of MP4-typed, per-task deterministic bytes', async () => {
    const outputBytes = 3 * 1024 * 1024 + 17;
    const sandbox = await startSandbox({ generationMs: 0, outputBytes });
    const first = await sandbox.createTask();
    const second = await sandbox.createTask();
    const a = await download((await sandbox.getTask(first)).output?.[0] ?? '');
    const again = await download((await sandbox.getTask(first)).output?.[0] ?? '');
    const b = await download((await sandbox.getTask(second)).output?.[0] ?? '');
    expect(a.bytes.length).toBe(outputBytes);
    expect(a.headers.get('content-length')).toBe(String(outputBytes));
    expect(a.bytes.toString('latin1', 4, 12)).toBe('ftypisom');
    expect(a.bytes.toString('latin1', 36, 40)).toBe('mdat');
    expect(sha256(again.bytes)).toBe(sha256(a.bytes));
    expect(sha256(b.bytes)).not.toBe(sha256(a.bytes));
    expect(sandbox.runway.outputSha256(first)).toBe(sha256(a.bytes));
    expect(sandbox.runway.outputSha256(second)).toBe(sha256(b.bytes));
  });

  it('reports the same sha256 whether asked before or after the download', async () => {
    const sandbox = await startSandbox({ generationMs: 0, outputBytes: 1_000_000 });
    const id = await sandbox.createTask();
    const early = sandbox.runway.outputSha256(id);
    const { bytes } = await download((await sandbox.getTask(id)).output?.[0] ?? '');
    expect(sha256(bytes)).toBe(early);
  });
});

describe('an output URL that is no longer valid', () => {
  it('answers 403 once the URL has expired', async () => {
    const sandbox = await startSandbox({ generationMs: 0, outputUrlTtlMs: 50 });
    const id = await sandbox.createTask();
    const url = (await sandbox.getTask(id)).output?.[0] ?? '';
    await sleep(100);
    expect((await download(url)).status).toBe(403);
  });

  it('answers 403 when the expiry or the signature was altered', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sandbox.createTask();
    const url = new URL((await sandbox.getTask(id)).output?.[0] ?? '');
    const later = new URL(url);
    later.searchParams.set('exp', String(Number(url.searchParams.get('exp')) + 1000));
    const forged = new URL(url);
    forged.searchParams.set('sig', 'x'.repeat(43));
    expect((await download(later.href)).status).toBe(403);
    expect((await download(forged.href)).status).toBe(403);
    expect((await download(url.href)).status).toBe(200);
  });

  it('answers 404 once the task was deleted', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sandbox.createTask();
    const url = (await sandbox.getTask(id)).output?.[0] ?? '';
    expect((await sandbox.api(`/v1/tasks/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await download(url)).status).toBe(404);
  });
});

describe('DELETE /v1/tasks/{id}', () => {
  it('cancels a running task, which then answers 404', async () => {
    const sandbox = await startSandbox({ generationMs: 60_000 });
    const id = await sandbox.createTask();
    const res = await sandbox.api(`/v1/tasks/${id}`, { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect((await sandbox.api(`/v1/tasks/${id}`)).status).toBe(404);
    expect(sandbox.runway.task(id)).toMatchObject({ status: 'CANCELLED', deleted: true, polls: 1 });
  });

  it('deletes a finished task without changing its outcome', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sandbox.createTask();
    expect((await sandbox.api(`/v1/tasks/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await sandbox.api(`/v1/tasks/${id}`)).status).toBe(404);
    expect(sandbox.runway.task(id)).toMatchObject({ status: 'SUCCEEDED', deleted: true });
  });

  it('answers 404 to a second delete and to an unknown id', async () => {
    const sandbox = await startSandbox();
    const id = await sandbox.createTask();
    expect((await sandbox.api(`/v1/tasks/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await sandbox.api(`/v1/tasks/${id}`, { method: 'DELETE' })).status).toBe(404);
    expect((await sandbox.api('/v1/tasks/00000000-0000-4000-8000-000000000000', { method: 'DELETE' })).status).toBe(404);
  });
});

describe('an ephemeral upload', () => {
  async function requestUpload(sandbox: Harness, filename = 'photo.jpg'): Promise<z.infer<typeof uploadSchema>> {
    const res = await sandbox.api('/v1/uploads', { body: { filename, type: 'ephemeral' } });
    expect(res.status).toBe(200);
    return uploadSchema.parse(await res.json());
  }

  it('round-trips: upload slot, multipart POST, then the runway:// URI works as promptImage', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const upload = await requestUpload(sandbox);
    expect(upload.uploadUrl).toMatch(new RegExp(`^${sandbox.base}/upload-target/`));
    expect(Object.keys(upload.fields)).toEqual(expect.arrayContaining(['key', 'policy']));

    const before = await sandbox.create({ model: 'gen4_turbo', promptImage: upload.runwayUri, ratio: '1280:720' });
    expect(before.status).toBe(400);

    const photo = Buffer.concat([jpeg(), Buffer.alloc(5 * 1024 * 1024, 7)]);
    const posted = await fetch(upload.uploadUrl, { method: 'POST', body: formOf(upload.fields, photo) });
    expect(posted.status).toBe(204);
    expect(sandbox.runway.uploads()).toEqual([{ runwayUri: upload.runwayUri, filename: 'photo.jpg', bytes: photo.length }]);

    const id = await sandbox.createTask({ model: 'gen4.5', promptImage: upload.runwayUri, ratio: '832:1104', duration: 4, promptText: 'hi' });
    expect((await sandbox.getTask(id)).status).toBe('SUCCEEDED');
    expect(sandbox.runway.task(id)).toMatchObject({ promptImageKind: 'runway', ratio: '832:1104', duration: 4 });

    const target = sandbox.records.find((request) => request.path.startsWith('/upload-target/'));
    expect(target).toMatchObject({ service: 'runway', method: 'POST', json: undefined });
    expect(target?.bytes).toBeGreaterThan(photo.length);
  });

  it('refuses a POST missing one of the fields', async () => {
    const sandbox = await startSandbox();
    const upload = await requestUpload(sandbox);
    const rest = Object.fromEntries(Object.entries(upload.fields).filter(([name]) => name !== 'policy'));
    const res = await fetch(upload.uploadUrl, { method: 'POST', body: formOf(rest, jpeg()) });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("field named 'policy'");
    expect(sandbox.runway.uploads()).toHaveLength(0);
  });

  it('refuses a POST whose field was changed, or that adds a field', async () => {
    const sandbox = await startSandbox();
    const upload = await requestUpload(sandbox);
    const changed = await fetch(upload.uploadUrl, { method: 'POST', body: formOf({ ...upload.fields, key: 'elsewhere' }, jpeg()) });
    expect(changed.status).toBe(403);
    const extra = await fetch(upload.uploadUrl, { method: 'POST', body: formOf({ ...upload.fields, acl: 'public-read' }, jpeg()) });
    expect(extra.status).toBe(403);
  });

  it('refuses a POST with the file before the fields, without a file, or not multipart', async () => {
    const sandbox = await startSandbox();
    const upload = await requestUpload(sandbox);
    const fileFirst = new FormData();
    fileFirst.append('file', new Blob([new Uint8Array(jpeg())]), 'photo.jpg');
    for (const [name, value] of Object.entries(upload.fields)) fileFirst.append(name, value);
    expect((await fetch(upload.uploadUrl, { method: 'POST', body: fileFirst })).status).toBe(400);
    expect((await fetch(upload.uploadUrl, { method: 'POST', body: formOf(upload.fields, undefined) })).status).toBe(400);
    expect((await fetch(upload.uploadUrl, { method: 'POST', body: new Uint8Array(jpeg()) })).status).toBe(412);
    expect(sandbox.runway.uploads()).toHaveLength(0);
  });

  it('accepts the upload of a non-image but refuses it as promptImage', async () => {
    const sandbox = await startSandbox();
    const upload = await requestUpload(sandbox, 'notes.txt');
    expect((await fetch(upload.uploadUrl, { method: 'POST', body: formOf(upload.fields, Buffer.from('hello')) })).status).toBe(204);
    const res = await sandbox.create({ model: 'gen4_turbo', promptImage: upload.runwayUri, ratio: '1280:720' });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).issues?.[0]?.code).toBe('ASSET.INVALID');
  });

  it('fails the task of an uploaded photo carrying a failure marker', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const upload = await requestUpload(sandbox);
    const photo = jpeg('runway-sandbox:SAFETY.INPUT.IMAGE');
    expect((await fetch(upload.uploadUrl, { method: 'POST', body: formOf(upload.fields, photo) })).status).toBe(204);
    const id = await sandbox.createTask({ model: 'veo3.1_fast', promptImage: upload.runwayUri, ratio: '720:1280' });
    expect(await sandbox.getTask(id)).toMatchObject({ status: 'FAILED', failureCode: 'SAFETY.INPUT.IMAGE' });
  });

  it('rejects an upload request that is not ephemeral or has no filename', async () => {
    const sandbox = await startSandbox();
    expect((await sandbox.api('/v1/uploads', { body: { filename: 'a.jpg', type: 'permanent' } })).status).toBe(400);
    expect((await sandbox.api('/v1/uploads', { body: { type: 'ephemeral' } })).status).toBe(400);
  });
});

describe('a photo carrying a failure marker', () => {
  it('ends FAILED with the marked code and Runway-style moderation text', async () => {
    const sandbox = await startSandbox({ generationMs: 200 });
    const id = await sandbox.createTask({
      model: 'gen4_turbo',
      promptImage: dataUri(jpeg('runway-sandbox:SAFETY.INPUT.IMAGE')),
      ratio: '720:1280',
    });
    const seen = await sandbox.waitFor(id, terminal);
    expect(seen.at(-1)).toMatchObject({
      status: 'FAILED',
      failureCode: 'SAFETY.INPUT.IMAGE',
      failure: 'Content moderation rejected the input image.',
    });
    expect(seen.at(-1)?.output).toBeUndefined();
    expect(sandbox.runway.task(id)).toMatchObject({ status: 'FAILED', failureCode: 'SAFETY.INPUT.IMAGE', outputSha256: undefined });
  });

  it('passes other codes through with a sensible failure text', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sandbox.createTask({
      model: 'gen4_turbo',
      promptImage: dataUri(jpeg('runway-sandbox:INTERNAL.BAD_OUTPUT.CODE01')),
      ratio: '1280:720',
    });
    const task = await sandbox.getTask(id);
    expect(task).toMatchObject({ status: 'FAILED', failureCode: 'INTERNAL.BAD_OUTPUT.CODE01' });
    expect(task.failure).toMatch(/\w+/);
  });
});

describe('faults at rate 1', () => {
  it('answers 502 on every /v1 route with error502Rate', async () => {
    const sandbox = await startSandbox({ faults: { error502Rate: 1 } });
    expect((await sandbox.create({ model: 'gen4_turbo', promptImage: PHOTO, ratio: '1280:720' })).status).toBe(502);
    expect((await sandbox.api('/v1/organization')).status).toBe(502);
    expect((await sandbox.api('/v1/tasks/00000000-0000-4000-8000-000000000000')).status).toBe(502);
    expect(sandbox.runway.tasks()).toHaveLength(0);
  });

  it('answers 429 with the daily-limit message on create with create429Rate', async () => {
    const sandbox = await startSandbox({ faults: { create429Rate: 1 } });
    const res = await sandbox.create({ model: 'gen4_turbo', promptImage: PHOTO, ratio: '1280:720' });
    expect(res.status).toBe(429);
    expect((await errorOf(res)).error).toContain('daily task limit');
    expect(sandbox.runway.tasks()).toHaveLength(0);
    expect((await sandbox.api('/v1/organization')).status).toBe(200);
  });

  it('ends every task FAILED with SAFETY.OUTPUT.VIDEO with safetyRate', async () => {
    const sandbox = await startSandbox({ generationMs: 100, faults: { safetyRate: 1 } });
    const id = await sandbox.createTask();
    const seen = await sandbox.waitFor(id, terminal);
    expect(seen.at(-1)).toMatchObject({ status: 'FAILED', failureCode: 'SAFETY.OUTPUT.VIDEO' });
  });

  it('keeps every task RUNNING below progress 1 with neverFinishRate', async () => {
    const sandbox = await startSandbox({ generationMs: 100, faults: { neverFinishRate: 1 } });
    const id = await sandbox.createTask();
    await sleep(50);
    const early = await sandbox.getTask(id);
    await sleep(400);
    const late = await sandbox.getTask(id);
    expect(late.status).toBe('RUNNING');
    expect(late.progress ?? 1).toBeLessThan(1);
    expect(late.progress ?? 0).toBeGreaterThanOrEqual(early.progress ?? 0);
    expect(late.output).toBeUndefined();
  });

  it('answers 403 to the first GET of each output URL with outputForbiddenRate, then serves it', async () => {
    const sandbox = await startSandbox({ generationMs: 0, faults: { outputForbiddenRate: 1 } });
    const id = await sandbox.createTask();
    const url = (await sandbox.getTask(id)).output?.[0] ?? '';
    expect((await download(url)).status).toBe(403);
    const retry = await download(url);
    expect(retry.status).toBe(200);
    expect(sha256(retry.bytes)).toBe(sandbox.runway.outputSha256(id));
  });

  it('replays the same faults from the same seed', async () => {
    const run = async (): Promise<number[]> => {
      const sandbox = await startSandbox({ rng: createRng(7), faults: { error502Rate: 0.5 } });
      const statuses: number[] = [];
      for (let i = 0; i < 12; i += 1) statuses.push((await sandbox.api('/v1/organization')).status);
      return statuses;
    };
    const first = await run();
    expect(first).toContain(502);
    expect(first).toContain(200);
    expect(await run()).toEqual(first);
  });
});

describe('GET /v1/organization', () => {
  it('reports the tier per model, today\'s generations and credits held by live tasks', async () => {
    const sandbox = await startSandbox({ generationMs: 60_000 });
    const before = organizationSchema.parse(await (await sandbox.api('/v1/organization')).json());
    await sandbox.createTask({ model: 'veo3.1', promptImage: PHOTO, ratio: '1280:720', duration: 4 });
    const after = organizationSchema.parse(await (await sandbox.api('/v1/organization')).json());
    expect(Object.keys(after.tier.models).sort()).toEqual(['gen4.5', 'gen4_turbo', 'veo3.1', 'veo3.1_fast']);
    expect(after.tier.models['veo3.1']?.maxConcurrentGenerations).toBeGreaterThan(0);
    expect(after.usage.models['veo3.1']?.dailyGenerations).toBe(1);
    expect(after.usage.models.gen4_turbo?.dailyGenerations).toBe(0);
    expect(before.creditBalance - after.creditBalance).toBe(160);
  });
});

describe('the request record', () => {
  it('records every request relative to the mount, with parsed JSON and byte size', async () => {
    const sandbox = await startSandbox();
    const body = { model: 'gen4_turbo', promptImage: PHOTO, ratio: '1280:720' };
    const id = await sandbox.createTask(body);
    await sandbox.api(`/v1/tasks/${id}?poll=1`);
    expect(sandbox.records.map((request) => `${request.method} ${request.path}`)).toEqual([
      'POST /v1/image_to_video',
      `GET /v1/tasks/${id}?poll=1`,
    ]);
    expect(sandbox.records[0]).toMatchObject({
      service: 'runway',
      json: body,
      bytes: Buffer.byteLength(JSON.stringify(body)),
      headers: expect.objectContaining({ 'x-runway-version': VERSION }) as unknown,
    });
    expect(sandbox.records[1]).toMatchObject({ json: undefined, bytes: 0 });
  });
});

describe('requests the API does not know', () => {
  it('answers 404 to an unknown route and 405 to a wrong method', async () => {
    const sandbox = await startSandbox();
    expect((await sandbox.api('/v1/text_to_speech', { body: {} })).status).toBe(404);
    expect((await sandbox.api('/v1/image_to_video')).status).toBe(405);
  });

  it('answers 500 JSON instead of crashing when something throws', async () => {
    const sandbox = await startSandbox({
      publicBaseUrl: () => {
        throw new Error('not listening yet');
      },
    });
    const res = await sandbox.api('/v1/uploads', { body: { filename: 'a.jpg', type: 'ephemeral' } });
    expect(res.status).toBe(500);
    expect((await errorOf(res)).error).toBe('Internal server error');
    expect((await sandbox.api('/v1/organization')).status).toBe(200);
  });
});

describe('the streaming multipart parser', () => {
  it('yields the same parts however the body is split into chunks', () => {
    const boundary = 'XyZ';
    const body = Buffer.from(
      `preamble\r\n--${boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\nuploads/a b\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n` +
        `line1\r\n--Xy still data\r\n--${boundary}--\r\nepilogue`,
      'latin1',
    );
    const parse = (chunkBytes: number): string[] => {
      const events: string[] = [];
      let data = '';
      const parser = new MultipartParser(boundary, {
        onPartStart(part: MultipartPart) {
          events.push(`start ${part.name} ${part.filename ?? '-'} ${part.contentType ?? '-'}`);
        },
        onPartData(chunk) {
          data += chunk.toString('latin1');
        },
        onPartEnd() {
          events.push(`data ${JSON.stringify(data)}`);
          data = '';
        },
      });
      for (let offset = 0; offset < body.length; offset += chunkBytes) parser.write(body.subarray(offset, offset + chunkBytes));
      parser.end();
      return events;
    };
    const whole = parse(body.length);
    expect(whole).toEqual([
      'start key - -',
      'data "uploads/a b"',
      'start file p.jpg image/jpeg',
      `data ${JSON.stringify('line1\r\n--Xy still data')}`,
    ]);
    for (const size of [1, 2, 3, 5, 7, 11]) expect(parse(size)).toEqual(whole);
  });

  it('throws when the body ends before the closing boundary', () => {
    const parser = new MultipartParser('b', { onPartStart() {}, onPartData() {}, onPartEnd() {} });
    parser.write(Buffer.from('--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nvalue'));
    expect(() => parser.end()).toThrow(/closing boundary/);
  });
});
