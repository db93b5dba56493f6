import type { ReportRecord, WorkItem } from '../sandbox/app-api.js';
import type { SandboxRunwayTask } from '../sandbox/runway.js';
import type { StoredObject } from '../sandbox/storage.js';
import { classifyFailure, isExpectedFailure, type FailureClass } from './classify.js';
import { itemIdOfPrompt } from './items.js';
import type { Leak } from './leaks.js';

/**
 * The figures of a chaos run, computed from what the sandbox services saw (the app's items
 * and every report that reached it, Runway's tasks, storage's objects) rather than from
 * what the worker believes. Pure, so it can be checked on hand-made observations.
 */

/** Printed first, in this order (the list). */
export const REQUIRED_FIGURES = [
  'items',
  'completed',
  'failed_expected',
  'failed_unexpected',
  'lost',
  'duplicate_reports',
  'runway_creates_per_item_max',
  'uploads_per_item_max',
  'failed_after_upload',
  'leaked_secrets',
  'wall_seconds',
] as const;

/** Printed after the required ones. */
export const EXTRA_FIGURES = [
  'failed_moderation',
  'failed_timed_out',
  'failed_transient',
  'videos_not_identical',
  'runway_tasks_unmapped',
  'upload_attempts_per_item_max',
  'runway_tasks_created',
  'runway_tasks_cancelled',
  'reports_total',
  'reports_applied',
  'reports_response_lost',
  'qstash_published',
  'qstash_deliveries',
  'duplicates_injected',
  'log_lines',
] as const;

export type FigureName = (typeof REQUIRED_FIGURES)[number] | (typeof EXTRA_FIGURES)[number];

export interface ItemNote {
  readonly item_id: string;
  readonly detail: string;
}

/** Which items are behind the figures that must stay at zero, for digging. */
export interface ChaosDetails {
  readonly seed: number;
  readonly unexpectedFailures: readonly ItemNote[];
  readonly lostItems: readonly ItemNote[];
  readonly duplicateReports: readonly ItemNote[];
  readonly extraRunwayTasks: readonly ItemNote[];
  readonly extraUploads: readonly ItemNote[];
  readonly failedAfterUpload: readonly ItemNote[];
  readonly videosNotIdentical: readonly ItemNote[];
  readonly unmappedTasks: readonly string[];
  readonly leaks: readonly Leak[];
  readonly logFile: string | undefined;
}

export type ChaosFigures = Readonly<Record<FigureName, number>> & { readonly details: ChaosDetails };

export interface ChaosObservation {
  readonly seed: number;
  /** The item ids that were seeded. */
  readonly itemIds: readonly string[];
  /** `sandbox.app.items()` at the end. */
  readonly workItems: readonly WorkItem[];
  /** Every report that reached the app's report logic, oldest first. */
  readonly reports: readonly ReportRecord[];
  readonly tasks: readonly SandboxRunwayTask[];
  /** Objects in the `generated-videos` bucket. */
  readonly videos: readonly StoredObject[];
  /** Upload attempts storage saw for `videos/<item>.mp4`. */
  readonly uploadAttempts: (itemId: string) => number;
  /** sha256 of the bytes the sandbox Runway serves as a task's output. */
  readonly outputSha256: (taskId: string) => string;
  readonly qstash: { readonly published: number; readonly deliveries: number; readonly duplicatesInjected: number };
  readonly logLines: number;
  readonly leaks: readonly Leak[];
  readonly wallMs: number;
  readonly logFile?: string;
}

const VIDEO_PATH = /^videos\/(.+)\.mp4$/;

function groupBy<T>(values: readonly T[], keyOf: (value: T) => string | undefined): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const value of values) {
    const key = keyOf(value);
    if (key === undefined) continue;
    const group = groups.get(key);
    if (group) group.push(value);
    else groups.set(key, [value]);
  }
  return groups;
}

const maxOf = (values: Iterable<number>): number => Math.max(0, ...values);

function videoProblem(video: StoredObject, item: WorkItem | undefined, tasks: readonly SandboxRunwayTask[], sha: (id: string) => string): string | undefined {
  const taskId = item?.veo_operation_id ?? (tasks.length === 1 ? tasks[0]?.id : undefined);
  const task = tasks.find((candidate) => candidate.id === taskId);
  if (!task) return `no Runway task of this item matches the video (veo_operation_id ${String(item?.veo_operation_id)})`;
  if (video.contentType !== 'video/mp4') return `stored as ${video.contentType}`;
  if (task.outputBytes !== undefined && video.size !== task.outputBytes) return `${video.size} bytes stored, Runway served ${task.outputBytes}`;
  if (video.sha256 !== sha(task.id)) return `sha256 differs from Runway task ${task.id}'s output`;
  return undefined;
}

export function figuresOf(observation: ChaosObservation): ChaosFigures {
  const seeded = new Set(observation.itemIds);
  const byId = new Map(observation.workItems.map((item) => [item.item_id, item]));
  const reportsByItem = groupBy(observation.reports, (report) => report.item_id);
  const tasksByItem = groupBy(observation.tasks, (task) => itemIdOfPrompt(task.promptText));
  const videosByItem = groupBy(observation.videos, (video) => VIDEO_PATH.exec(video.path)?.[1]);

  const failures = new Map<FailureClass, number>();
  const unexpectedFailures: ItemNote[] = [];
  const lostItems: ItemNote[] = [];
  let completed = 0;
  for (const itemId of observation.itemIds) {
    const item = byId.get(itemId);
    if (item?.status === 'completed') {
      completed += 1;
    } else if (item?.status === 'failed') {
      const kind = classifyFailure(item.error_message);
      failures.set(kind, (failures.get(kind) ?? 0) + 1);
      if (!isExpectedFailure(kind)) unexpectedFailures.push({ item_id: itemId, detail: item.error_message ?? '(no message)' });
    } else {
      const lease = item?.leased_until ? `, leased until ${item.leased_until}` : '';
      lostItems.push({ item_id: itemId, detail: item ? `${item.status}${lease}, retry_count ${item.retry_count}` : 'missing from the app' });
    }
  }

  const duplicateReports: ItemNote[] = [];
  const failedAfterUpload: ItemNote[] = [];
  for (const itemId of observation.itemIds) {
    const applied = (reportsByItem.get(itemId) ?? []).filter((report) => report.applied);
    if (applied.length > 1) {
      duplicateReports.push({ item_id: itemId, detail: applied.map((report) => `${report.status}@${report.at}`).join(', ') });
    }
    const firstCompleted = applied.findIndex((report) => report.status === 'completed');
    const failedLater = firstCompleted !== -1 && applied.slice(firstCompleted + 1).some((report) => report.status === 'failed');
    const video = videosByItem.get(itemId);
    if (failedLater || (byId.get(itemId)?.status === 'failed' && video !== undefined)) {
      failedAfterUpload.push({
        item_id: itemId,
        detail: failedLater ? 'failed report applied after completed' : `failed while ${video?.[0]?.path ?? 'a video'} is stored`,
      });
    }
  }

  const extraRunwayTasks: ItemNote[] = [];
  for (const [itemId, tasks] of tasksByItem) {
    if (tasks.length > 1) extraRunwayTasks.push({ item_id: itemId, detail: tasks.map((task) => `${task.id} ${task.status}`).join(', ') });
  }
  const extraUploads: ItemNote[] = [];
  const videosNotIdentical: ItemNote[] = [];
  for (const [itemId, videos] of videosByItem) {
    if (videos.length > 1) extraUploads.push({ item_id: itemId, detail: `${videos.length} stored videos` });
    for (const video of videos) {
      const problem = videoProblem(video, byId.get(itemId), tasksByItem.get(itemId) ?? [], observation.outputSha256);
      if (problem) videosNotIdentical.push({ item_id: itemId, detail: problem });
    }
  }
  const unmappedTasks = observation.tasks
    .filter((task) => {
      const itemId = itemIdOfPrompt(task.promptText);
      return itemId === undefined || !seeded.has(itemId);
    })
    .map((task) => task.id);

  const count = (kind: FailureClass): number => failures.get(kind) ?? 0;
  const failedExpected = count('moderation') + count('timed-out') + count('daily-cap') + count('transient-exhausted');
  return {
    items: observation.itemIds.length,
    completed,
    failed_expected: failedExpected,
    failed_unexpected: count('unexpected'),
    lost: lostItems.length,
    duplicate_reports: duplicateReports.length,
    runway_creates_per_item_max: maxOf([...tasksByItem.values()].map((tasks) => tasks.length)),
    uploads_per_item_max: maxOf([...videosByItem.values()].map((videos) => videos.length)),
    failed_after_upload: failedAfterUpload.length,
    leaked_secrets: observation.leaks.length,
    wall_seconds: Math.round(observation.wallMs / 100) / 10,
    failed_moderation: count('moderation'),
    failed_timed_out: count('timed-out'),
    failed_transient: count('transient-exhausted') + count('daily-cap'),
    videos_not_identical: videosNotIdentical.length,
    runway_tasks_unmapped: unmappedTasks.length,
    upload_attempts_per_item_max: maxOf(observation.itemIds.map(observation.uploadAttempts)),
    runway_tasks_created: observation.tasks.length,
    runway_tasks_cancelled: observation.tasks.filter((task) => task.deleted).length,
    reports_total: observation.reports.length,
    reports_applied: observation.reports.filter((report) => report.applied).length,
    reports_response_lost: observation.reports.filter((report) => report.responseLost).length,
    qstash_published: observation.qstash.published,
    qstash_deliveries: observation.qstash.deliveries,
    duplicates_injected: observation.qstash.duplicatesInjected,
    log_lines: observation.logLines,
    details: {
      seed: observation.seed,
      unexpectedFailures,
      lostItems,
      duplicateReports,
      extraRunwayTasks,
      extraUploads,
      failedAfterUpload,
      videosNotIdentical,
      unmappedTasks,
      leaks: observation.leaks,
      logFile: observation.logFile,
    },
  };
}

/** One `name: value` line per figure, the required ones first. */
export function formatFigures(figures: ChaosFigures): string[] {
  return [...REQUIRED_FIGURES, ...EXTRA_FIGURES].map((name) => `${name}: ${figures[name]}`);
}

/**
 * The invariants of design §4 as this run can observe them; one sentence per broken one.
 * One worker id and no admin retry means an item has a single chain of lease attempts, and
 * only an attempt that never reached Runway is ever followed by another: so "at most one
 * Runway task per lease attempt" is "at most one per item" here.
 */
export function checkInvariants(figures: ChaosFigures): string[] {
  const { details } = figures;
  const broken: string[] = [];
  const items = (notes: readonly ItemNote[]): string =>
    notes
      .slice(0, 5)
      .map((note) => `${note.item_id} (${note.detail})`)
      .join('; ') + (notes.length > 5 ? `; and ${notes.length - 5} more` : '');

  if (figures.runway_creates_per_item_max > 1) {
    broken.push(`more than one Runway task for an item (max ${figures.runway_creates_per_item_max}): ${items(details.extraRunwayTasks)}`);
  }
  if (figures.runway_tasks_unmapped > 0) {
    broken.push(`${figures.runway_tasks_unmapped} Runway task(s) whose prompt names no seeded item: ${details.unmappedTasks.slice(0, 5).join(', ')}`);
  }
  if (figures.uploads_per_item_max > 1) broken.push(`more than one video stored for an item: ${items(details.extraUploads)}`);
  if (figures.videos_not_identical > 0) {
    broken.push(`${figures.videos_not_identical} stored video(s) not byte-identical to their Runway output: ${items(details.videosNotIdentical)}`);
  }
  if (figures.duplicate_reports > 0) {
    broken.push(`${figures.duplicate_reports} item(s) with more than one applied report: ${items(details.duplicateReports)}`);
  }
  if (figures.failed_after_upload > 0) {
    broken.push(`${figures.failed_after_upload} item(s) failed after their video was uploaded: ${items(details.failedAfterUpload)}`);
  }
  if (figures.lost > 0) broken.push(`${figures.lost} item(s) neither completed nor failed at the end: ${items(details.lostItems)}`);
  if (figures.leaked_secrets > 0) {
    const sample = details.leaks
      .slice(0, 5)
      .map((leak) => `${leak.kind} in ${leak.where}: ${leak.excerpt}`)
      .join('; ');
    broken.push(`${figures.leaked_secrets} secret(s) in logs or error messages: ${sample}`);
  }
  const accounted = figures.completed + figures.failed_expected + figures.failed_unexpected + figures.lost;
  if (accounted !== figures.items) broken.push(`items do not add up: ${accounted} accounted for, ${figures.items} seeded`);
  return broken;
}
