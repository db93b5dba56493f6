import { describe, expect, it } from 'vitest';
import { RUNWAY_MODELS } from '../../lib/config.js';
import {
  FALLBACK_LIMITS,
  THROTTLED_PAUSE_SECONDS,
  capacityDrainDelaySeconds,
  limitsFromOrganization,
  modelCapacity,
  slotMarkerLifetimeMs,
} from '../../lib/decide/capacity.js';

const NOW = 1_800_000_000_000;

describe('modelCapacity', () => {
  it('is the limit minus the generations in flight', () => {
    expect(modelCapacity({ limits: { maxConcurrent: 5, dailyRemaining: undefined }, inFlight: 3, throttledAtMs: undefined, nowMs: NOW })).toEqual({
      limit: 5,
      inFlight: 3,
      dailyRemaining: undefined,
      paused: false,
      free: 2,
    });
  });

  it.each([
    [5, 5, 0],
    [5, 7, 0],
    [1, 0, 1],
    [0, 0, 0],
  ])('never goes below zero (limit %i, %i in flight → %i free)', (limit, inFlight, free) => {
    expect(modelCapacity({ limits: { maxConcurrent: limit, dailyRemaining: undefined }, inFlight, throttledAtMs: undefined, nowMs: NOW }).free).toBe(free);
  });

  it('is no more than the generations left today', () => {
    const capacity = (dailyRemaining: number) =>
      modelCapacity({ limits: { maxConcurrent: 10, dailyRemaining }, inFlight: 2, throttledAtMs: undefined, nowMs: NOW }).free;
    expect(capacity(100)).toBe(8);
    expect(capacity(3)).toBe(3);
    expect(capacity(0)).toBe(0);
    expect(capacity(-4)).toBe(0);
  });

  it(`pauses for ${THROTTLED_PAUSE_SECONDS} s after a task of ours was seen THROTTLED`, () => {
    const at = (secondsAgo: number) =>
      modelCapacity({ limits: { maxConcurrent: 10, dailyRemaining: undefined }, inFlight: 0, throttledAtMs: NOW - secondsAgo * 1000, nowMs: NOW });
    expect(at(0)).toMatchObject({ paused: true, free: 0 });
    expect(at(THROTTLED_PAUSE_SECONDS - 1)).toMatchObject({ paused: true, free: 0 });
    expect(at(THROTTLED_PAUSE_SECONDS)).toMatchObject({ paused: false, free: 10 });
  });
});

describe('limitsFromOrganization', () => {
  it('reads each model of the tier, with the generations left today from its usage', () => {
    const limits = limitsFromOrganization({
      tier: { models: { gen4_turbo: { maxConcurrentGenerations: 2, maxDailyGenerations: 50 }, 'veo3.1': { maxConcurrentGenerations: 1, maxDailyGenerations: 10 } } },
      usage: { models: { gen4_turbo: { dailyGenerations: 48 } } },
    });
    expect(limits.gen4_turbo).toEqual({ maxConcurrent: 2, dailyRemaining: 2 });
    expect(limits['veo3.1']).toEqual({ maxConcurrent: 1, dailyRemaining: 10 });
  });

  it('gives a model the tier does not list the lowest tier\'s limit', () => {
    const limits = limitsFromOrganization({ tier: { models: {} } });
    for (const model of RUNWAY_MODELS) expect(limits[model]).toEqual(FALLBACK_LIMITS);
    expect(FALLBACK_LIMITS.maxConcurrent).toBe(1);
  });
});

describe('capacityDrainDelaySeconds', () => {
  const bounds = { nowMs: NOW, minSeconds: 5, maxSeconds: 30 };

  it('waits until the earliest generation in flight should be done', () => {
    // gen4_turbo is typically done 45 s after it starts.
    expect(capacityDrainDelaySeconds({ ...bounds, inFlight: [{ model: 'gen4_turbo', atMs: NOW - 30_000 }, { model: 'gen4.5', atMs: NOW }] })).toBe(15);
  });

  it("uses each model's own typical generation time", () => {
    // gen4.5 is typically done 90 s after it starts.
    expect(capacityDrainDelaySeconds({ ...bounds, inFlight: [{ model: 'gen4.5', atMs: NOW - 80_000 }] })).toBe(10);
  });

  it('stays within its bounds', () => {
    expect(capacityDrainDelaySeconds({ ...bounds, inFlight: [{ model: 'gen4_turbo', atMs: NOW }] })).toBe(30);
    expect(capacityDrainDelaySeconds({ ...bounds, inFlight: [{ model: 'gen4_turbo', atMs: NOW - 600_000 }] })).toBe(5);
  });

  it('waits longest when nothing of ours is in flight (a pause, or another client holds the slots)', () => {
    expect(capacityDrainDelaySeconds({ ...bounds, inFlight: [] })).toBe(30);
    expect(capacityDrainDelaySeconds({ ...bounds, inFlight: [{ model: 'not-a-model', atMs: NOW }] })).toBe(30);
  });
});

describe('slotMarkerLifetimeMs', () => {
  it('outlives a generation that runs to its timeout and is seen by its last poll', () => {
    expect(slotMarkerLifetimeMs(600, 60)).toBe((600 + 60 + 60) * 1000);
  });
});
