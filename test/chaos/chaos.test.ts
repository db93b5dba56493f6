import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkInvariants, runChaos, type ChaosFigures } from '../../tools/chaos/run-chaos.js';

const ITEMS = 40;
const SEED = 7;
/** The run finishes in about 30 s on 2 cores; the deadline leaves room for a slow machine. */
const DEADLINE_SECONDS = 75;
/** Four items with the photo Runway refuses, so the moderation path is always taken. */
const REFUSED_SHARE = 0.1;
/**
 * Above the default limit, so the run stays short, yet still binding: one cron run leases up
 * to 15 items a second, so the second run already finds the slots nearly all taken.
 */
const RUNWAY_CONCURRENCY = 16;

describe(`a chaos run of ${ITEMS} items with every fault switched on`, () => {
  let dataDir: string;
  let figures: ChaosFigures;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'runway-chaos-'));
    figures = await runChaos({
      items: ITEMS,
      seed: SEED,
      dataDir,
      deadlineSeconds: DEADLINE_SECONDS,
      settleSeconds: 5,
      faults: { refusedShare: REFUSED_SHARE },
      runwayConcurrency: RUNWAY_CONCURRENCY,
    });
  }, (DEADLINE_SECONDS + 30) * 1000);

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps every invariant', () => {
    expect(checkInvariants(figures)).toEqual([]);
  });

  it('finishes every item as completed or failed, losing none', () => {
    expect(figures.items).toBe(ITEMS);
    expect(figures.lost).toBe(0);
    expect(figures.completed + figures.failed_expected + figures.failed_unexpected).toBe(ITEMS);
  });

  it('completes most items despite the faults', () => {
    expect(figures.completed).toBeGreaterThan(ITEMS / 2);
  });

  it('creates one Runway task per generation and stores at most one video per item', () => {
    expect(figures.runway_creates_per_generation_max).toBeLessThanOrEqual(1);
    expect(figures.runway_tasks_per_attempt_max).toBeLessThanOrEqual(2);
    expect(figures.uploads_per_item_max).toBeLessThanOrEqual(1);
    expect(figures.videos_not_identical).toBe(0);
  });

  it('applies exactly one report per item and never a failed one after an upload', () => {
    expect(figures.duplicate_reports).toBe(0);
    expect(figures.failed_after_upload).toBe(0);
    expect(figures.reports_applied).toBe(ITEMS);
  });

  it('never holds an item longer than the stall threshold without progress', () => {
    expect(figures.stalled_items).toBe(0);
    expect(figures.max_no_progress_seconds).toBeGreaterThan(0);
    expect(figures.max_no_progress_seconds).toBeLessThanOrEqual(figures.stall_threshold_seconds);
  });

  it('stores no HTML page as a video and keeps THROTTLED tasks within the limit', () => {
    expect(figures.html_outputs_stored).toBe(0);
    expect(figures.throttled_at_once_max).toBeLessThanOrEqual(RUNWAY_CONCURRENCY);
  });

  it('leaks no secret into the log or into an error message', () => {
    expect(figures.log_lines).toBeGreaterThan(ITEMS);
    expect(figures.details.leaks).toEqual([]);
  });

  it('really ran under chaos: QStash injected duplicates and the photo Runway refuses failed as moderation', () => {
    expect(figures.duplicates_injected).toBeGreaterThan(0);
    expect(figures.qstash_deliveries).toBeGreaterThan(figures.qstash_published);
    expect(figures.failed_moderation).toBeGreaterThan(0);
  });
});
