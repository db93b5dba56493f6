import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { z } from 'zod';
import { readImageInfo } from '../../lib/media/image-info.js';
import { preparePhoto } from '../../lib/media/prepare-photo.js';
import { grainyPixels, phoneJpeg, withCommentPadding } from '../../test/support/photos.js';
import { median, type Print } from './stats.js';

/**
 * Photo preparation figures: time (median of several runs in this process, sharp already
 * loaded) and peak memory growth (one run in a fresh child process) for a 20 MB 48 MP JPEG
 * and a 3 MB 12 MP phone photo stored sideways with GPS in its EXIF.
 * Targets for 48 MP on a 2-core machine: ≤ 1500 ms and ≤ 120 MB.
 */

const run = promisify(execFile);
const MB = 1024 * 1024;
const RUNS = 5;
const MODEL = 'gen4_turbo';
const CHILD = fileURLToPath(new URL('./ingest-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const childSchema = z.object({
  baselineRssMb: z.number(),
  peakRssMb: z.number(),
  method: z.string(),
  ms: z.number(),
  sentBytes: z.number(),
  sentWidth: z.number(),
  sentHeight: z.number(),
});

interface BenchPhoto {
  readonly label: '48mp' | '12mp';
  readonly bytes: Buffer;
  /** Bytes of image data before any padding. */
  readonly encodedBytes: number;
}

/** Pads a JPEG with comment segments up to `targetBytes`, the way big camera files carry maker notes. */
const padTo = (jpeg: Buffer, targetBytes: number): Buffer =>
  jpeg.length >= targetBytes ? jpeg : withCommentPadding(jpeg, targetBytes - jpeg.length + 4);

/** 8000×6000 with real grain: about 19.7 MB of image data at quality 90, padded to 20 MB. */
async function photo48mp(): Promise<BenchPhoto> {
  const [width, height] = [8000, 6000];
  const jpeg = await sharp(grainyPixels(width, height, 28), { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
  return { label: '48mp', bytes: padTo(jpeg, 20_000_000), encodedBytes: jpeg.length };
}

/** A 12 MP phone photo: 4032×3024 stored sideways, EXIF orientation 6 and GPS, about 3 MB. */
async function photo12mp(): Promise<BenchPhoto> {
  const [width, height] = [4032, 3024];
  const jpeg = await phoneJpeg(grainyPixels(width, height, 14, 2), width, height, { orientation: 6, quality: 90 });
  return { label: '12mp', bytes: padTo(jpeg, 3_000_000), encodedBytes: jpeg.length };
}

async function timeRuns(photo: Buffer): Promise<number> {
  await preparePhoto(photo, MODEL); // loads sharp
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await preparePhoto(photo, MODEL);
    times.push(performance.now() - started);
  }
  return median(times);
}

async function measureInChild(file: string): Promise<z.infer<typeof childSchema>> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', CHILD, file, MODEL], { cwd: ROOT, maxBuffer: MB });
  return childSchema.parse(JSON.parse(stdout.trim().split('\n').pop() ?? '{}'));
}

export async function benchIngest(print: Print): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-ingest-'));
  try {
    for (const photo of [await photo48mp(), await photo12mp()]) {
      const file = path.join(dir, `${photo.label}.jpg`);
      await writeFile(file, photo.bytes);
      const info = readImageInfo(photo.bytes);
      const ms = await timeRuns(photo.bytes);
      const child = await measureInChild(file);
      const { label } = photo;
      print(`ingest_input_${label}`, `${info.width}x${info.height} orientation ${info.orientation}, ${(photo.bytes.length / 1e6).toFixed(1)} MB (${(photo.encodedBytes / 1e6).toFixed(1)} MB image data)`);
      print(`ingest_ms_${label}`, ms, 'ms');
      print(`ingest_rss_growth_mb_${label}`, child.peakRssMb - child.baselineRssMb, 'MB');
      print(`ingest_rss_baseline_mb_${label}`, child.baselineRssMb, 'MB');
      print(`ingest_sent_bytes_${label}`, child.sentBytes, 'bytes');
      print(`ingest_sent_size_${label}`, `${child.sentWidth}x${child.sentHeight}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  await benchIngest((name, value, unit = '') => {
    process.stdout.write(`${name}: ${typeof value === 'number' ? Number(value.toFixed(2)) : value}${unit ? ` ${unit}` : ''}\n`);
  });
}
