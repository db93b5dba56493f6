import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { startSandbox, type Sandbox } from '../../sandbox/index.js';
import { readFixture } from '../../sandbox/seed.js';
import type { Print } from './stats.js';

/**
 * Memory of the streamed video upload (Runway output → Supabase signed upload URL), measured
 * from outside the process doing it: a child (upload-memory.ts) runs the transfers while this
 * process serves the sandbox's Runway output and storage, samples the child's VmRSS and reads
 * its VmHWM at the end. Growth is that peak over the child's RSS just before the transfers,
 * its imports done. A bare `http.get` → `http.request` pipe, and ten of them at once,
 * measured the same way, are the floor. Storage discards the bytes it receives and keeps
 * their SHA-256, so 1 GB never reaches the disk.
 *
 * Targets: ≤ 48 MB for 300 MB, the same within 8 MB for 30 MB and 1 GB, ≤ 64 MB for ten
 * 300 MB uploads at once; the stored SHA-256 equal to the source's.
 */

const MB = 1024 * 1024;
const RSS_SAMPLE_INTERVAL_MS = 20;
const CONCURRENT_UPLOADS = 10;
/** Growth varies from run to run with where the GCs fall; the median of three is the figure. */
const RUNS_PER_FIGURE = 3;
/** Any key: the sandbox only checks that requests carry the one it was started with. */
const RUNWAY_KEY = 'bench';
const CHILD = fileURLToPath(new URL('./upload-memory.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

type Mode = 'node-http' | 'bare-pipe';

interface Scenario {
  readonly mode: Mode;
  readonly sizeMb: number;
  readonly uploads: number;
}

interface Measurement {
  /** One figure per run, in run order. */
  readonly growthMb: readonly number[];
  readonly mbPerSecond: readonly number[];
  /** Every upload of every run stored (200) the very bytes of the source. */
  readonly sha256Match: boolean;
}

const childResultSchema = z.object({
  seconds: z.number(),
  transfers: z.array(z.object({ status: z.number(), bytes: z.number() })),
});

/** VmRSS or VmHWM of a process, in bytes. */
function memoryOf(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match?.[1]) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(match[1]) * 1024;
}

/** Resets the kernel's peak-RSS mark to the current RSS (Linux: "5" into clear_refs); false where not allowed. */
function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

async function createFinishedTask(runwayApiUrl: string): Promise<{ taskId: string; outputUrl: string }> {
  const photo = await readFixture('landscape.jpg');
  const headers = { authorization: `Bearer ${RUNWAY_KEY}`, 'x-runway-version': '2024-11-06', 'content-type': 'application/json' };
  const created = await fetch(`${runwayApiUrl}/v1/image_to_video`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ model: 'gen4_turbo', promptImage: `data:image/jpeg;base64,${photo.toString('base64')}`, ratio: '1280:720', duration: 5 }),
  });
  const { id } = z.object({ id: z.string() }).parse(await created.json());
  for (;;) {
    const answer = await fetch(`${runwayApiUrl}/v1/tasks/${id}`, { headers });
    const task = z.object({ status: z.string(), output: z.array(z.string()).optional() }).parse(await answer.json());
    const outputUrl = task.output?.[0];
    if (task.status === 'SUCCEEDED' && outputUrl) return { taskId: id, outputUrl };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Runs the child's transfers and watches its memory from here. The baseline is taken once the
 * child says it is ready (imports done); its peak mark is reset then, so the imports' own peak
 * does not count.
 */
async function measureChild(args: readonly string[]): Promise<{ growthBytes: number; result: z.infer<typeof childResultSchema> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args, '--wait-for-go'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async (): Promise<string> => {
    const next = await lines.next();
    if (next.done === true) throw new Error(`upload-memory exited early (code ${String(await exited)})`);
    return next.value;
  };
  try {
    const pid = child.pid;
    if (pid === undefined) throw new Error('upload-memory did not start');
    if ((await nextLine()) !== 'ready') throw new Error('upload-memory did not say ready');
    const exactPeak = resetPeakRss(pid);
    const baseline = memoryOf(pid, 'VmRSS');
    let peak = baseline;
    // The kernel's mark is exact; sampling is the fallback where clear_refs is not writable.
    const sampler = setInterval(() => {
      peak = Math.max(peak, memoryOf(pid, 'VmRSS'));
    }, RSS_SAMPLE_INTERVAL_MS);
    child.stdin.write('go\n');
    let line: string;
    try {
      line = await nextLine();
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, exactPeak ? memoryOf(pid, 'VmHWM') : memoryOf(pid, 'VmRSS'));
    return { growthBytes: peak - baseline, result: childResultSchema.parse(JSON.parse(line)) };
  } finally {
    child.stdin.end();
    if ((await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('running'), 5_000))])) === 'running') child.kill();
  }
}

/** The same transfer `RUNS_PER_FIGURE` times, each in a fresh child, against one sandbox. */
async function measure(scenario: Scenario): Promise<Measurement> {
  const bytes = scenario.sizeMb * MB;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bench-upload-'));
  let sandbox: Sandbox | undefined;
  try {
    sandbox = await startSandbox({
      workerApiKey: RUNWAY_KEY,
      runwayApiKey: RUNWAY_KEY,
      dataDir,
      discardVideoBytes: true,
      maxUploadBytes: 2 * bytes,
      runway: { generationMs: 10, outputBytes: bytes },
    });
    const { storage } = sandbox;
    const { taskId, outputUrl } = await createFinishedTask(sandbox.runwayApiUrl);
    // Hashed here, before the transfers: the output then streams without being hashed again.
    const sourceSha256 = sandbox.runway.outputSha256(taskId);
    const growthMb: number[] = [];
    const mbPerSecond: number[] = [];
    let sha256Match = true;
    for (let run = 0; run < RUNS_PER_FIGURE; run += 1) {
      // Upsert is off: every upload needs a path of its own.
      const paths = Array.from({ length: scenario.uploads }, (_, index) => `videos/bench-${scenario.mode}-${run}-${index}.mp4`);
      const [first, ...more] = paths.map((storagePath) => storage.signUpload('generated-videos', storagePath, 3600));
      if (first === undefined) throw new Error('no upload to measure');
      const { growthBytes, result } = await measureChild([outputUrl, first, scenario.mode, ...more.flatMap((target) => ['--target', target])]);
      growthMb.push(growthBytes / MB);
      mbPerSecond.push((scenario.uploads * scenario.sizeMb) / result.seconds);
      const stored = paths.map((storagePath) => storage.object('generated-videos', storagePath));
      sha256Match &&=
        result.transfers.every((transfer) => transfer.status === 200) &&
        stored.every((object) => object !== undefined && object.size === bytes && object.sha256 === sourceSha256);
    }
    return { growthMb, mbPerSecond, sha256Match };
  } finally {
    await sandbox?.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? NaN) : ((sorted[middle - 1] ?? NaN) + (sorted[middle] ?? NaN)) / 2;
}

const yesNo = (match: boolean): string => (match ? 'yes' : 'no');

/** The median as the figure, and every run beside it: one run alone can be off by 10 MB. */
function printGrowth(print: Print, name: string, measurement: Measurement): void {
  print(name, median(measurement.growthMb), 'MB');
  print(`${name}_runs`, measurement.growthMb.map((mb) => mb.toFixed(1)).join(' / '), 'MB');
}

export async function benchUploadMemory(print: Print): Promise<void> {
  printGrowth(print, 'upload_rss_growth_mb_bare_pipe', await measure({ mode: 'bare-pipe', sizeMb: 300, uploads: 1 }));
  printGrowth(print, 'upload_rss_growth_mb_bare_pipe_10_concurrent', await measure({ mode: 'bare-pipe', sizeMb: 300, uploads: CONCURRENT_UPLOADS }));

  const small = await measure({ mode: 'node-http', sizeMb: 30, uploads: 1 });
  printGrowth(print, 'upload_rss_growth_mb_30mb', small);
  print('upload_sha256_match_30mb', yesNo(small.sha256Match));

  const medium = await measure({ mode: 'node-http', sizeMb: 300, uploads: 1 });
  printGrowth(print, 'upload_rss_growth_mb', medium);
  print('upload_mb_per_s', median(medium.mbPerSecond), 'MB/s');
  print('upload_sha256_match', yesNo(medium.sha256Match));

  const large = await measure({ mode: 'node-http', sizeMb: 1024, uploads: 1 });
  printGrowth(print, 'upload_rss_growth_mb_1gb', large);
  print('upload_sha256_match_1gb', yesNo(large.sha256Match));

  const concurrent = await measure({ mode: 'node-http', sizeMb: 300, uploads: CONCURRENT_UPLOADS });
  printGrowth(print, 'upload_rss_growth_mb_10_concurrent', concurrent);
  print('upload_sha256_match_10_concurrent', yesNo(concurrent.sha256Match));
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  await benchUploadMemory((name, value, unit = '') => {
    process.stdout.write(`${name}: ${typeof value === 'number' ? Number(value.toFixed(2)) : value}${unit ? ` ${unit}` : ''}\n`);
  });
}
