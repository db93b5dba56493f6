import { describe, expect, it } from 'vitest';
import { checkInvariants, figuresOf, formatFigures, REQUIRED_FIGURES, type ChaosObservation } from '../../dev/chaos/figures.js';
import type { ReportRecord, WorkItem } from '../../dev/sandbox/app-api.js';
import type { SandboxRunwayTask } from '../../dev/sandbox/runway.js';
import type { StoredObject } from '../../dev/sandbox/storage.js';

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';

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

function report(itemId: string, status: ReportRecord['status'], applied = true): ReportRecord {
  return {
    at: '2026-11-01T00:00:00.000Z',
    item_id: itemId,
    worker_id: 'runway-worker',
    status,
    video_storage_path: status === 'completed' ? `videos/${itemId}.mp4` : null,
    error_message: status === 'failed' ? 'runway: timed out after 12 s (last status RUNNING)' : null,
    veo_operation_id: `task-${itemId}`,
    httpStatus: applied ? 200 : 403,
    applied,
    responseLost: false,
  };
}

function task(itemId: string, id = `task-${itemId}`): SandboxRunwayTask {
  return {
    id,
    model: 'gen4_turbo',
    ratio: '1104:832',
    duration: 5,
    promptText: `prompt (chaos item ${itemId})`,
    promptImageKind: 'data',
    status: 'SUCCEEDED',
    progress: undefined,
    createdAt: '2026-11-01T00:00:00.000Z',
    failureCode: undefined,
    failure: undefined,
    credits: 25,
    outputBytes: 10,
    outputSha256: `sha-${id}`,
    deleted: false,
    polls: 3,
  };
}

function video(itemId: string, sha256 = `sha-task-${itemId}`): StoredObject {
  return {
    bucket: 'generated-videos',
    path: `videos/${itemId}.mp4`,
    size: 10,
    sha256,
    contentType: 'video/mp4',
    uploads: 1,
    hasBytes: false,
    storedAt: 0,
  };
}

function observation(overrides: Partial<ChaosObservation> = {}): ChaosObservation {
  return {
    seed: 1,
    itemIds: [A, B],
    workItems: [workItem(A, 'completed'), workItem(B, 'failed', { error_message: 'runway: timed out after 12 s (last status RUNNING)' })],
    reports: [report(A, 'completed'), report(B, 'failed')],
    tasks: [task(A), task(B)],
    videos: [video(A)],
    uploadAttempts: () => 1,
    outputSha256: (taskId) => `sha-${taskId}`,
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
      runway_creates_per_item_max: 1,
      uploads_per_item_max: 1,
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

  it('flag a second Runway task for one item, mapped through its prompt', () => {
    const figures = figuresOf(observation({ tasks: [task(A), task(A, 'second'), task(B)] }));
    expect(figures.runway_creates_per_item_max).toBe(2);
    expect(checkInvariants(figures)[0]).toMatch(/more than one Runway task/);
  });

  it('flag a stored video whose bytes differ from the Runway output', () => {
    const figures = figuresOf(observation({ videos: [video(A, 'something else')] }));
    expect(figures.videos_not_identical).toBe(1);
  });

  it('count items still pending or processing as lost', () => {
    const figures = figuresOf(observation({ workItems: [workItem(A, 'completed'), workItem(B, 'processing')] }));
    expect(figures.lost).toBe(1);
    expect(checkInvariants(figures).join('\n')).toMatch(/neither completed nor failed/);
  });

  it('count a failure no injected fault explains as unexpected', () => {
    const figures = figuresOf(
      observation({ workItems: [workItem(A, 'completed'), workItem(B, 'failed', { error_message: 'photo: not found in storage' })] }),
    );
    expect(figures.failed_unexpected).toBe(1);
    expect(figures.details.unexpectedFailures).toEqual([{ item_id: B, detail: 'photo: not found in storage' }]);
  });
});
