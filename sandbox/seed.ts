import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { SandboxApp, WorkItem } from './app-api.js';
import type { SandboxStorage } from './storage.js';

/** Demo photos committed next to this file. */
export const FIXTURE_PHOTOS = ['landscape.jpg', 'portrait-exif6.jpg', 'refused.jpg', 'square.png', 'panorama-4x1.jpg'] as const;
export type FixturePhoto = (typeof FIXTURE_PHOTOS)[number];

/** The marker the sandbox Runway looks for in image bytes to fail a task with that code. */
export const REFUSAL_MARKER = 'runway-sandbox:SAFETY.INPUT.IMAGE';

export interface SeedItem {
  readonly item_id: string;
  readonly group_id: string;
  readonly photo_id: string;
  readonly prompt: string;
  readonly frame_num: number | null;
  /** `{group_id}/{photo_id}_original.{ext}` in bucket `group-photos`. */
  readonly photo_storage_path: string;
  readonly photo: FixturePhoto;
  readonly inference_provider?: string;
  /** What a person watching the demo should expect. */
  readonly expectation: string;
}

export function fixturePath(photo: FixturePhoto): string {
  return fileURLToPath(new URL(`./fixtures/${photo}`, import.meta.url));
}

export function readFixture(photo: FixturePhoto): Promise<Buffer> {
  return readFile(fixturePath(photo));
}

/** Three items like the app's queue holds: a landscape, a portrait (EXIF-rotated, upper-case `.JPG`), a refused one. */
export function demoItems(): SeedItem[] {
  return [
    {
      item_id: '7c1e4a52-93d8-4f0b-b6a1-2f5d8e0c9a31',
      group_id: 'a3f9c2e1-5b7d-4e8a-9c6f-1d2e3f4a5b6c',
      photo_id: 'e5d4c3b2-a1f0-4e9d-8c7b-6a5f4e3d2c1b',
      prompt:
        'The camera slowly pushes in as warm evening light drifts across the hills; grass sways in a gentle breeze and a few birds cross the sky.',
      frame_num: 121,
      photo_storage_path: 'a3f9c2e1-5b7d-4e8a-9c6f-1d2e3f4a5b6c/e5d4c3b2-a1f0-4e9d-8c7b-6a5f4e3d2c1b_original.jpg',
      photo: 'landscape.jpg',
      expectation: 'completes as a landscape video (5 s on gen4_turbo)',
    },
    {
      item_id: '2b8f6d14-0e3a-4c57-a9d2-8f1e7b6c5d40',
      group_id: 'a3f9c2e1-5b7d-4e8a-9c6f-1d2e3f4a5b6c',
      photo_id: '0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c',
      prompt:
        'A soft smile spreads as the person turns slightly toward the camera; hair moves in a light wind and the background stays calm and softly blurred.',
      frame_num: 73,
      photo_storage_path: 'a3f9c2e1-5b7d-4e8a-9c6f-1d2e3f4a5b6c/0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c_original.JPG',
      photo: 'portrait-exif6.jpg',
      expectation: 'completes as a portrait video (EXIF orientation 6, 3 s)',
    },
    {
      item_id: 'c4d3e2f1-7a6b-4c5d-8e9f-0a1b2c3d4e5f',
      group_id: '5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9',
      photo_id: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d',
      prompt:
        'Friends laugh around a table as candles flicker; the camera drifts sideways past glasses and plates while the warm light pulses softly.',
      frame_num: null,
      photo_storage_path: '5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9/9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d_original.jpg',
      photo: 'refused.jpg',
      expectation: 'fails: Runway refuses the photo (SAFETY.INPUT.IMAGE)',
    },
  ];
}

export interface SeedTarget {
  readonly app: SandboxApp;
  readonly storage: SandboxStorage;
}

/** Puts each item's photo into the `group-photos` bucket and the item into the app's queue, oldest first. */
export async function seedSandbox(sandbox: SeedTarget, items: readonly SeedItem[]): Promise<WorkItem[]> {
  const seeded: WorkItem[] = [];
  const base = Date.now() - items.length * 1000;
  for (const [index, item] of items.entries()) {
    await sandbox.storage.putObject('group-photos', item.photo_storage_path, await readFixture(item.photo));
    seeded.push(
      sandbox.app.addItem({
        item_id: item.item_id,
        group_id: item.group_id,
        photo_id: item.photo_id,
        prompt: item.prompt,
        photo_storage_path: item.photo_storage_path,
        frame_num: item.frame_num,
        created_at: new Date(base + index * 1000).toISOString(),
        ...(item.inference_provider === undefined ? {} : { inference_provider: item.inference_provider }),
      }),
    );
  }
  return seeded;
}
