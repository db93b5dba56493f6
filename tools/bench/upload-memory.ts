import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { openOutput, putStream } from '../../lib/clients/media-transfer.js';

/**
 * One streamed transfer, Runway output → signed upload URL, in its own process so its
 * memory is the worker's alone. Prints a JSON line: bytes, seconds, baseline and peak RSS.
 * Mode `node-http` is the worker's path; `fetch-duplex` is the naive one, for comparison.
 */

const [sourceUrl, targetUrl, mode = 'node-http'] = process.argv.slice(2);
if (!sourceUrl || !targetUrl) throw new Error('usage: upload-memory <sourceUrl> <targetUrl> [node-http|fetch-duplex]');

const baselineRss = process.memoryUsage().rss;
let peakRss = baselineRss;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 20);

const started = performance.now();
let bytes = 0;
let status = 0;
const controller = new AbortController();
if (mode === 'node-http') {
  const source = await openOutput(sourceUrl, 600_000, controller.signal);
  const answer = await putStream(targetUrl, source.body, { contentLength: source.length, timeoutMs: 600_000, signal: controller.signal });
  bytes = answer.bytes;
  status = answer.status;
} else {
  const source = await fetch(sourceUrl);
  const length = source.headers.get('content-length');
  const body = Readable.toWeb(Readable.fromWeb(source.body as WebReadableStream<Uint8Array>));
  const answer = await fetch(targetUrl, {
    method: 'PUT',
    headers: { 'content-type': 'video/mp4', ...(length ? { 'content-length': length } : {}) },
    body: body as ReadableStream<Uint8Array>,
    duplex: 'half',
  } as RequestInit);
  await answer.text();
  status = answer.status;
  bytes = Number(length ?? 0);
}
const seconds = (performance.now() - started) / 1000;
clearInterval(sampler);
peakRss = Math.max(peakRss, process.memoryUsage().rss);
process.stdout.write(`${JSON.stringify({ mode, status, bytes, seconds, baselineRss, peakRss })}\n`);
