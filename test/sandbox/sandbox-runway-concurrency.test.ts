import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { grantSlots, maxOverlap } from '../../sandbox/runway-concurrency.js';
import {
  closeSandboxes,
  errorOf,
  organizationSchema,
  PHOTO,
  startSandbox,
  type Harness,
  type TaskBody,
} from '../support/sandbox-runway.js';

afterEach(closeSandboxes);

const GEN4 = { model: 'gen4_turbo', promptImage: PHOTO, ratio: '1280:720' };
const VEO = { model: 'veo3.1', promptImage: PHOTO, ratio: '1280:720' };

async function organization(sandbox: Harness) {
  const res = await sandbox.api('/v1/organization');
  expect(res.status).toBe(200);
  return organizationSchema.parse(await res.json());
}

const generating = (task: TaskBody): boolean => task.status === 'PENDING' || task.status === 'RUNNING';

describe('a burst of five tasks against a concurrency limit of 2', () => {
  const GENERATION_MS = 600;

  it('runs two at a time, keeps the rest THROTTLED without progress, and starts them first come first served', async () => {
    const sandbox = await startSandbox({ generationMs: GENERATION_MS, concurrency: 2 });
    const ids: string[] = [];
    for (let index = 0; index < 5; index += 1) ids.push(await sandbox.createTask(GEN4));

    const first = await Promise.all(ids.map((id) => sandbox.getTask(id)));
    expect(first.map((task) => task.status === 'THROTTLED')).toEqual([false, false, true, true, true]);
    for (const task of first.slice(2)) {
      expect(task.progress).toBeUndefined();
      expect(task.output).toBeUndefined();
    }
    expect(sandbox.runway.task(ids[4] ?? '')).toMatchObject({ status: 'THROTTLED', progress: undefined });

    // Poll every task until all are done, noting when each was first seen out of THROTTLED.
    const leftQueueAt = new Map<string, number>();
    let mostGenerating = 0;
    const deadline = Date.now() + 10 * GENERATION_MS;
    for (;;) {
      const seen = await Promise.all(ids.map((id) => sandbox.getTask(id)));
      const nowMs = Date.now();
      for (const task of seen) if (task.status !== 'THROTTLED' && !leftQueueAt.has(task.id)) leftQueueAt.set(task.id, nowMs);
      mostGenerating = Math.max(mostGenerating, seen.filter(generating).length);
      if (seen.every((task) => task.status === 'SUCCEEDED')) break;
      expect(Date.now()).toBeLessThan(deadline);
      await sleep(25);
    }

    expect(mostGenerating).toBe(2);
    const order = ids.map((id) => leftQueueAt.get(id) ?? Number.NaN);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(sandbox.runway.maxThrottledAtOnce()).toBe(3);
    expect(sandbox.runway.maxThrottledAtOnce('gen4_turbo')).toBe(3);
    expect(sandbox.runway.maxThrottledAtOnce('veo3.1')).toBe(0);
    expect(sandbox.runway.maxActiveAtOnce()).toBe(2);

    const throttledMs = ids.map((id) => sandbox.runway.task(id)?.throttledMs ?? Number.NaN);
    expect(throttledMs.slice(0, 2)).toEqual([0, 0]);
    // The third waits for the first to finish, the fifth for the third.
    expect(throttledMs[2]).toBeGreaterThan(GENERATION_MS * 0.8);
    expect(throttledMs[4]).toBeGreaterThan(GENERATION_MS * 1.6);
  });

  it('reports the limit as maxConcurrentGenerations for every model', async () => {
    const sandbox = await startSandbox({ concurrency: 2 });
    const org = await organization(sandbox);
    for (const model of ['gen4_turbo', 'gen4.5', 'veo3.1', 'veo3.1_fast']) {
      expect(org.tier.models[model]?.maxConcurrentGenerations).toBe(2);
    }
  });
});

describe('a concurrency limit for one model', () => {
  it('throttles that model only, and the organization reports 1000 for the others', async () => {
    const sandbox = await startSandbox({ generationMs: 60_000, concurrency: { gen4_turbo: 1 } });
    const running = await sandbox.createTask(GEN4);
    const waiting = await sandbox.createTask(GEN4);
    const veo = await Promise.all([sandbox.createTask(VEO), sandbox.createTask(VEO)]);
    expect((await sandbox.getTask(running)).status).not.toBe('THROTTLED');
    expect((await sandbox.getTask(waiting)).status).toBe('THROTTLED');
    for (const id of veo) expect((await sandbox.getTask(id)).status).not.toBe('THROTTLED');

    const org = await organization(sandbox);
    expect(org.tier.models.gen4_turbo?.maxConcurrentGenerations).toBe(1);
    expect(org.tier.models['veo3.1']?.maxConcurrentGenerations).toBe(1000);
  });
});

describe('a slot held by a task', () => {
  it('frees when the running task is cancelled, and goes to the oldest task still waiting', async () => {
    const sandbox = await startSandbox({ generationMs: 60_000, concurrency: 1 });
    const running = await sandbox.createTask(GEN4);
    const cancelledWhileWaiting = await sandbox.createTask(GEN4);
    const next = await sandbox.createTask(GEN4);
    expect((await sandbox.getTask(next)).status).toBe('THROTTLED');

    expect((await sandbox.api(`/v1/tasks/${cancelledWhileWaiting}`, { method: 'DELETE' })).status).toBe(204);
    expect((await sandbox.getTask(next)).status).toBe('THROTTLED');
    expect((await sandbox.api(`/v1/tasks/${running}`, { method: 'DELETE' })).status).toBe(204);

    expect((await sandbox.getTask(next)).status).toBe('PENDING');
    expect(sandbox.runway.task(cancelledWhileWaiting)).toMatchObject({ status: 'CANCELLED', deleted: true });
    expect(sandbox.runway.maxActiveAtOnce()).toBe(1);
    expect(sandbox.runway.maxThrottledAtOnce()).toBe(2);
  });

  it('is held by a task that never finishes until that task is cancelled', async () => {
    const sandbox = await startSandbox({ generationMs: 100, concurrency: 1, faults: { neverFinishRate: 1 } });
    const stuck = await sandbox.createTask(GEN4);
    const waiting = await sandbox.createTask(GEN4);
    await sleep(400);
    expect((await sandbox.getTask(stuck)).status).toBe('RUNNING');
    expect((await sandbox.getTask(waiting)).status).toBe('THROTTLED');

    expect((await sandbox.api(`/v1/tasks/${stuck}`, { method: 'DELETE' })).status).toBe(204);
    expect((await sandbox.getTask(waiting)).status).toBe('PENDING');
    expect(sandbox.runway.task(waiting)?.throttledMs).toBeGreaterThanOrEqual(400);
  });
});

describe('without a concurrency limit', () => {
  it('never throttles, and reports 1000 concurrent generations', async () => {
    const sandbox = await startSandbox({ generationMs: 60_000 });
    const ids = await Promise.all(Array.from({ length: 6 }, () => sandbox.createTask(GEN4)));
    for (const id of ids) expect((await sandbox.getTask(id)).status).toBe('PENDING');
    expect(sandbox.runway.maxThrottledAtOnce()).toBe(0);
    expect(sandbox.runway.maxActiveAtOnce()).toBe(6);
    expect((await organization(sandbox)).tier.models.gen4_turbo?.maxConcurrentGenerations).toBe(1000);
  });
});

describe('the daily generation cap', () => {
  it('answers 429 once the model made dailyLimit tasks today, and counts them in the organization', async () => {
    const sandbox = await startSandbox({ dailyLimit: 2 });
    await sandbox.createTask(GEN4);
    await sandbox.createTask(GEN4);
    const refused = await sandbox.create(GEN4);
    expect(refused.status).toBe(429);
    expect((await errorOf(refused)).error).toContain('daily task limit');
    expect(sandbox.runway.tasks()).toHaveLength(2);

    expect((await sandbox.create(VEO)).status).toBe(200);
    const org = await organization(sandbox);
    expect(org.tier.models.gen4_turbo?.maxDailyGenerations).toBe(2);
    expect(org.usage.models.gen4_turbo?.dailyGenerations).toBe(2);
    expect(org.usage.models['veo3.1']?.dailyGenerations).toBe(1);
  });

  it('is 1000 by default', async () => {
    const sandbox = await startSandbox();
    expect((await organization(sandbox)).tier.models['gen4.5']?.maxDailyGenerations).toBe(1000);
  });
});

describe('the slot schedule', () => {
  const claim = (createdAtMs: number, holdMs: number, cancelledAtMs?: number) => ({
    group: 'm',
    createdAtMs,
    holdMs,
    cancelledAtMs,
  });

  it('gives each task the earliest freed slot, in creation order', () => {
    const slots = grantSlots([claim(0, 100), claim(1, 50), claim(2, 100), claim(3, 100), claim(4, 10)], () => 2);
    expect(slots).toEqual([0, 1, 51, 100, 151]);
  });

  it('skips a task cancelled while waiting, and frees the slot of a task cancelled while generating', () => {
    const never = Number.POSITIVE_INFINITY;
    const slots = grantSlots([claim(0, never, 30), claim(1, 100, 20), claim(2, 100)], () => 1);
    expect(slots).toEqual([0, undefined, 30]);
  });

  it('starts every task at its creation without a limit', () => {
    expect(grantSlots([claim(5, 100), claim(6, 100)], () => undefined)).toEqual([5, 6]);
  });

  it('counts spans that touch end to start as not overlapping, and open spans as lasting until now', () => {
    const spans = [
      { fromMs: 0, untilMs: 10 },
      { fromMs: 10, untilMs: 20 },
      { fromMs: 15, untilMs: Number.POSITIVE_INFINITY },
      { fromMs: 50, untilMs: 60 },
    ];
    expect(maxOverlap(spans, 100)).toBe(2);
    expect(maxOverlap(spans, 12)).toBe(1);
  });
});
