/** The sandbox Runway on a real loopback server, with the schemas and photos its tests share. */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import { z } from 'zod';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import { createSandboxRunway, type SandboxRunway, type SandboxRunwayOptions } from '../../sandbox/runway.js';
import { jpeg as jpegImage } from './images.js';

export const API_KEY = 'key_sandbox_test';
export const VERSION = '2024-11-06';

export const createdSchema = z.strictObject({ id: z.uuid(), estimatedCost: z.strictObject({ credits: z.number() }) });
export const taskSchema = z.strictObject({
  id: z.uuid(),
  status: z.enum(['PENDING', 'THROTTLED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED']),
  createdAt: z.iso.datetime(),
  progress: z.number().min(0).max(1).optional(),
  output: z.array(z.string()).optional(),
  failure: z.string().optional(),
  failureCode: z.string().optional(),
  estimatedCost: z.strictObject({ credits: z.number() }).optional(),
  cost: z.strictObject({ credits: z.number() }).optional(),
});
export type TaskBody = z.infer<typeof taskSchema>;
export const errorSchema = z.object({
  error: z.string(),
  issues: z.array(z.object({ code: z.string(), path: z.array(z.union([z.string(), z.number()])), message: z.string() })).optional(),
});
export const uploadSchema = z.strictObject({
  uploadUrl: z.string(),
  fields: z.record(z.string(), z.string()),
  runwayUri: z.string().startsWith('runway://'),
});
export const organizationSchema = z.object({
  creditBalance: z.number(),
  tier: z.object({
    models: z.record(z.string(), z.object({ maxConcurrentGenerations: z.number(), maxDailyGenerations: z.number() })),
  }),
  usage: z.object({ models: z.record(z.string(), z.object({ dailyGenerations: z.number() })) }),
});

// --- images -----------------------------------------------------------------

/** Puts a comment (COM) segment right after the start-of-image marker of a JPEG. */
export function withComment(image: Uint8Array, comment: string): Buffer {
  const text = Buffer.from(comment, 'latin1');
  const header = Buffer.from([0xff, 0xfe, 0, 0]);
  header.writeUInt16BE(text.length + 2, 2);
  const bytes = Buffer.from(image);
  return Buffer.concat([bytes.subarray(0, 2), header, text, bytes.subarray(2)]);
}

/** A real, decodable 64×48 grey JPEG, optionally carrying a comment. */
export function jpeg(comment?: string): Buffer {
  return comment === undefined ? Buffer.from(jpegImage()) : withComment(jpegImage(), comment);
}

/** A JPEG as far as the magic number goes, and nothing more: no frame, no pixels. */
export function magicOnlyJpeg(): Buffer {
  return Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x02, 0xff, 0xd9]);
}

export const PNG_1X1 = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
  'base64',
);

export function dataUri(bytes: Buffer, type = 'jpeg'): string {
  return `data:image/${type};base64,${bytes.toString('base64')}`;
}

export const PHOTO = dataUri(jpeg());

// --- server -----------------------------------------------------------------

export interface Harness {
  readonly runway: SandboxRunway;
  readonly records: RecordedRequest[];
  readonly base: string;
  api(path: string, init?: { method?: string; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  create(body: Record<string, unknown>): Promise<Response>;
  createTask(body?: Record<string, unknown>): Promise<string>;
  getTask(id: string): Promise<TaskBody>;
  waitFor(id: string, done: (task: TaskBody) => boolean, timeoutMs?: number): Promise<TaskBody[]>;
  /** Asks for an ephemeral upload slot and POSTs `file` to it; returns the runway:// URI. */
  upload(file: Buffer, filename?: string): Promise<string>;
}

const closers: (() => Promise<void>)[] = [];

/** Closes every server started so far; run it after each test. */
export async function closeSandboxes(): Promise<void> {
  await Promise.all(closers.splice(0).map((close) => close()));
}

export async function startSandbox(options: Partial<SandboxRunwayOptions> = {}): Promise<Harness> {
  const records: RecordedRequest[] = [];
  let base = '';
  const runway = createSandboxRunway({
    apiKey: API_KEY,
    publicBaseUrl: () => base,
    record: (request) => records.push(request),
    generationMs: 300,
    ...options,
  });
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/runway/')) {
      void runway.handle(req, res, url.slice('/runway'.length));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server has no port');
  base = `http://127.0.0.1:${String(address.port)}/runway`;
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );

  const api: Harness['api'] = (path, init = {}) =>
    fetch(`${base}${path}`, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers: {
        authorization: `Bearer ${API_KEY}`,
        'x-runway-version': VERSION,
        ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...init.headers,
      },
      ...(init.body === undefined ? {} : { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) }),
    });
  const create: Harness['create'] = (body) => api('/v1/image_to_video', { body });
  const getTask: Harness['getTask'] = async (id) => {
    const res = await api(`/v1/tasks/${id}`);
    expect(res.status).toBe(200);
    return taskSchema.parse(await res.json());
  };
  return {
    runway,
    records,
    base,
    api,
    create,
    async createTask(body = { model: 'gen4_turbo', promptImage: PHOTO, ratio: '1280:720' }) {
      const res = await create(body);
      expect(res.status).toBe(200);
      return createdSchema.parse(await res.json()).id;
    },
    getTask,
    async waitFor(id, done, timeoutMs = 5000) {
      const seen: TaskBody[] = [];
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const task = await getTask(id);
        seen.push(task);
        if (done(task)) return seen;
        await sleep(20);
      }
      throw new Error(`task ${id} did not reach the expected state; last seen ${JSON.stringify(seen.at(-1))}`);
    },
    async upload(file, filename = 'photo.jpg') {
      const slot = uploadSchema.parse(await (await api('/v1/uploads', { body: { filename, type: 'ephemeral' } })).json());
      const posted = await fetch(slot.uploadUrl, { method: 'POST', body: formOf(slot.fields, file, filename) });
      expect(posted.status).toBe(204);
      return slot.runwayUri;
    },
  };
}

/** The multipart body of an upload: every field of the slot, then the file. */
export function formOf(fields: Record<string, string>, file: Buffer | undefined, filename = 'photo.jpg'): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  if (file !== undefined) form.append('file', new Blob([new Uint8Array(file)], { type: 'image/jpeg' }), filename);
  return form;
}

export const terminal = (task: TaskBody): boolean => task.status === 'SUCCEEDED' || task.status === 'FAILED';

export async function errorOf(res: Response): Promise<z.infer<typeof errorSchema>> {
  return errorSchema.parse(await res.json());
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function download(url: string): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const res = await fetch(url);
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}
