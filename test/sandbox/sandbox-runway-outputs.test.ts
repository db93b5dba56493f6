import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { closeSandboxes, download, sha256, startSandbox, type Harness } from '../support/sandbox-runway.js';

afterEach(closeSandboxes);

const SAMPLE = readFileSync(new URL('../../sandbox/fixtures/sample.mp4', import.meta.url));

async function outputUrl(sandbox: Harness, id: string): Promise<string> {
  const url = (await sandbox.getTask(id)).output?.[0];
  expect(url).toBeDefined();
  return url ?? '';
}

function expectHtmlPage(answer: { status: number; bytes: Buffer; headers: Headers }): void {
  expect(answer.status).toBe(200);
  expect(answer.headers.get('content-type')).toBe('text/html; charset=utf-8');
  expect(answer.headers.get('content-length')).toBe(String(answer.bytes.length));
  // About 1.2 KB, like a CDN's error page, and nothing that sniffs as MP4.
  expect(answer.bytes.length).toBeGreaterThanOrEqual(1150);
  expect(answer.bytes.length).toBeLessThan(1250);
  expect(answer.bytes.toString('utf8')).toMatch(/^<!DOCTYPE html>/);
  expect(answer.bytes.includes(Buffer.from('ftyp'))).toBe(false);
}

function expectVideo(answer: { status: number; bytes: Buffer; headers: Headers }): void {
  expect(answer.status).toBe(200);
  expect(answer.headers.get('content-type')).toBe('video/mp4');
  expect(sha256(answer.bytes)).toBe(sha256(SAMPLE));
}

/** Draws the given values in turn, then 0.999 (no fault fires). */
function drawing(...values: number[]): () => number {
  return () => values.shift() ?? 0.999;
}

describe('a task whose outputs are HTML (htmlOutputRate 1)', () => {
  it('answers every GET of every output URL with a CDN error page and never the video', async () => {
    const sandbox = await startSandbox({ generationMs: 0, faults: { htmlOutputRate: 1 } });
    const id = await sandbox.createTask();
    const url = await outputUrl(sandbox, id);
    expectHtmlPage(await download(url));
    expectHtmlPage(await download(url));
    expectHtmlPage(await download(await outputUrl(sandbox, id)));

    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe('text/html; charset=utf-8');

    expect(sandbox.runway.task(id)).toMatchObject({ status: 'SUCCEEDED', htmlOutput: true, htmlOutputsServed: 4 });
  });

  it('is recorded as false for a task that serves its video', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sandbox.createTask();
    expectVideo(await download(await outputUrl(sandbox, id)));
    expect(sandbox.runway.task(id)).toMatchObject({ htmlOutput: false, htmlOutputsServed: 0 });
  });
});

describe('an HTML page on the first GET of an output URL (htmlOutputFirstFetchRate)', () => {
  it('at rate 1, answers the first GET of each URL with the page, then serves the video at that URL', async () => {
    const sandbox = await startSandbox({ generationMs: 0, faults: { htmlOutputFirstFetchRate: 1 } });
    const id = await sandbox.createTask();
    const url = await outputUrl(sandbox, id);
    expectHtmlPage(await download(url));
    expectVideo(await download(url));
    expect(sandbox.runway.task(id)).toMatchObject({ htmlOutput: false, htmlOutputsServed: 1 });
  });

  it('serves the video from a fresh URL when the draw for it does not fire', async () => {
    const sandbox = await startSandbox({ generationMs: 0, rng: drawing(0), faults: { htmlOutputFirstFetchRate: 0.5 } });
    const id = await sandbox.createTask();
    expectHtmlPage(await download(await outputUrl(sandbox, id)));
    expectVideo(await download(await outputUrl(sandbox, id)));
    expect(sandbox.runway.task(id)?.htmlOutputsServed).toBe(1);
  });
});
