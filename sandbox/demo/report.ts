import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { usdOf } from '../../lib/decide/credits.js';
import type { Sandbox } from '../index.js';
import { checkImage, type ReceivedImage } from '../runway-image-check.js';
import type { SeedItem } from '../seed.js';

/** What the demo prints: one line per change of an item, and a final table. */

export interface DemoRow {
  readonly item: string;
  readonly photo: string;
  readonly model: string;
  readonly duration: string;
  readonly ratio: string;
  /** What the video cost, as the worker counts it: Runway's figure for the item's task. */
  readonly credits: string;
  readonly outcome: string;
  readonly result: string;
}

/** `25 ($0.25)`: credits and what they cost at Runway's price (1 credit = $0.01). */
export function describeCredits(credits: number): string {
  return `${credits} ($${usdOf(credits).toFixed(2)})`;
}

/** An item is finished once it has left `processing` with a report. */
export function allReported(sandbox: Sandbox, items: readonly SeedItem[]): boolean {
  return items.every((seed) => {
    const item = sandbox.app.item(seed.item_id);
    return item !== undefined && (item.status === 'completed' || item.status === 'failed') && item.reports.length > 0;
  });
}

export function demoRows(sandbox: Sandbox, items: readonly SeedItem[]): DemoRow[] {
  return items.map((seed) => {
    const item = sandbox.app.item(seed.item_id);
    const taskId = item?.veo_operation_id ?? undefined;
    const task = taskId ? sandbox.runway.task(taskId) : undefined;
    const video = item?.video_storage_path ? sandbox.storage.filePath('generated-videos', item.video_storage_path) : undefined;
    return {
      item: seed.item_id.slice(0, 8),
      photo: seed.photo,
      model: task?.model ?? '-',
      duration: task ? `${task.duration} s` : '-',
      ratio: task?.ratio ?? '-',
      // The sandbox prices a task at create and charges that when it succeeds; a failed task
      // names no cost, so the worker counts the estimate at create, as here.
      credits: task ? describeCredits(task.credits) : '-',
      outcome: item?.status ?? 'missing',
      result:
        item?.status === 'completed'
          ? video
            ? path.relative(process.cwd(), video)
            : (item.video_storage_path ?? '')
          : (item?.error_message ?? '-'),
    };
  });
}

/** One photo as the app stored it and as Runway received it from the worker. */
export interface PhotoRow {
  readonly item: string;
  readonly photo: string;
  readonly stored: string;
  readonly received: string;
}

function describeImage(image: ReceivedImage | undefined): string {
  if (!image) return '-';
  const metadata = image.metadata.length === 0 ? 'no metadata' : image.metadata.join(', ');
  const kilobytes = `${(image.bytes / 1024).toFixed(1)} KB`;
  return `${image.format} ${image.width}x${image.height}, ${kilobytes}, orientation ${image.orientation}, ${metadata}`;
}

/**
 * What the worker did to each photo: the stored file (phones store pixels sideways with an
 * EXIF orientation, GPS and camera details) beside what the sandbox Runway received.
 */
export async function photoRows(sandbox: Sandbox, items: readonly SeedItem[]): Promise<PhotoRow[]> {
  return Promise.all(
    items.map(async (seed) => {
      const file = sandbox.storage.filePath('group-photos', seed.photo_storage_path);
      const stored = file ? (await checkImage(await readFile(file)))?.image : undefined;
      const item = sandbox.app.item(seed.item_id);
      const taskId = item?.veo_operation_id ?? undefined;
      const task = taskId ? sandbox.runway.task(taskId) : undefined;
      return { item: seed.item_id.slice(0, 8), photo: seed.photo, stored: describeImage(stored), received: describeImage(task?.promptImage) };
    }),
  );
}

export function formatPhotoTable(rows: readonly PhotoRow[]): string {
  return formatColumns({ item: 'item', photo: 'photo', stored: 'stored by the app', received: 'received by Runway' }, rows);
}

export function formatTable(rows: readonly DemoRow[]): string {
  const header: DemoRow = {
    item: 'item',
    photo: 'photo',
    model: 'model',
    duration: 'duration',
    ratio: 'ratio',
    credits: 'credits',
    outcome: 'outcome',
    result: 'video / error',
  };
  return formatColumns(header, rows);
}

/** Columns padded to their widest cell; the last one is left ragged. */
function formatColumns<Key extends string>(header: Readonly<Record<Key, string>>, rows: readonly Readonly<Record<Key, string>>[]): string {
  type Row = Readonly<Record<Key, string>>;
  const keys = Object.keys(header) as Key[];
  const all = [header, ...rows];
  const widths = keys.map((key) => Math.max(...all.map((row) => row[key].length)));
  const line = (row: Row): string =>
    keys
      .map((key, i) => (i === keys.length - 1 ? row[key] : row[key].padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w, i) => '-'.repeat(i === keys.length - 1 ? Math.min(w, 60) : w)).join('  ');
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** One line on where an item stands: its status in the app and its Runway task. */
export function progressLine(sandbox: Sandbox, seed: SeedItem, runwayTaskId: string | undefined): string {
  const item = sandbox.app.item(seed.item_id);
  const taskId = item?.veo_operation_id ?? runwayTaskId;
  const task = taskId ? sandbox.runway.task(taskId) : undefined;
  const parts = [`${seed.item_id.slice(0, 8)} (${seed.photo})`, item?.status ?? 'missing'];
  if (task) parts.push(`runway ${task.status}${task.progress !== undefined && task.status === "RUNNING" ? ` ${Math.floor(task.progress * 4) * 25}%` : ""}`);
  if (item?.status === 'completed') parts.push(`video ${item.video_storage_path ?? ''}`);
  if (item?.status === 'failed') parts.push(item.error_message ?? '');
  return parts.join(' · ');
}
