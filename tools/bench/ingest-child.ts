import { readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { RUNWAY_MODELS } from '../../lib/config.js';

/**
 * One photo preparation in a fresh process, so its memory is the preparation's alone.
 * The baseline is taken with the photo already in memory (the worker has downloaded it) and
 * sharp already loaded (libvips is mapped once per process, not per photo). Prints a JSON
 * line: baseline RSS, peak RSS during the preparation, sent size.
 */

const MB = 1024 * 1024;

const statusKb = (field: 'VmRSS' | 'VmHWM'): number => {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  if (!match?.[1]) throw new Error(`/proc/self/status has no ${field}`);
  return Number(match[1]) * 1024;
};

/** Resets the kernel's peak-RSS mark to the current RSS (Linux: "5" into clear_refs). */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

const [file, modelName = 'gen4_turbo'] = process.argv.slice(2);
const model = RUNWAY_MODELS.find((name) => name === modelName);
if (!file || !model) throw new Error('usage: ingest-child <photo file> [model]');

const photo = await readFile(file);
await import('sharp');
const { preparePhoto } = await import('../../lib/media/prepare-photo.js');

// Sampling catches the peak where clear_refs is not writable; the kernel's mark is exact.
const baselineRss = statusKb('VmRSS');
const exactPeak = resetPeakRss();
let sampledPeak = baselineRss;
const sampler = setInterval(() => {
  sampledPeak = Math.max(sampledPeak, process.memoryUsage().rss);
}, 5);
const started = performance.now();
const prepared = await preparePhoto(photo, model);
const ms = performance.now() - started;
clearInterval(sampler);
const peakRss = exactPeak ? statusKb('VmHWM') : Math.max(sampledPeak, process.memoryUsage().rss);

process.stdout.write(
  `${JSON.stringify({
    baselineRssMb: baselineRss / MB,
    peakRssMb: peakRss / MB,
    method: exactPeak ? 'VmHWM' : 'sampled',
    ms,
    sentBytes: prepared.sent.bytes,
    sentWidth: prepared.sent.width,
    sentHeight: prepared.sent.height,
  })}\n`,
);
