import { describe, expect, it } from 'vitest';
import { createLeaseWatch, heldMsBetween, leaseSpansOf, leaseStarts } from '../../tools/chaos/lease-watch.js';
import { stallThresholdMs } from '../../tools/chaos/stalls.js';
import type { WorkItem } from '../../sandbox/app-api.js';

const CHAOS_SETTINGS = { leaseSeconds: 15, pollMaxSeconds: 60, heartbeatIntervalSeconds: 3, timeScale: 0.03, deliveryJitterMs: 5_000 };

function item(status: WorkItem['status'], leasedUntil: string | null): WorkItem {
  return {
    item_id: 'a',
    group_id: 'g',
    photo_id: 'p',
    prompt: 'x',
    photo_storage_path: 'g/p_original.jpg',
    frame_num: null,
    status,
    leased_until: leasedUntil,
    worker_id: 'runway-worker',
    retry_count: 0,
    error_message: null,
    video_storage_path: null,
    video_url: null,
    veo_operation_id: null,
    created_at: '2026-11-01T00:00:00.000Z',
    completed_at: null,
    reports: [],
  };
}

describe('the stall threshold', () => {
  it('is the lease plus one poll interval and one heartbeat interval as QStash delivers them', () => {
    // 15 s + (60 s × 0.03 + 5 s) + (3 s × 0.03 + 5 s)
    expect(stallThresholdMs(CHAOS_SETTINGS)).toBeCloseTo(26_890, 6);
  });

  it('grows with the lease and with the delivery jitter, not with real-time QStash delays alone', () => {
    expect(stallThresholdMs({ ...CHAOS_SETTINGS, leaseSeconds: 30 })).toBeCloseTo(41_890, 6);
    expect(stallThresholdMs({ ...CHAOS_SETTINGS, deliveryJitterMs: 0, timeScale: 1 })).toBe(78_000);
  });
});

describe('the lease watch', () => {
  it('keeps each new lease of a processing item once, and nothing of pending or finished items', () => {
    const watch = createLeaseWatch();
    watch.sample([item('pending', null)], 1_000);
    watch.sample([item('processing', '2026-11-01T00:00:15.000Z')], 1_200);
    watch.sample([item('processing', '2026-11-01T00:00:15.000Z')], 1_400);
    watch.sample([item('completed', '2026-11-01T00:00:15.000Z')], 1_600);
    expect(watch.samples()).toEqual([{ item_id: 'a', seenAtMs: 1_200, leasedUntilMs: Date.parse('2026-11-01T00:00:15.000Z') }]);
  });

  it('reads a lease, a heartbeat and a release from the values the app set', () => {
    const spans = leaseSpansOf(
      [
        { item_id: 'a', seenAtMs: 100, leasedUntilMs: 15_000 },
        { item_id: 'a', seenAtMs: 3_100, leasedUntilMs: 18_000 },
        { item_id: 'a', seenAtMs: 5_100, leasedUntilMs: 5_000 },
      ],
      15_000,
    );
    expect(spans).toEqual([
      { atMs: 0, untilMs: 15_000 },
      { atMs: 3_000, untilMs: 18_000 },
      { atMs: 5_000, untilMs: 5_000 },
    ]);
    expect(leaseStarts(spans)).toEqual([0]);
    expect(heldMsBetween(spans, 0, 60_000)).toBe(5_000);
  });
});
