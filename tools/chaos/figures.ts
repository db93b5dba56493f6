import type { ReportRecord, WorkItem } from '../../sandbox/app-api.js';
import type { SandboxRunwayTask } from '../../sandbox/runway.js';
import type { StoredObject } from '../../sandbox/storage.js';
import type { FailureClass } from './classify.js';
import { attemptsOf, createsPerGenerationMax, type Attempt } from './generations.js';
import { itemOutcomesOf, type ItemNote } from './item-outcomes.js';
import { itemIdOfPrompt } from './items.js';
import { leaseSpansOf } from './lease-watch.js';
import type { Leak } from './leaks.js';
import type { ChaosObservation } from './observation.js';
import { phaseClockOf, pollsThatSawChange, type PhaseClock } from './runway-phases.js';
import { longestQuiet, type ItemHistory, type Quiet } from './stalls.js';

export type { ItemNote } from './item-outcomes.js';
export type { ChaosObservation, ChaosSettings, ItemRequest } from './observation.js';

/**
 * The figures of a chaos run, computed from what the sandbox services saw (the app's items,
 * every report and release that reached it and its leases as sampled during the run; Runway's
 * tasks and the polls and cancels it received; storage's objects) rather than from what the
 * worker believes. Pure, so it can be checked on hand-made observations.
 */

/** Printed first, in this order: the headline figures and those an invariant bounds. */
export const REQUIRED_FIGURES = [
  'items',
  'completed',
  'failed_expected',
  'failed_unexpected',
  'lost',
  'duplicate_reports',
  'runway_creates_per_generation_max',
  'runway_tasks_per_attempt_max',
  'uploads_per_item_max',
  'failed_after_upload',
  'html_outputs_stored',
  'throttled_at_once_max',
  'max_no_progress_seconds',
  'stall_threshold_seconds',
  'stalled_items',
  'leaked_secrets',
  'wall_seconds',
] as const;

/** Printed after the required ones. */
export const EXTRA_FIGURES = [
  'failed_moderation',
  'failed_timed_out',
  'failed_regenerated_transient',
  'failed_not_a_video',
  'failed_transient',
  'regenerations',
  'runway_tasks_per_item_max',
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

/** Which items are behind the figures that must stay at zero, for digging. */
export interface ChaosDetails {
  readonly seed: number;
  readonly unexpectedFailures: readonly ItemNote[];
  readonly lostItems: readonly ItemNote[];
  readonly duplicateReports: readonly ItemNote[];
  /** Attempts with two tasks for one generation. */
  readonly extraRunwayTasks: readonly ItemNote[];
  /** Attempts with more tasks than one plus the regenerations allowed. */
  readonly tooManyGenerations: readonly ItemNote[];
  readonly extraUploads: readonly ItemNote[];
  readonly failedAfterUpload: readonly ItemNote[];
  readonly videosNotIdentical: readonly ItemNote[];
  readonly htmlStored: readonly ItemNote[];
  readonly stalledItems: readonly ItemNote[];
  /** The item behind `max_no_progress_seconds`, to see what the longest quiet stretch was. */
  readonly longestQuiet: ItemNote | undefined;
  readonly unmappedTasks: readonly string[];
  readonly leaks: readonly Leak[];
  /** The settings invariants are checked against. */
  readonly regenerationsAllowed: number;
  readonly concurrencyLimit: number | undefined;
  readonly logFile: string | undefined;
}

export type ChaosFigures = Readonly<Record<FigureName, number>> & { readonly details: ChaosDetails };

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
const seconds = (ms: number): number => Math.round(ms / 100) / 10;

function videoProblem(video: StoredObject, item: WorkItem | undefined, tasks: readonly SandboxRunwayTask[], sha: (id: string) => string): string | undefined {
  const taskId = item?.veo_operation_id ?? (tasks.length === 1 ? tasks[0]?.id : undefined);
  const task = tasks.find((candidate) => candidate.id === taskId);
  if (!task) return `no Runway task of this item matches the video (veo_operation_id ${String(item?.veo_operation_id)})`;
  if (video.contentType !== 'video/mp4') return `stored as ${video.contentType}`;
  if (task.outputBytes !== undefined && video.size !== task.outputBytes) return `${video.size} bytes stored, Runway served ${task.outputBytes}`;
  if (video.sha256 !== sha(task.id)) return `sha256 differs from Runway task ${task.id}'s output`;
  return undefined;
}

/** A stored video made of an HTML page: its bytes are the page, or its task only ever served the page. */
function htmlProblem(video: StoredObject, tasks: readonly SandboxRunwayTask[], htmlSha: string): string | undefined {
  if (video.sha256 === htmlSha) return `${video.path} holds the CDN's HTML page`;
  const htmlOnly = tasks.find((task) => task.status === 'SUCCEEDED' && task.htmlOutput);
  return htmlOnly === undefined ? undefined : `${video.path} stored although task ${htmlOnly.id} only ever served HTML`;
}

const describeAttempt = (attempt: Attempt): string => attempt.map(({ task, generation }) => `g${generation} ${task.id} ${task.status}`).join(', ');

function describeQuiet(quiet: Quiet, startedAtMs: number): string {
  const at = (ms: number): string => `${seconds(ms - startedAtMs)} s`;
  return `${seconds(quiet.ms)} s held without progress, from ${at(quiet.fromMs)} to ${quiet.unfinished ? 'the end of the run' : at(quiet.toMs)} after its first lease`;
}

/** The observation grouped by item, with every task's phase clock and its item's attempts. */
interface Indexed {
  readonly byId: ReadonlyMap<string, WorkItem>;
  readonly reportsByItem: ReadonlyMap<string, ReportRecord[]>;
  readonly tasksByItem: ReadonlyMap<string, SandboxRunwayTask[]>;
  readonly videosByItem: ReadonlyMap<string, StoredObject[]>;
  readonly attemptsByItem: ReadonlyMap<string, Attempt[]>;
  readonly clockOf: (task: SandboxRunwayTask) => PhaseClock;
}

function indexed(observation: ChaosObservation): Indexed {
  const { settings } = observation;
  const tasksByItem = groupBy(observation.tasks, (task) => itemIdOfPrompt(task.promptText));
  const releasesByItem = groupBy(observation.releases, (release) => release.item_id);
  const firstDelete = new Map<string, number>();
  for (const request of observation.taskDeletes) firstDelete.set(request.taskId, Math.min(request.at, firstDelete.get(request.taskId) ?? Infinity));
  const clocks = new Map(observation.tasks.map((task) => [task.id, phaseClockOf(task, settings.generationMs, firstDelete.get(task.id))]));
  const clockOf = (task: SandboxRunwayTask): PhaseClock => clocks.get(task.id) ?? phaseClockOf(task, settings.generationMs, undefined);
  const attemptsByItem = new Map(
    [...tasksByItem].map(([itemId, tasks]) => [itemId, attemptsOf(tasks, (releasesByItem.get(itemId) ?? []).map((release) => release.at), clockOf)]),
  );
  return {
    byId: new Map(observation.workItems.map((item) => [item.item_id, item])),
    reportsByItem: groupBy(observation.reports, (report) => report.item_id),
    tasksByItem,
    videosByItem: groupBy(observation.videos, (video) => VIDEO_PATH.exec(video.path)?.[1]),
    attemptsByItem,
    clockOf,
  };
}

function reportProblems(itemIds: readonly string[], ix: Indexed): { duplicateReports: ItemNote[]; failedAfterUpload: ItemNote[] } {
  const duplicateReports: ItemNote[] = [];
  const failedAfterUpload: ItemNote[] = [];
  for (const itemId of itemIds) {
    const applied = (ix.reportsByItem.get(itemId) ?? []).filter((report) => report.applied);
    if (applied.length > 1) {
      duplicateReports.push({ item_id: itemId, detail: applied.map((report) => `${report.status}@${report.at}`).join(', ') });
    }
    const firstCompleted = applied.findIndex((report) => report.status === 'completed');
    const failedLater = firstCompleted !== -1 && applied.slice(firstCompleted + 1).some((report) => report.status === 'failed');
    const video = ix.videosByItem.get(itemId);
    if (failedLater || (ix.byId.get(itemId)?.status === 'failed' && video !== undefined)) {
      failedAfterUpload.push({
        item_id: itemId,
        detail: failedLater ? 'failed report applied after completed' : `failed while ${video?.[0]?.path ?? 'a video'} is stored`,
      });
    }
  }
  return { duplicateReports, failedAfterUpload };
}

function generationProblems(ix: Indexed, regenerations: number): { extraRunwayTasks: ItemNote[]; tooManyGenerations: ItemNote[] } {
  const extraRunwayTasks: ItemNote[] = [];
  const tooManyGenerations: ItemNote[] = [];
  for (const [itemId, attempts] of ix.attemptsByItem) {
    for (const attempt of attempts) {
      if (createsPerGenerationMax(attempt) > 1) extraRunwayTasks.push({ item_id: itemId, detail: describeAttempt(attempt) });
      if (attempt.length > 1 + regenerations) tooManyGenerations.push({ item_id: itemId, detail: describeAttempt(attempt) });
    }
  }
  return { extraRunwayTasks, tooManyGenerations };
}

function storedVideoProblems(observation: ChaosObservation, ix: Indexed): { extraUploads: ItemNote[]; videosNotIdentical: ItemNote[]; htmlStored: ItemNote[] } {
  const extraUploads: ItemNote[] = [];
  const videosNotIdentical: ItemNote[] = [];
  const htmlStored: ItemNote[] = [];
  for (const [itemId, videos] of ix.videosByItem) {
    if (videos.length > 1) extraUploads.push({ item_id: itemId, detail: `${videos.length} stored videos` });
    const tasks = ix.tasksByItem.get(itemId) ?? [];
    for (const video of videos) {
      const problem = videoProblem(video, ix.byId.get(itemId), tasks, observation.outputSha256);
      if (problem) videosNotIdentical.push({ item_id: itemId, detail: problem });
      const html = htmlProblem(video, tasks, observation.htmlPageSha256);
      if (html) htmlStored.push({ item_id: itemId, detail: html });
    }
  }
  return { extraUploads, videosNotIdentical, htmlStored };
}

/** Every item's longest held stretch without progress; those over the threshold are stalled. */
function stalls(observation: ChaosObservation, ix: Indexed): { stalledItems: ItemNote[]; longestQuietMs: number; longestQuiet: ItemNote | undefined } {
  const { settings } = observation;
  const samplesByItem = groupBy(observation.leaseSamples, (sample) => sample.item_id);
  const pollsByTask = groupBy(observation.taskPolls, (poll) => poll.taskId);
  const stalledItems: ItemNote[] = [];
  let longestQuietMs = 0;
  let longest: ItemNote | undefined;
  for (const itemId of observation.itemIds) {
    const tasks = ix.tasksByItem.get(itemId) ?? [];
    const leaseSpans = leaseSpansOf(samplesByItem.get(itemId) ?? [], settings.leaseMs);
    const history: ItemHistory = {
      leaseSpans,
      tasksCreatedAtMs: tasks.map((task) => Date.parse(task.createdAt)),
      pollsThatSawChangeAtMs: tasks.flatMap((task) =>
        pollsThatSawChange(ix.clockOf(task), Date.parse(task.createdAt), (pollsByTask.get(task.id) ?? []).map((poll) => poll.at)),
      ),
      videosStoredAtMs: (ix.videosByItem.get(itemId) ?? []).map((video) => video.storedAt),
      reportsAppliedAtMs: (ix.reportsByItem.get(itemId) ?? []).filter((report) => report.applied).map((report) => Date.parse(report.at)),
    };
    const quiet = longestQuiet(history, observation.watchedUntilMs);
    const note = { item_id: itemId, detail: describeQuiet(quiet, leaseSpans[0]?.atMs ?? quiet.fromMs) };
    if (quiet.ms > longestQuietMs) {
      longestQuietMs = quiet.ms;
      longest = note;
    }
    if (quiet.ms > settings.stallThresholdMs) stalledItems.push(note);
  }
  return { stalledItems, longestQuietMs, longestQuiet: longest };
}

export function figuresOf(observation: ChaosObservation): ChaosFigures {
  const { settings } = observation;
  const seeded = new Set(observation.itemIds);
  const ix = indexed(observation);
  const outcomes = itemOutcomesOf(observation.itemIds, ix.byId, (itemId) => ({
    tasks: ix.tasksByItem.get(itemId) ?? [],
    attempts: ix.attemptsByItem.get(itemId) ?? [],
    timeoutMs: settings.runwayTimeoutMs,
    generationMs: settings.generationMs,
  }));
  const reports = reportProblems(observation.itemIds, ix);
  const generations = generationProblems(ix, settings.regenerations);
  const attempts = [...ix.attemptsByItem.values()].flat();
  const videos = storedVideoProblems(observation, ix);
  const stalled = stalls(observation, ix);
  const unmappedTasks = observation.tasks
    .filter((task) => {
      const itemId = itemIdOfPrompt(task.promptText);
      return itemId === undefined || !seeded.has(itemId);
    })
    .map((task) => task.id);

  const count = (kind: FailureClass): number => outcomes.failures.get(kind) ?? 0;
  const failedExpected = [...outcomes.failures].filter(([kind]) => kind !== 'unexpected').reduce((sum, [, n]) => sum + n, 0);
  return {
    items: observation.itemIds.length,
    completed: outcomes.completed,
    failed_expected: failedExpected,
    failed_unexpected: count('unexpected'),
    lost: outcomes.lostItems.length,
    duplicate_reports: reports.duplicateReports.length,
    runway_creates_per_generation_max: maxOf(attempts.map(createsPerGenerationMax)),
    runway_tasks_per_attempt_max: maxOf(attempts.map((attempt) => attempt.length)),
    uploads_per_item_max: maxOf([...ix.videosByItem.values()].map((stored) => stored.length)),
    failed_after_upload: reports.failedAfterUpload.length,
    html_outputs_stored: videos.htmlStored.length,
    throttled_at_once_max: observation.throttledAtOnceMax,
    max_no_progress_seconds: seconds(stalled.longestQuietMs),
    stall_threshold_seconds: seconds(settings.stallThresholdMs),
    stalled_items: stalled.stalledItems.length,
    leaked_secrets: observation.leaks.length,
    wall_seconds: seconds(observation.wallMs),
    failed_moderation: count('moderation'),
    failed_timed_out: count('timed-out'),
    failed_regenerated_transient: count('regenerated-transient'),
    failed_not_a_video: count('not-a-video'),
    failed_transient: count('transient-exhausted') + count('daily-cap'),
    regenerations: attempts.reduce((sum, attempt) => sum + attempt.length - 1, 0),
    runway_tasks_per_item_max: maxOf([...ix.tasksByItem.values()].map((tasks) => tasks.length)),
    videos_not_identical: videos.videosNotIdentical.length,
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
      unexpectedFailures: outcomes.unexpectedFailures,
      lostItems: outcomes.lostItems,
      ...reports,
      ...generations,
      ...videos,
      stalledItems: stalled.stalledItems,
      longestQuiet: stalled.longestQuiet,
      unmappedTasks,
      leaks: observation.leaks,
      regenerationsAllowed: settings.regenerations,
      concurrencyLimit: settings.concurrencyLimit,
      logFile: observation.logFile,
    },
  };
}

/** One `name: value` line per figure, the required ones first. */
export function formatFigures(figures: ChaosFigures): string[] {
  return [...REQUIRED_FIGURES, ...EXTRA_FIGURES].map((name) => `${name}: ${figures[name]}`);
}
