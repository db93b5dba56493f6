import { describe, expect, it } from 'vitest';
import { figuresOf, formatFigures, REQUIRED_FIGURES, type ChaosObservation } from '../../tools/chaos/figures.js';
import { checkInvariants } from '../../tools/chaos/invariants.js';
import type { LeaseSample } from '../../tools/chaos/lease-watch.js';
import type { ReportRecord, WorkItem } from '../../sandbox/app-api.js';
import type { SandboxRunwayTask } from '../../sandbox/runway.js';
import type { StoredObject } from '../../sandbox/storage.js';

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';
/** Every synthetic moment is an offset from this one. */
const T0 = Date.parse('2026-11-01T00:00:00.000Z');
const iso = (offsetMs: number): string => new Date(T0 + offsetMs).toISOString();
const LEASE_MS = 15_000;
const THRESHOLD_MS = 26_890;
const HTML_SHA = 'sha-of-the-html-page';

function workItem(itemId: string, status: WorkItem['status'], extra: Partial<WorkItem> = {}): WorkItem {
  return {
    item_id: itemId,
    group_id: 'g',
    photo_id: 'p',
    prompt: `prompt (chaos item ${itemId})`,
    photo_storage_path: 'g/p_original.jpg',
    frame_num: null,
    status,
    leased_until: null,
    worker_id: 'runway-worker',
    retry_count: 0,
    error_message: null,
    video_storage_path: status === 'completed' ? `videos/${itemId}.mp4` : null,
    video_url: null,
    veo_operation_id: `task-${itemId}`,
    created_at: '2026-11-01T00:00:00.000Z',
    completed_at: null,
    reports: [],
    ...extra,
  };
}

function report(itemId: string, status: ReportRecord['status'], applied = true, atMs = 4_000): ReportRecord {
  return {
    at: iso(atMs),
    item_id: itemId,
    worker_id: 'runway-worker',
    status,
    video_storage_path: status === 'completed' ? `videos/${itemId}.mp4` : null,
    error_message: status === 'failed' ? 'runway: timed out after 12 s (last status RUNNING)' : null,
    veo_operation_id: `task-${itemId}`,
    httpStatus: applied ? 200 : 500,
    applied,
    responseLost: false,
  };
}

function task(itemId: string, id = `task-${itemId}`, extra: Partial<SandboxRunwayTask> = {}): SandboxRunwayTask {
  return {
    id,
    model: 'gen4_turbo',
    ratio: '1104:832',
    duration: 5,
    promptText: `prompt (chaos item ${itemId})`,
    promptImageKind: 'data',
    promptImage: undefined,
    throttledMs: 0,
    htmlOutput: false,
    htmlOutputsServed: 0,
    status: 'SUCCEEDED',
    progress: undefined,
    createdAt: iso(100),
    failureCode: undefined,
    failure: undefined,
    credits: 25,
    outputBytes: 10,
    outputSha256: `sha-${id}`,
    deleted: false,
    polls: 3,
    ...extra,
  };
}

function video(itemId: string, sha256 = `sha-task-${itemId}`, storedAtMs = 3_000): StoredObject {
  return {
    bucket: 'generated-videos',
    path: `videos/${itemId}.mp4`,
    size: 10,
    sha256,
    contentType: 'video/mp4',
    uploads: 1,
    hasBytes: false,
    storedAt: T0 + storedAtMs,
  };
}

/** `leased_until` as first seen `seenAtMs` after T0, set `setAtMs` after T0 (a lease or heartbeat). */
function leased(itemId: string, setAtMs: number, seenAtMs = setAtMs + 100): LeaseSample {
  return { item_id: itemId, seenAtMs: T0 + seenAtMs, leasedUntilMs: T0 + setAtMs + LEASE_MS };
}

function released(itemId: string, atMs: number): LeaseSample {
  return { item_id: itemId, seenAtMs: T0 + atMs + 100, leasedUntilMs: T0 + atMs };
}

/** A heartbeat every 3 s from `fromMs` until before `toMs`, each sampled. */
function heartbeats(itemId: string, fromMs: number, toMs: number): LeaseSample[] {
  const samples: LeaseSample[] = [];
  for (let at = fromMs; at < toMs; at += 3_000) samples.push(leased(itemId, at));
  return samples;
}

/** Polls of a task: what the worker sees depends on the sandbox timeline (2 s generation). */
const polls = (taskId: string, ...offsetsMs: number[]) => offsetsMs.map((offset) => ({ taskId, at: T0 + offset }));

function observation(overrides: Partial<ChaosObservation> = {}): ChaosObservation {
  return {
    seed: 1,
    itemIds: [A, B],
    workItems: [workItem(A, 'completed'), workItem(B, 'failed', { error_message: 'runway: timed out after 12 s (last status RUNNING)' })],
    reports: [report(A, 'completed'), report(B, 'failed')],
    releases: [],
    leaseSamples: [leased(A, 0), leased(B, 0)],
    watchedUntilMs: T0 + 5_000,
    tasks: [task(A), task(B)],
    taskPolls: [...polls(`task-${A}`, 1_400, 2_500), ...polls(`task-${B}`, 1_400, 2_500)],
    taskDeletes: [],
    throttledAtOnceMax: 0,
    videos: [video(A)],
    uploadAttempts: () => 1,
    outputSha256: (taskId) => `sha-${taskId}`,
    htmlPageSha256: HTML_SHA,
    settings: { regenerations: 1, concurrencyLimit: 8, leaseMs: LEASE_MS, generationMs: 2_000, runwayTimeoutMs: 12_000, stallThresholdMs: THRESHOLD_MS },
    qstash: { published: 10, deliveries: 12, duplicatesInjected: 2 },
    logLines: 30,
    leaks: [],
    wallMs: 12_345,
    ...overrides,
  };
}

describe('figures of a clean run', () => {
  it('count completed and expected failures and break no invariant', () => {
    const figures = figuresOf(observation());
    expect(figures).toMatchObject({
      items: 2,
      completed: 1,
      failed_expected: 1,
      failed_timed_out: 1,
      failed_unexpected: 0,
      lost: 0,
      runway_creates_per_generation_max: 1,
      runway_tasks_per_attempt_max: 1,
      regenerations: 0,
      uploads_per_item_max: 1,
      html_outputs_stored: 0,
      stalled_items: 0,
      stall_threshold_seconds: 26.9,
      wall_seconds: 12.3,
    });
    expect(checkInvariants(figures)).toEqual([]);
  });

  it('print the required figures first, one `name: value` line each', () => {
    const lines = formatFigures(figuresOf(observation()));
    expect(lines.slice(0, REQUIRED_FIGURES.length).map((line) => line.split(':')[0])).toEqual([...REQUIRED_FIGURES]);
    for (const line of lines) expect(line).toMatch(/^[a-z_]+: [0-9.]+$/);
  });
});

describe('figures of a run that broke the rules', () => {
  it('flag a second applied report and a failed report after a completed one', () => {
    const figures = figuresOf(observation({ reports: [report(A, 'completed'), report(A, 'failed'), report(B, 'failed')] }));
    expect(figures.duplicate_reports).toBe(1);
    expect(figures.failed_after_upload).toBe(1);
    expect(checkInvariants(figures)).toHaveLength(2);
  });

  it('ignore reports the app refused', () => {
    const figures = figuresOf(observation({ reports: [report(A, 'completed'), report(A, 'failed', false), report(B, 'failed')] }));
    expect(figures.duplicate_reports).toBe(0);
    expect(figures.reports_total).toBe(3);
    expect(figures.reports_applied).toBe(2);
  });

  it('flag an item that ended failed while its video is stored', () => {
    const figures = figuresOf(observation({ videos: [video(A), video(B)] }));
    expect(figures.failed_after_upload).toBe(1);
    expect(figures.details.failedAfterUpload[0]?.item_id).toBe(B);
  });

  it('flag a stored video whose bytes differ from the Runway output', () => {
    const figures = figuresOf(observation({ videos: [video(A, 'something else')] }));
    expect(figures.videos_not_identical).toBe(1);
  });

  it('count items still pending or processing as lost', () => {
    const figures = figuresOf(observation({ workItems: [workItem(A, 'completed'), workItem(B, 'processing')], reports: [report(A, 'completed')] }));
    expect(figures.lost).toBe(1);
    expect(checkInvariants(figures).join('\n')).toMatch(/neither completed nor failed/);
  });

  it('count a failure no injected fault explains as unexpected, and break an invariant with it', () => {
    const figures = figuresOf(
      observation({ workItems: [workItem(A, 'completed'), workItem(B, 'failed', { error_message: 'photo: not found in storage' })] }),
    );
    expect(figures.failed_unexpected).toBe(1);
    expect(figures.details.unexpectedFailures).toEqual([{ item_id: B, detail: 'photo: not found in storage' }]);
    expect(checkInvariants(figures).join('\n')).toMatch(/no injected fault explains/);
  });

  it('count a timeout as unexpected when the task waited THROTTLED too long to finish in time', () => {
    const timedOut = (throttledMs: number): SandboxRunwayTask =>
      task(B, `task-${B}`, { status: 'CANCELLED', deleted: true, throttledMs, outputBytes: undefined, outputSha256: undefined });
    expect(figuresOf(observation({ tasks: [task(A), timedOut(500)] })).failed_timed_out).toBe(1);
    const figures = figuresOf(observation({ tasks: [task(A), timedOut(10_500)] }));
    expect(figures.failed_unexpected).toBe(1);
    expect(figures.details.unexpectedFailures[0]?.detail).toMatch(/waited THROTTLED 11 s of its 12 s/);
  });

  it('flag more THROTTLED tasks at once than the concurrency limit', () => {
    expect(checkInvariants(figuresOf(observation({ throttledAtOnceMax: 8 })))).toEqual([]);
    expect(checkInvariants(figuresOf(observation({ throttledAtOnceMax: 9 }))).join('\n')).toMatch(/THROTTLED at once, more than the limit of 8/);
  });
});

describe('Runway tasks per generation', () => {
  const failedTransiently = (id: string, code = 'INTERNAL'): SandboxRunwayTask =>
    // INTERNAL fails at the end of its 2 s generation.
    task(B, id, { status: 'FAILED', failureCode: code, createdAt: iso(100), outputBytes: undefined, outputSha256: undefined });
  const regenerationFailed = 'runway: INTERNAL — a temporary internal failure at Runway (after 2 generations)';

  it('count a new task after a transient failure as a regeneration, not as a second create', () => {
    const figures = figuresOf(
      observation({
        workItems: [workItem(A, 'completed'), workItem(B, 'failed', { error_message: regenerationFailed })],
        tasks: [task(A), failedTransiently('first'), task(B, 'second', { status: 'FAILED', failureCode: 'THIRD_PARTY.UNAVAILABLE', createdAt: iso(2_500) })],
      }),
    );
    expect(figures).toMatchObject({ regenerations: 1, runway_creates_per_generation_max: 1, runway_tasks_per_attempt_max: 2 });
    expect(figures.failed_regenerated_transient).toBe(1);
    expect(checkInvariants(figures)).toEqual([]);
  });

  it('flag a second task created while the first had not failed (a second create for one generation)', () => {
    const figures = figuresOf(observation({ tasks: [task(A), task(A, 'again', { createdAt: iso(1_000) }), task(B)] }));
    expect(figures.runway_creates_per_generation_max).toBe(2);
    expect(checkInvariants(figures)[0]).toMatch(/more than one Runway task for one generation/);
  });

  it('flag a third generation when one regeneration is allowed', () => {
    const third = task(B, 'third', { status: 'FAILED', failureCode: 'INTERNAL', createdAt: iso(5_000) });
    const second = task(B, 'second', { status: 'FAILED', failureCode: 'INTERNAL', createdAt: iso(2_500) });
    const figures = figuresOf(observation({ tasks: [task(A), failedTransiently('first'), second, third] }));
    expect(figures.runway_tasks_per_attempt_max).toBe(3);
    expect(checkInvariants(figures).join('\n')).toMatch(/more Runway tasks in a lease attempt than the 2 generation/);
  });

  it('count tasks on either side of a lease given back as two attempts', () => {
    const second = task(B, 'second', { status: 'FAILED', failureCode: 'INTERNAL', createdAt: iso(2_500) });
    const third = task(B, 'third', { status: 'FAILED', failureCode: 'INTERNAL', createdAt: iso(9_000) });
    const figures = figuresOf(
      observation({ tasks: [task(A), failedTransiently('first'), second, third], releases: [{ item_id: B, at: T0 + 3_000 }] }),
    );
    expect(figures.runway_tasks_per_attempt_max).toBe(2);
    expect(figures.runway_tasks_per_item_max).toBe(3);
    expect(checkInvariants(figures)).toEqual([]);
  });

  it('count a transient failure reported without its new generation as unexpected', () => {
    const figures = figuresOf(
      observation({
        workItems: [
          workItem(A, 'completed'),
          workItem(B, 'failed', {
            error_message: 'runway: INTERNAL — a temporary internal failure at Runway (a new generation was refused: runway: create answered 502 (Bad gateway))',
          }),
        ],
        tasks: [task(A), failedTransiently('first')],
      }),
    );
    expect(figures.failed_unexpected).toBe(1);
  });

  it('count "after 2 generations" as unexpected when Runway made only one task', () => {
    const figures = figuresOf(
      observation({
        workItems: [workItem(A, 'completed'), workItem(B, 'failed', { error_message: regenerationFailed })],
        tasks: [task(A), failedTransiently('first')],
      }),
    );
    expect(figures.failed_unexpected).toBe(1);
    expect(figures.details.unexpectedFailures[0]?.detail).toMatch(/Runway made 1 tasks/);
  });
});

describe('outputs that are not a video', () => {
  const notVideo = "output: Runway's output is not a video (text/html, 1.2 KB)";

  it('accept a not-a-video failure when the task served HTML', () => {
    const figures = figuresOf(
      observation({
        workItems: [workItem(A, 'completed'), workItem(B, 'failed', { error_message: notVideo })],
        tasks: [task(A), task(B, `task-${B}`, { htmlOutput: true, htmlOutputsServed: 2 })],
      }),
    );
    expect(figures.failed_not_a_video).toBe(1);
    expect(figures.failed_unexpected).toBe(0);
  });

  it('count a not-a-video failure as unexpected when no HTML was ever served', () => {
    const figures = figuresOf(observation({ workItems: [workItem(A, 'completed'), workItem(B, 'failed', { error_message: notVideo })] }));
    expect(figures.failed_unexpected).toBe(1);
  });

  it('flag a stored video made of the HTML page', () => {
    const figures = figuresOf(observation({ videos: [video(A, HTML_SHA)] }));
    expect(figures.html_outputs_stored).toBe(1);
    expect(checkInvariants(figures).join('\n')).toMatch(/HTML page\(s\) stored as a video/);
  });

  it('flag a video stored for a task that only ever served HTML', () => {
    const figures = figuresOf(observation({ tasks: [task(A, `task-${A}`, { htmlOutput: true, htmlOutputsServed: 1 }), task(B)] }));
    expect(figures.html_outputs_stored).toBe(1);
  });
});

describe('the stall check', () => {
  /**
   * The report defect: the video is stored 3 s in, the completed report meets three 500s,
   * and from then on every delivery only heartbeats the lease (so the report never landed)
   * and answers 503, until the report finally lands a minute later.
   */
  const stuckReport = (): Partial<ChaosObservation> => ({
    itemIds: [A],
    workItems: [workItem(A, 'completed')],
    reports: [
      report(A, 'completed', false, 3_100),
      report(A, 'completed', false, 3_200),
      report(A, 'completed', false, 3_300),
      report(A, 'completed', true, 63_000),
    ],
    leaseSamples: [leased(A, 0), ...heartbeats(A, 3_000, 63_000)],
    tasks: [task(A)],
    taskPolls: polls(`task-${A}`, 1_400, 2_500),
    videos: [video(A)],
    watchedUntilMs: T0 + 64_000,
  });

  it('flags a completed report that keeps failing while the lease is heartbeated', () => {
    const figures = figuresOf(observation(stuckReport()));
    expect(figures.stalled_items).toBe(1);
    expect(figures.max_no_progress_seconds).toBe(60);
    expect(figures.details.stalledItems[0]?.detail).toMatch(/^60 s held without progress, from 3 s to 63 s/);
    expect(checkInvariants(figures).join('\n')).toMatch(/held longer than 26.9 s without progress/);
  });

  it('flags such an item when the report never lands before the run ends', () => {
    const stuck = stuckReport();
    const figures = figuresOf(
      observation({
        ...stuck,
        workItems: [workItem(A, 'processing')],
        reports: (stuck.reports ?? []).filter((entry) => !entry.applied),
      }),
    );
    expect(figures.stalled_items).toBe(1);
    expect(figures.details.stalledItems[0]?.detail).toMatch(/to the end of the run/);
  });

  it('does not flag an item whose report lands at the next delivery', () => {
    const figures = figuresOf(
      observation({
        ...stuckReport(),
        reports: [report(A, 'completed', false, 3_100), report(A, 'completed', true, 3_600)],
        leaseSamples: [leased(A, 0), leased(A, 3_000)],
      }),
    );
    expect(figures.stalled_items).toBe(0);
    expect(figures.max_no_progress_seconds).toBe(1.3);
  });

  it('counts a lease that lapsed unused up to its end, not the wait in the queue after it', () => {
    // The lease answer was lost: nobody touched the item until its lease lapsed at 15 s; it
    // was leased again at 50 s, when a Runway slot was free.
    const figures = figuresOf(
      observation({
        itemIds: [A],
        workItems: [workItem(A, 'completed')],
        reports: [report(A, 'completed', true, 54_000)],
        leaseSamples: [leased(A, 0), leased(A, 50_000), leased(A, 52_000)],
        tasks: [task(A, `task-${A}`, { createdAt: iso(50_100) })],
        taskPolls: polls(`task-${A}`, 51_500, 52_500),
        videos: [video(A, `sha-task-${A}`, 53_000)],
        watchedUntilMs: T0 + 55_000,
      }),
    );
    expect(figures.max_no_progress_seconds).toBe(15);
    expect(figures.stalled_items).toBe(0);
    expect(figures.details.longestQuiet).toEqual({ item_id: A, detail: '15 s held without progress, from 0 s to 50 s after its first lease' });
  });

  it('does not count the time an item given back waits in the queue', () => {
    const figures = figuresOf(
      observation({
        itemIds: [A],
        workItems: [workItem(A, 'completed')],
        reports: [report(A, 'completed', true, 94_000)],
        leaseSamples: [leased(A, 0), released(A, 200), leased(A, 90_000)],
        tasks: [task(A, `task-${A}`, { createdAt: iso(90_100) })],
        taskPolls: polls(`task-${A}`, 91_500, 92_500),
        videos: [video(A, `sha-task-${A}`, 93_000)],
        watchedUntilMs: T0 + 95_000,
      }),
    );
    expect(figures.max_no_progress_seconds).toBe(1.4);
    expect(figures.stalled_items).toBe(0);
  });

  it('does not count polls of a task waiting THROTTLED as progress', () => {
    // Throttled for 40 s, polled every 5 s meanwhile, heartbeated all along.
    const throttled = task(A, `task-${A}`, { throttledMs: 40_000 });
    const figures = figuresOf(
      observation({
        itemIds: [A],
        workItems: [workItem(A, 'completed')],
        reports: [report(A, 'completed', true, 44_000)],
        leaseSamples: [leased(A, 0), ...heartbeats(A, 3_000, 43_000)],
        tasks: [throttled],
        taskPolls: polls(`task-${A}`, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_500, 42_500),
        videos: [video(A, `sha-task-${A}`, 43_000)],
        watchedUntilMs: T0 + 45_000,
      }),
    );
    expect(figures.max_no_progress_seconds).toBe(40.4);
    expect(figures.stalled_items).toBe(1);
  });
});
