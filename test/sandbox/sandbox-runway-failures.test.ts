import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { failureText } from '../../sandbox/runway-prompt-image.js';
import { closeSandboxes, dataUri, jpeg, PHOTO, startSandbox, terminal } from '../support/sandbox-runway.js';

afterEach(closeSandboxes);

const gen4 = (promptText?: string) => ({
  model: 'gen4_turbo',
  promptImage: PHOTO,
  ratio: '1280:720',
  ...(promptText === undefined ? {} : { promptText }),
});

/** Draws the given values in turn, then 0.999 (no fault fires). */
function drawing(...values: number[]): () => number {
  return () => values.shift() ?? 0.999;
}

describe('transient failures at transientFailureRate 1', () => {
  it('fail each created task with INTERNAL, THIRD_PARTY.UNAVAILABLE or INPUT_PREPROCESSING.INTERNAL, picked by the same draw', async () => {
    const sandbox = await startSandbox({ generationMs: 0, rng: drawing(0, 0.5, 0.9), faults: { transientFailureRate: 1 } });
    const ids = [await sandbox.createTask(), await sandbox.createTask(), await sandbox.createTask()];
    const tasks = await Promise.all(ids.map((id) => sandbox.getTask(id)));
    expect(tasks.map((task) => [task.status, task.failureCode])).toEqual([
      ['FAILED', 'INTERNAL'],
      ['FAILED', 'THIRD_PARTY.UNAVAILABLE'],
      ['FAILED', 'INPUT_PREPROCESSING.INTERNAL'],
    ]);
    for (const task of tasks) expect(task.failure).toBe(failureText(task.failureCode ?? ''));
  });

  it('leave tasks alone when the draw is above the rate', async () => {
    const sandbox = await startSandbox({ generationMs: 0, rng: drawing(0.3), faults: { transientFailureRate: 0.25 } });
    const id = await sandbox.createTask();
    expect((await sandbox.getTask(id)).status).toBe('SUCCEEDED');
  });

  it('fail every task of a run with the default random source', async () => {
    const sandbox = await startSandbox({ generationMs: 0, faults: { transientFailureRate: 1 } });
    const ids = await Promise.all(Array.from({ length: 12 }, () => sandbox.createTask()));
    const codes = new Set((await Promise.all(ids.map((id) => sandbox.getTask(id)))).map((task) => task.failureCode));
    expect([...codes].every((code) => ['INTERNAL', 'THIRD_PARTY.UNAVAILABLE', 'INPUT_PREPROCESSING.INTERNAL'].includes(code ?? ''))).toBe(true);
    expect(codes.size).toBeGreaterThan(1);
  });
});

describe('when a failure happens', () => {
  const GENERATION_MS = 1500;

  it('fails INPUT_PREPROCESSING.INTERNAL on leaving PENDING and INTERNAL only at the end of the generation', async () => {
    const sandbox = await startSandbox({ generationMs: GENERATION_MS });
    sandbox.runway.failNextTasks({ code: 'INPUT_PREPROCESSING.INTERNAL' });
    sandbox.runway.failNextTasks({ code: 'INTERNAL' });
    const early = await sandbox.createTask();
    const late = await sandbox.createTask();

    await sleep(GENERATION_MS * 0.1 + 100);
    expect(await sandbox.getTask(early)).toMatchObject({ status: 'FAILED', failureCode: 'INPUT_PREPROCESSING.INTERNAL' });
    const midway = await sandbox.getTask(late);
    expect(midway.status).toBe('RUNNING');
    expect(midway.failureCode).toBeUndefined();

    const seen = await sandbox.waitFor(late, terminal);
    expect(seen.at(-1)).toMatchObject({ status: 'FAILED', failureCode: 'INTERNAL' });
    expect(seen.at(-1)?.output).toBeUndefined();
  });

  it('fails a marked output-side code at the end of the generation, and a marked input-side code early', async () => {
    const sandbox = await startSandbox({ generationMs: GENERATION_MS });
    const output = await sandbox.createTask({ ...gen4(), promptImage: dataUri(jpeg('runway-sandbox:INTERNAL.BAD_OUTPUT.CODE01')) });
    const input = await sandbox.createTask(gen4('runway-sandbox:INPUT_PREPROCESSING.SAFETY.TEXT'));
    await sleep(GENERATION_MS * 0.1 + 100);
    expect((await sandbox.getTask(output)).status).toBe('RUNNING');
    expect(await sandbox.getTask(input)).toMatchObject({ status: 'FAILED', failureCode: 'INPUT_PREPROCESSING.SAFETY.TEXT' });
  });
});

describe('failNextTasks', () => {
  it('fails the next task only, so a second generation succeeds', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    sandbox.runway.failNextTasks({ code: 'THIRD_PARTY.UNAVAILABLE' });
    const first = await sandbox.createTask();
    const second = await sandbox.createTask();
    expect(await sandbox.getTask(first)).toMatchObject({ status: 'FAILED', failureCode: 'THIRD_PARTY.UNAVAILABLE' });
    expect((await sandbox.getTask(second)).status).toBe('SUCCEEDED');
  });

  it('fails as many tasks as count says', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    sandbox.runway.failNextTasks({ code: 'INTERNAL', count: 2 });
    const ids = [await sandbox.createTask(), await sandbox.createTask(), await sandbox.createTask()];
    const statuses = (await Promise.all(ids.map((id) => sandbox.getTask(id)))).map((task) => task.status);
    expect(statuses).toEqual(['FAILED', 'FAILED', 'SUCCEEDED']);
  });

  it('fails only tasks whose prompt includes promptIncludes, leaving others untouched', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    sandbox.runway.failNextTasks({ code: 'INTERNAL', promptIncludes: 'item 7' });
    const other = await sandbox.createTask(gen4('a slow pan (item 3)'));
    const noPrompt = await sandbox.createTask(gen4());
    const target = await sandbox.createTask(gen4('a slow pan (item 7)'));
    const again = await sandbox.createTask(gen4('a slow pan (item 7)'));
    expect((await sandbox.getTask(other)).status).toBe('SUCCEEDED');
    expect((await sandbox.getTask(noPrompt)).status).toBe('SUCCEEDED');
    expect(await sandbox.getTask(target)).toMatchObject({ status: 'FAILED', failureCode: 'INTERNAL' });
    expect((await sandbox.getTask(again)).status).toBe('SUCCEEDED');
  });

  it('is not used up by a create the daily cap refused', async () => {
    const sandbox = await startSandbox({ generationMs: 0, dailyLimit: 1 });
    await sandbox.createTask({ ...gen4(), model: 'veo3.1' });
    sandbox.runway.failNextTasks({ code: 'INTERNAL' });
    expect((await sandbox.create({ ...gen4(), model: 'veo3.1' })).status).toBe(429);
    const id = await sandbox.createTask();
    expect(await sandbox.getTask(id)).toMatchObject({ status: 'FAILED', failureCode: 'INTERNAL' });
  });
});
