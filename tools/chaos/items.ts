import type { FixturePhoto, SeedItem } from '../../sandbox/seed.js';

/**
 * The queue a chaos run seeds: unique prompts that carry the item id (so every sandbox
 * Runway task maps back to its item through `promptText`), the fixture photos, and the
 * app's frame presets. Everything comes from the given rng, so a seed replays the queue.
 */

/** Share of items whose photo the sandbox Runway refuses (an expected SAFETY failure). */
export const DEFAULT_REFUSED_SHARE = 0.03;

/** Photos Runway accepts, with their share of the rest of the queue. */
const ACCEPTED_PHOTOS: readonly (readonly [FixturePhoto, number])[] = [
  ['landscape.jpg', 0.5],
  ['portrait-exif6.jpg', 0.35],
  ['square.png', 0.15],
];

/** The UI presets (3/5/7/10 s at 24 fps) and null, the app's "default". */
const FRAME_NUMS: readonly (number | null)[] = [73, 121, 169, 241, null];

const SCENES = [
  'The camera slowly pushes in while warm light drifts across the scene and leaves sway in a soft breeze.',
  'A gentle smile spreads as the person turns toward the camera; hair moves lightly in the wind.',
  'Waves roll in quietly behind the group while the camera glides sideways along the shore.',
  'Candles flicker on the table and the camera drifts past glasses as friends laugh together.',
  'Snow falls softly in the background while the camera eases back to reveal the whole room.',
] as const;

const ITEM_MARKER = 'chaos item';
const ITEM_IN_PROMPT = new RegExp(`${ITEM_MARKER} ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})`);

function pick<T>(rng: () => number, values: readonly T[]): T {
  const value = values[Math.floor(rng() * values.length)];
  if (value === undefined) throw new Error('pick from an empty list');
  return value;
}

function weighted<T>(rng: () => number, entries: readonly (readonly [T, number])[]): T {
  const total = entries.reduce((sum, [, weight]) => sum + weight, 0);
  let draw = rng() * total;
  for (const [value, weight] of entries) {
    draw -= weight;
    if (draw < 0) return value;
  }
  const last = entries.at(-1);
  if (!last) throw new Error('weighted pick from an empty list');
  return last[0];
}

/** A v4-shaped UUID from the rng (the app's ids are UUIDs; these replay from a seed). */
export function uuidFrom(rng: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(rng() * 16).toString(16));
  hex[12] = '4';
  hex[16] = '89ab'.charAt(Math.floor(rng() * 4));
  const text = hex.join('');
  return `${text.slice(0, 8)}-${text.slice(8, 12)}-${text.slice(12, 16)}-${text.slice(16, 20)}-${text.slice(20)}`;
}

/** The item id a Runway task's `promptText` names, if it is a chaos prompt. */
export function itemIdOfPrompt(promptText: string | undefined): string | undefined {
  return promptText === undefined ? undefined : ITEM_IN_PROMPT.exec(promptText)?.[1];
}

function extensionOf(photo: FixturePhoto, rng: () => number): string {
  if (photo.endsWith('.png')) return 'png';
  // The app keeps the user's case (contract §1.1).
  return pick(rng, ['jpg', 'jpg', 'jpg', 'JPG', 'jpeg']);
}

/** Which positions get the refused photo: exactly round(count × share), spread by the rng. */
function refusedPositions(count: number, share: number, rng: () => number): Set<number> {
  const positions = Array.from({ length: count }, (_, index) => index);
  for (let index = positions.length - 1; index > 0; index -= 1) {
    const other = Math.floor(rng() * (index + 1));
    const held = positions[index] ?? index;
    positions[index] = positions[other] ?? other;
    positions[other] = held;
  }
  return new Set(positions.slice(0, Math.round(count * Math.max(0, Math.min(1, share)))));
}

export function chaosItems(count: number, rng: () => number, refusedShare: number = DEFAULT_REFUSED_SHARE): SeedItem[] {
  const refused = refusedPositions(count, refusedShare, rng);
  return Array.from({ length: count }, (_, index): SeedItem => {
    const itemId = uuidFrom(rng);
    const groupId = uuidFrom(rng);
    const photoId = uuidFrom(rng);
    const photo: FixturePhoto = refused.has(index) ? 'refused.jpg' : weighted(rng, ACCEPTED_PHOTOS);
    return {
      item_id: itemId,
      group_id: groupId,
      photo_id: photoId,
      prompt: `${pick(rng, SCENES)} (${ITEM_MARKER} ${itemId})`,
      frame_num: pick(rng, FRAME_NUMS),
      photo_storage_path: `${groupId}/${photoId}_original.${extensionOf(photo, rng)}`,
      photo,
      expectation: photo === 'refused.jpg' ? 'fails: Runway refuses the photo (SAFETY.INPUT.IMAGE)' : 'completes unless a fault ends it',
    };
  });
}
