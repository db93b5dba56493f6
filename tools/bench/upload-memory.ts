import http from 'node:http';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { parseArgs } from 'node:util';
import { openOutput, putStream } from '../../lib/clients/media-transfer.js';

/**
 * Streamed transfers, Runway output → signed upload URL, run in a process of their own so
 * that the process's memory is theirs alone. Every target gets its own transfer of the same
 * source, all at once. Prints a JSON line: statuses, bytes, seconds, and RSS as seen from
 * inside (tools/bench/run.ts reads those; tools/bench/upload.ts measures from outside).
 *
 * Modes: `node-http` is the worker's path (openOutput → putStream); `bare-pipe` is a bare
 * `http.get` piped into `http.request`, the floor to compare with; `fetch-duplex` is the
 * naive fetch → fetch, for contrast.
 *
 * With `--wait-for-go` it says `ready` once its imports are done and starts on a `go` line,
 * so the parent measures from outside from a settled baseline (tools/bench/upload.ts); it
 * then stays alive until its stdin closes, so the parent can read its peak RSS.
 *
 * usage: upload-memory <sourceUrl> <targetUrl> [mode] [--target <url>]... [--wait-for-go]
 */

const MODES = ['node-http', 'bare-pipe', 'fetch-duplex'] as const;
type Mode = (typeof MODES)[number];

/** Far above any transfer here; a stuck one should fail, not hang the bench. */
const TRANSFER_TIMEOUT_MS = 600_000;
const RSS_SAMPLE_INTERVAL_MS = 20;

interface Transfer {
  readonly status: number;
  readonly bytes: number;
}

async function transferLikeTheWorker(source: string, target: string, signal: AbortSignal): Promise<Transfer> {
  const output = await openOutput(source, TRANSFER_TIMEOUT_MS, signal);
  try {
    const answer = await putStream(target, output.body, { contentLength: output.length, timeoutMs: TRANSFER_TIMEOUT_MS, signal });
    return { status: answer.status, bytes: answer.bytes };
  } finally {
    output.body.destroy();
  }
}

/** The least Node can do: the download piped into the upload, nothing checked. */
function transferByBarePipe(source: string, target: string): Promise<Transfer> {
  return new Promise((resolve, reject) => {
    http
      .get(source, (download) => {
        let bytes = 0;
        download.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
        });
        const length = download.headers['content-length'];
        const upload = http.request(target, { method: 'PUT', headers: { 'content-type': 'video/mp4', ...(length ? { 'content-length': length } : {}) } }, (answer) => {
          answer.resume();
          answer.on('end', () => resolve({ status: answer.statusCode ?? 0, bytes }));
        });
        upload.on('error', reject);
        download.pipe(upload);
      })
      .on('error', reject);
  });
}

async function transferByFetch(source: string, target: string): Promise<Transfer> {
  const download = await fetch(source);
  const length = download.headers.get('content-length');
  const body = Readable.toWeb(Readable.fromWeb(download.body as WebReadableStream<Uint8Array>));
  const answer = await fetch(target, {
    method: 'PUT',
    headers: { 'content-type': 'video/mp4', ...(length ? { 'content-length': length } : {}) },
    body: body as ReadableStream<Uint8Array>,
    duplex: 'half',
  } as RequestInit);
  await answer.text();
  return { status: answer.status, bytes: Number(length ?? 0) };
}

function transferOnce(mode: Mode, source: string, target: string, signal: AbortSignal): Promise<Transfer> {
  if (mode === 'node-http') return transferLikeTheWorker(source, target, signal);
  if (mode === 'bare-pipe') return transferByBarePipe(source, target);
  return transferByFetch(source, target);
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { target: { type: 'string', multiple: true }, 'wait-for-go': { type: 'boolean' } },
});
const [sourceUrl, firstTarget, modeName = 'node-http'] = positionals;
const mode = MODES.find((name) => name === modeName);
if (!sourceUrl || !firstTarget || !mode) {
  throw new Error('usage: upload-memory <sourceUrl> <targetUrl> [node-http|bare-pipe|fetch-duplex] [--target <url>]... [--wait-for-go]');
}
const targets = [firstTarget, ...(values.target ?? [])];

const stdinLines = values['wait-for-go'] === true ? createInterface({ input: process.stdin })[Symbol.asyncIterator]() : undefined;
if (stdinLines) {
  process.stdout.write('ready\n');
  const next = await stdinLines.next();
  if (next.done === true || next.value.trim() !== 'go') throw new Error('upload-memory: expected "go" on stdin');
}

// Sampling from inside only without the parent: its own timer would add to what it measures.
const baselineRss = process.memoryUsage.rss();
let peakRss = baselineRss;
const sampler = stdinLines
  ? undefined
  : setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
    }, RSS_SAMPLE_INTERVAL_MS);

const started = performance.now();
// One signal per transfer, as the worker has one per upload.
const transfers = await Promise.all(targets.map((target) => transferOnce(mode, sourceUrl, target, new AbortController().signal)));
const seconds = (performance.now() - started) / 1000;
clearInterval(sampler);
peakRss = Math.max(peakRss, process.memoryUsage.rss());

const status = transfers.find((transfer) => transfer.status !== 200)?.status ?? 200;
const bytes = transfers.reduce((sum, transfer) => sum + transfer.bytes, 0);
process.stdout.write(`${JSON.stringify({ mode, status, bytes, seconds, baselineRss, peakRss, transfers })}\n`);

// The parent reads the peak (VmHWM) while this process still exists, then closes stdin.
if (stdinLines) while ((await stdinLines.next()).done !== true);
