/**
 * The sandbox Runway's tasks, in creation order, and everything derived from them alone:
 * each task's phase (through the concurrency slot schedule), daily counts, and how many
 * tasks waited or generated at once.
 */
import { grantSlots, maxOverlap, type Span } from './runway-concurrency.js';
import type { ReceivedImage } from './runway-image-check.js';
import type { ImageToVideoRequest, RunwayModel } from './runway-models.js';
import type { PromptImageKind } from './runway-prompt-image.js';
import { isTerminal, slotHoldMs, taskPhaseAt, type TaskPhase, type TaskTimeline } from './runway-task-timeline.js';
import { utcDayStartMs } from './runway-tier.js';

export interface TaskRecord {
  readonly id: string;
  readonly request: ImageToVideoRequest;
  readonly promptImageKind: PromptImageKind;
  readonly promptImage: ReceivedImage | undefined;
  readonly promptImageBytes: Buffer | undefined;
  readonly credits: number;
  /** Its outputs answer a CDN's HTML error page instead of the video. */
  readonly htmlOutput: boolean;
  /** Change it only through {@link TaskRecords.cancel}: the slot schedule is recomputed after one. */
  timeline: TaskTimeline;
  deleted: boolean;
  polls: number;
  htmlOutputsServed: number;
}

export interface TaskRecords {
  add(task: TaskRecord): void;
  get(id: string): TaskRecord | undefined;
  has(id: string): boolean;
  /** Oldest first. */
  all(): readonly TaskRecord[];
  /** Cancels a task still in flight (its slot frees); a finished task keeps its outcome. */
  cancel(task: TaskRecord, nowMs: number): void;
  phaseOf(task: TaskRecord, nowMs: number): TaskPhase;
  /** Time the task spent THROTTLED up to `nowMs`. */
  throttledMs(task: TaskRecord, nowMs: number): number;
  /** Tasks of `model` created since midnight UTC. */
  dailyGenerations(model: RunwayModel, nowMs: number): number;
  maxThrottledAtOnce(model: RunwayModel | undefined, nowMs: number): number;
  maxActiveAtOnce(model: RunwayModel | undefined, nowMs: number): number;
}

export function createTaskRecords(concurrencyOf: (model: RunwayModel) => number | undefined): TaskRecords {
  const tasks = new Map<string, TaskRecord>();
  // The schedule depends on nothing but creations and cancellations: recompute it only after one.
  let version = 0;
  let schedule: { readonly version: number; readonly slots: ReadonlyMap<string, number | undefined> } | undefined;

  /** When the task got (or, as things stand, will get) its concurrency slot; undefined: never. */
  function slotAtOf(task: TaskRecord): number | undefined {
    if (schedule?.version !== version) {
      const ordered = [...tasks.values()];
      const granted = grantSlots(
        ordered.map(({ request, timeline }) => ({
          group: request.model,
          createdAtMs: timeline.createdAtMs,
          cancelledAtMs: timeline.cancelledAtMs,
          holdMs: slotHoldMs(timeline),
        })),
        concurrencyOf,
      );
      schedule = { version, slots: new Map(ordered.map((record, index) => [record.id, granted[index]])) };
    }
    return schedule.slots.get(task.id);
  }

  function throttledSpan(task: TaskRecord): Span {
    const { timeline } = task;
    const untilMs = Math.min(slotAtOf(task) ?? Number.POSITIVE_INFINITY, timeline.cancelledAtMs ?? Number.POSITIVE_INFINITY);
    return { fromMs: timeline.createdAtMs, untilMs };
  }

  function activeSpans(task: TaskRecord): Span[] {
    const slotAtMs = slotAtOf(task);
    if (slotAtMs === undefined) return [];
    const { timeline } = task;
    const untilMs = Math.min(slotAtMs + slotHoldMs(timeline), timeline.cancelledAtMs ?? Number.POSITIVE_INFINITY);
    return [{ fromMs: slotAtMs, untilMs }];
  }

  function ofModel(model: RunwayModel | undefined): TaskRecord[] {
    const all = [...tasks.values()];
    return model === undefined ? all : all.filter((task) => task.request.model === model);
  }

  const records: TaskRecords = {
    add(task) {
      tasks.set(task.id, task);
      version += 1;
    },
    get: (id) => tasks.get(id),
    has: (id) => tasks.has(id),
    all: () => [...tasks.values()],
    cancel(task, nowMs) {
      if (isTerminal(records.phaseOf(task, nowMs).status)) return;
      task.timeline = { ...task.timeline, cancelledAtMs: nowMs };
      version += 1;
    },
    phaseOf: (task, nowMs) => taskPhaseAt(task.timeline, slotAtOf(task), nowMs),
    throttledMs(task, nowMs) {
      const span = throttledSpan(task);
      return Math.max(0, Math.min(span.untilMs, nowMs) - span.fromMs);
    },
    dailyGenerations(model, nowMs) {
      const dayStartMs = utcDayStartMs(nowMs);
      let count = 0;
      for (const task of tasks.values()) {
        if (task.request.model === model && task.timeline.createdAtMs >= dayStartMs) count += 1;
      }
      return count;
    },
    maxThrottledAtOnce: (model, nowMs) => maxOverlap(ofModel(model).map(throttledSpan), nowMs),
    maxActiveAtOnce: (model, nowMs) => maxOverlap(ofModel(model).flatMap(activeSpans), nowMs),
  };
  return records;
}
