import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import { startSandbox, type Sandbox } from '../../sandbox/index.js';

/**
 * `npm run generate` as a real child process against the sandbox Runway. Every run starts
 * in beforeAll, side by side (the polls alone take 5 s each), and each test reads its own.
 * Runs tell themselves apart at the sandbox by their prompt.
 */

const TSX = path.resolve('node_modules/.bin/tsx');
const CLI = path.resolve('tools/generate.ts');
const FIXTURES = path.resolve('sandbox/fixtures');
const API_KEY = 'key_generate_test';
/** The sandbox's task takes 8 s: one poll sees it RUNNING, the next SUCCEEDED. */
const GENERATION_MS = 8_000;
/** Runway's floor, and the tool's ceiling here: every poll 5 s after the last. */
const POLL_SECONDS = 5;

interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface CliOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Called on every stdout chunk with everything printed so far. */
  readonly onStdout?: (stdout: string, sendSignal: (signal: NodeJS.Signals) => void) => void;
}

let sandbox: Sandbox;
let workDir: string;

/** A run in progress: `created` settles once it printed its task line (or ended without one). */
interface CliProcess {
  readonly result: Promise<CliRun>;
  readonly created: Promise<void>;
}

function startCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  let markCreated = (): void => undefined;
  const created = new Promise<void>((resolve) => {
    markCreated = resolve;
  });
  const result = runCli(args, {
    ...options,
    onStdout: (stdout, sendSignal) => {
      if (/^task: /m.test(stdout)) markCreated();
      options.onStdout?.(stdout, sendSignal);
    },
  }).finally(markCreated);
  return { result, created };
}

function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliRun> {
  // The developer's own RUNWAY_* settings must not leak into the runs.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('RUNWAY_')));
  const env = {
    ...inherited,
    RUNWAY_API_URL: sandbox.runwayApiUrl,
    RUNWAY_API_KEY: API_KEY,
    RUNWAY_POLL_MAX_SECONDS: String(POLL_SECONDS),
    ...options.env,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, [CLI, ...args], { cwd: options.cwd ?? workDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const guard = setTimeout(() => child.kill('SIGKILL'), 28_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      options.onStdout?.(stdout, (signal) => child.kill(signal));
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr });
    });
  });
}

const fixture = (name: string): string => path.join(FIXTURES, name);
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const promptOf = (request: RecordedRequest): unknown => (request.json as { promptText?: unknown } | undefined)?.promptText;
const createsWithPrompt = (prompt: string): RecordedRequest[] =>
  sandbox.requests().filter((r) => r.method === 'POST' && r.path === '/v1/image_to_video' && promptOf(r) === prompt);
const taskIdIn = (stdout: string): string => {
  const id = /^task: +(\S+) created/m.exec(stdout)?.[1];
  if (id === undefined) throw new Error(`no task line in:\n${stdout}`);
  return id;
};
const stdoutLine = (run: CliRun, prefix: string): string | undefined => run.stdout.split('\n').find((line) => line.startsWith(prefix));
const stderrLines = (run: CliRun): string[] => run.stderr.split('\n').filter((line) => line !== '');

/** A Runway that refuses every create with a 400, as it does a model the account may not use. */
async function startRefusingRunway(): Promise<{ url: string; creates: () => number; server: Server }> {
  let creates = 0;
  const server = createServer((req, res) => {
    req.resume();
    if (req.method === 'POST' && req.url === '/v1/image_to_video') creates += 1;
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'Model gen4.5 is not available to this organization', issues: [] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, creates: () => creates, server };
}

const PROMPTS = {
  portrait: 'A slow push in on the portrait',
  upload: 'Leaves drift across the landscape',
  refused: 'A refused photo',
  interrupted: 'Interrupted before the end',
  missing: 'A photo that is not there',
  notImage: 'A text file',
  badKey: 'A wrong key',
  timeout: 'Slower than the timeout',
} as const;

let refusing: Awaited<ReturnType<typeof startRefusingRunway>>;
/** A second sandbox whose outputs are all a CDN's HTML error page instead of the video. */
let htmlSandbox: Sandbox;
const runs: Record<string, Promise<CliRun>> = {};

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'generate-cli-'));
  sandbox = await startSandbox({
    workerApiKey: 'worker_key_unused',
    runwayApiKey: API_KEY,
    dataDir: path.join(workDir, 'sandbox'),
    runway: { generationMs: GENERATION_MS },
  });
  htmlSandbox = await startSandbox({
    workerApiKey: 'worker_key_unused',
    runwayApiKey: API_KEY,
    dataDir: path.join(workDir, 'html-sandbox'),
    runway: { generationMs: 1_000 },
    faults: { runway: { htmlOutputRate: 1 } },
  });
  refusing = await startRefusingRunway();
  await writeFile(path.join(workDir, 'notes.txt'), 'not a photo\n');
  await writeFile(path.join(workDir, 'runway.env'), `RUNWAY_API_URL=${sandbox.runwayApiUrl}\nRUNWAY_API_KEY=${API_KEY}\n`);
  for (const dir of ['upload-run', 'refused-run', 'interrupted-run', 'html-run', 'timeout-run']) await mkdir(path.join(workDir, dir));

  // The two runs that wait for a whole generation go first; the others start up while they wait between polls.
  const portrait = startCli([
    '--image', fixture('portrait-exif6.jpg'), '--duration', '12', '--prompt', PROMPTS.portrait, '--out', path.join(workDir, 'portrait-video.mp4'),
  ]);
  const upload = startCli(['--image', fixture('landscape.jpg'), '--duration', '5', '--upload', '--prompt', PROMPTS.upload], {
    env: { RUNWAY_MODEL: 'veo3.1_fast' },
    cwd: path.join(workDir, 'upload-run'),
  });
  runs.portrait = portrait.result;
  runs.upload = upload.result;
  await Promise.all([portrait.created, upload.created]);
  runs.refused = runCli(['--image', fixture('refused.jpg'), '--prompt', PROMPTS.refused, '--env-file', path.join(workDir, 'runway.env')], {
    env: { RUNWAY_API_URL: '', RUNWAY_API_KEY: '' },
    cwd: path.join(workDir, 'refused-run'),
  });
  let interrupted = false;
  runs.interrupted = runCli(['--image', fixture('square.png'), '--prompt', PROMPTS.interrupted], {
    cwd: path.join(workDir, 'interrupted-run'),
    onStdout: (stdout, sendSignal) => {
      // Once: a second Ctrl-C exits without waiting for the cancel.
      if (interrupted || !/^task: /m.test(stdout)) return;
      interrupted = true;
      sendSignal('SIGINT');
    },
  });
  runs.timeout = runCli(['--image', fixture('landscape.jpg'), '--prompt', PROMPTS.timeout], {
    env: { RUNWAY_TIMEOUT_SECONDS: '1' },
    cwd: path.join(workDir, 'timeout-run'),
  });
  runs.htmlOutput = runCli(['--image', fixture('landscape.jpg')], {
    env: { RUNWAY_API_URL: htmlSandbox.runwayApiUrl },
    cwd: path.join(workDir, 'html-run'),
  });
  runs.missing = runCli(['--image', path.join(workDir, 'missing.jpg'), '--prompt', PROMPTS.missing]);
  runs.notImage = runCli(['--image', path.join(workDir, 'notes.txt'), '--prompt', PROMPTS.notImage]);
  runs.badKey = runCli(['--image', fixture('landscape.jpg'), '--prompt', PROMPTS.badKey], { env: { RUNWAY_API_KEY: 'key_wrong' } });
  runs.unknownModel = runCli(['--image', fixture('landscape.jpg'), '--model', 'nope']);
  runs.refusedModel = runCli(['--image', fixture('landscape.jpg'), '--model', 'gen4.5'], { env: { RUNWAY_API_URL: refusing.url } });
});

afterAll(async () => {
  await Promise.allSettled(Object.values(runs));
  await sandbox.close();
  await htmlSandbox.close();
  await new Promise((resolve) => refusing.server.close(resolve));
  await rm(workDir, { recursive: true, force: true });
});

describe('a portrait photo with EXIF orientation 6, 12 s asked of the default model', () => {
  it('exits 0 and writes the MP4 Runway produced, byte for byte', async () => {
    const run = await runs.portrait!;
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const video = await readFile(path.join(workDir, 'portrait-video.mp4'));
    expect(video.subarray(4, 8).toString('latin1')).toBe('ftyp');
    expect(sha256(video)).toBe(sandbox.runway.outputSha256(taskIdIn(run.stdout)));
    expect(run.stdout).toContain(`saved:    ${path.join(workDir, 'portrait-video.mp4')} (${video.length.toLocaleString('en-US').replace(/,/g, ' ')} bytes, MP4)`);
  });

  it('sends exactly one create: gen4_turbo, the portrait ratio from the EXIF orientation, 12 s snapped to 10', async () => {
    await runs.portrait;
    const creates = createsWithPrompt(PROMPTS.portrait);
    expect(creates).toHaveLength(1);
    expect(creates[0]?.json).toMatchObject({ model: 'gen4_turbo', ratio: '720:1280', duration: 10 });
    expect(stdoutLine(await runs.portrait!, 'model:')).toBe(
      "model:    gen4_turbo · ratio 720:1280 (closest to the photo's shape) · duration 10 s (asked 12 s; gen4_turbo allows 2-10 s)",
    );
  });

  it('prints the request it sent, with the size of the image in place of its bytes', async () => {
    const run = await runs.portrait!;
    const sent = createsWithPrompt(PROMPTS.portrait)[0]?.json as { promptImage: string };
    const payload = sent.promptImage.slice(sent.promptImage.indexOf(',') + 1);
    const imageBytes = Buffer.from(payload, 'base64').length;
    const printed = /^POST (\S+)\n(\{\n[\s\S]*?\n\})$/m.exec(run.stdout);
    expect(printed?.[1]).toBe(`${sandbox.runwayApiUrl}/v1/image_to_video`);
    expect(JSON.parse(printed?.[2] ?? '{}')).toEqual({
      ...sent,
      promptImage: `data:image/jpeg;base64,… (${imageBytes.toLocaleString('en-US').replace(/,/g, ' ')} bytes)`,
    });
    expect(run.stdout).not.toContain(payload.slice(0, 64));
    expect(run.stdout).not.toMatch(/[A-Za-z0-9+/]{100,}/);
  });

  it('prints one line per poll with the status and progress, and waits the poll schedule between polls', async () => {
    const run = await runs.portrait!;
    const taskId = taskIdIn(run.stdout);
    const pollLines = run.stdout.split('\n').filter((line) => line.startsWith('poll '));
    expect(pollLines).toHaveLength(sandbox.runway.task(taskId)?.polls ?? -1);
    expect(pollLines[0]).toMatch(/^poll 1 · \d+\.\d s · RUNNING \d{1,2}%$/);
    expect(pollLines.at(-1)).toMatch(/^poll \d · \d+\.\d s · SUCCEEDED$/);
    const times = sandbox
      .requests()
      .filter((r) => (r.method === 'POST' && promptOf(r) === PROMPTS.portrait) || (r.method === 'GET' && r.path === `/v1/tasks/${taskId}`))
      .map((r) => r.at);
    expect(times.length).toBe(pollLines.length + 1);
    for (let i = 1; i < times.length; i += 1) expect((times[i] ?? 0) - (times[i - 1] ?? 0)).toBeGreaterThanOrEqual(POLL_SECONDS * 1000 - 50);
  });

  it('prints the estimated credits at create and at the end, and the time taken', async () => {
    const run = await runs.portrait!;
    // gen4_turbo: 5 credits a second, 10 s.
    expect(run.stdout).toMatch(/^task: +\S+ created · estimated 50 credits \(\$0\.50\)$/m);
    // The final figure is Runway's `cost` when the task reports one, else the estimate.
    const answer = await fetch(`${sandbox.runwayApiUrl}/v1/tasks/${taskIdIn(run.stdout)}`, {
      headers: { authorization: `Bearer ${API_KEY}`, 'x-runway-version': '2024-11-06' },
    });
    const reported = ((await answer.json()) as { cost?: { credits: number } }).cost;
    expect(stdoutLine(run, 'credits:')).toBe(
      reported === undefined
        ? 'credits:  50 credits ($0.50) estimated (Runway reported no final cost)'
        : `credits:  ${reported.credits} credits ($${(reported.credits / 100).toFixed(2)}) charged (estimated 50)`,
    );
    const time = /^time: +(\d+\.\d) s in all, (\d+\.\d) s at Runway$/m.exec(run.stdout);
    expect(Number(time?.[2])).toBeGreaterThanOrEqual(GENERATION_MS / 1000);
    expect(Number(time?.[1])).toBeGreaterThanOrEqual(Number(time?.[2]));
  });
});

describe('RUNWAY_MODEL=veo3.1_fast, 5 s asked, --upload, no --out', () => {
  it('uploads the photo to Runway first and creates the task with its runway:// URI, 6 s and no audio', async () => {
    const run = await runs.upload!;
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const task = sandbox.runway.task(taskIdIn(run.stdout));
    expect(task).toMatchObject({ model: 'veo3.1_fast', ratio: '1280:720', duration: 6, promptImageKind: 'runway' });
    const [create] = createsWithPrompt(PROMPTS.upload);
    expect(create?.json).toMatchObject({ audio: false, promptImage: expect.stringMatching(/^runway:\/\//) as unknown });
    expect(sandbox.runway.uploads().map((upload) => upload.runwayUri)).toContain((create?.json as { promptImage: string }).promptImage);
  });

  it('writes <image name>.mp4 in the working directory', async () => {
    const run = await runs.upload!;
    const video = await readFile(path.join(workDir, 'upload-run', 'landscape.mp4'));
    expect(sha256(video)).toBe(sandbox.runway.outputSha256(taskIdIn(run.stdout)));
  });
});

describe('a photo Runway refuses by moderation, the key read from --env-file', () => {
  it('exits 1 with the failure code and what it means, on one line, and writes no video', async () => {
    const run = await runs.refused!;
    expect(run.code).toBe(1);
    expect(run.stderr).toBe("generate: runway: SAFETY.INPUT.IMAGE — the photo was rejected by Runway's content moderation\n");
    expect(run.stdout).toMatch(/^poll 1 · \d+\.\d s · FAILED SAFETY\.INPUT\.IMAGE$/m);
    expect(await readdir(path.join(workDir, 'refused-run'))).toEqual([]);
    expect(createsWithPrompt(PROMPTS.refused)).toHaveLength(1);
  });
});

describe('an output URL that answers an HTML page instead of the video', () => {
  it('refuses it as not a video, exits 1 and writes nothing', async () => {
    const run = await runs.htmlOutput!;
    expect(run.stdout).toMatch(/^poll 1 · \d+\.\d s · SUCCEEDED$/m);
    expect(run.code).toBe(1);
    expect(stderrLines(run)).toEqual([expect.stringMatching(/^generate: output: Runway's output is not a video \(text\/html, [\d.]+ KB\)$/)]);
    expect(htmlSandbox.runway.tasks()[0]?.htmlOutputsServed).toBe(1);
    expect(await readdir(path.join(workDir, 'html-run'))).toEqual([]);
  });
});

describe('Ctrl-C while the task runs', () => {
  it('cancels the task at Runway, then exits 130 saying so', async () => {
    const run = await runs.interrupted!;
    const taskId = taskIdIn(run.stdout);
    expect(run.code).toBe(130);
    expect(stderrLines(run)).toEqual([`generate: interrupted: cancelled Runway task ${taskId}`]);
    expect(sandbox.runway.task(taskId)).toMatchObject({ deleted: true, status: 'CANCELLED' });
    expect(sandbox.requests().filter((r) => r.method === 'DELETE' && r.path === `/v1/tasks/${taskId}`)).toHaveLength(1);
    expect(await readdir(path.join(workDir, 'interrupted-run'))).toEqual([]);
  });
});

describe('a task still running after RUNWAY_TIMEOUT_SECONDS', () => {
  it('cancels it at Runway and exits 1 with the worker\'s timeout message', async () => {
    const run = await runs.timeout!;
    const taskId = taskIdIn(run.stdout);
    expect(run.code).toBe(1);
    expect(stderrLines(run)).toEqual([`generate: runway: timed out after 1 s (last status RUNNING); cancelled Runway task ${taskId}`]);
    expect(sandbox.runway.task(taskId)).toMatchObject({ deleted: true, status: 'CANCELLED', polls: 1 });
    expect(await readdir(path.join(workDir, 'timeout-run'))).toEqual([]);
  });
});

describe('input the tool refuses before calling Runway', () => {
  it('names a missing file and exits 2', async () => {
    const run = await runs.missing!;
    expect(run.code).toBe(2);
    expect(stderrLines(run)).toEqual([`generate: photo: cannot read ${path.join(workDir, 'missing.jpg')} (no such file)`]);
    expect(createsWithPrompt(PROMPTS.missing)).toEqual([]);
  });

  it('says what a file that is not an image is, and exits 1', async () => {
    const run = await runs.notImage!;
    expect(run.code).toBe(1);
    expect(stderrLines(run)).toEqual([`generate: photo: not a JPEG/PNG/WebP image (got text/plain) — ${path.join(workDir, 'notes.txt')}`]);
    expect(createsWithPrompt(PROMPTS.notImage)).toEqual([]);
  });

  it('refuses an unknown model with the list of models, and exits 2', async () => {
    const run = await runs.unknownModel!;
    expect(run.code).toBe(2);
    expect(stderrLines(run)).toEqual(['generate: unknown model "nope": use one of gen4_turbo, gen4.5, veo3.1, veo3.1_fast']);
    expect(run.stdout).toBe('');
  });
});

describe('Runway refusing the create', () => {
  it('reports a wrong key (401) on one line, pointing at RUNWAY_API_KEY, and never polls', async () => {
    const run = await runs.badKey!;
    expect(run.code).toBe(1);
    expect(stderrLines(run)).toEqual(['generate: runway: create answered 401 (Incorrect or missing API key) — check RUNWAY_API_KEY']);
    expect(run.stdout).not.toMatch(/^poll /m);
    expect(createsWithPrompt(PROMPTS.badKey)).toHaveLength(1);
  });

  it("reports a refused model (400) with Runway's own message, and exits 1", async () => {
    const run = await runs.refusedModel!;
    expect(run.code).toBe(1);
    expect(stderrLines(run)).toEqual(['generate: runway: create answered 400 (Model gen4.5 is not available to this organization)']);
    expect(refusing.creates()).toBe(1);
  });
});
