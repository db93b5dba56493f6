import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import type { ReceivedImage } from '../../sandbox/runway-image-check.js';
import { readFixture } from '../../sandbox/seed.js';
import { finishedUpload } from '../support/flow.js';
import { closeHarnesses, seedItem, startHarness, type Harness } from '../support/harness.js';
import { decode, grainyPixels, phoneJpeg } from '../support/photos.js';

afterEach(closeHarnesses);

/**
 * What Runway receives for real phone photos: upright pixels,
 * no metadata at all, inside Runway's input limits — checked on what the sandbox Runway
 * recorded, then carried through to a completed video.
 */

/** Runway's input limits (third-party docs): aspect 0.5..2, at most 7999 px a side. */
function expectInLimits(image: ReceivedImage): void {
  expect(image.width / image.height).toBeGreaterThanOrEqual(0.5);
  expect(image.width / image.height).toBeLessThanOrEqual(2);
  expect(Math.max(image.width, image.height)).toBeLessThanOrEqual(7999);
}

interface Through {
  readonly harness: Harness;
  readonly itemId: string;
  readonly received: ReceivedImage;
  readonly bytes: Buffer;
}

/** One photo from the app's storage to a completed report; what Runway got for it. */
async function throughTheWorker(photo: Buffer, frameNum = 121): Promise<Through> {
  const item = seedItem('landscape.jpg', { frame_num: frameNum });
  const harness = await startHarness({ items: [item], sandbox: { runway: { generationMs: 300, keepPromptImages: true } } });
  await harness.sandbox.storage.putObject('group-photos', item.photo_storage_path, photo);

  const upload = await finishedUpload(harness, item.item_id);
  expect((await harness.deliver('/api/step-upload', upload)).status).toBe(200);

  expect(harness.sandbox.app.item(item.item_id)).toMatchObject({ status: 'completed' });
  const [task] = harness.sandbox.runway.tasks();
  expect(task?.status).toBe('SUCCEEDED');
  const received = task?.promptImage;
  const bytes = harness.sandbox.runway.promptImageBytes(task?.id ?? '');
  if (!received || !bytes) throw new Error('the sandbox recorded no prompt image');
  return { harness, itemId: item.item_id, received, bytes };
}

describe('photos from phones, through the worker to Runway', () => {
  it('sends the EXIF-6 portrait with GPS and camera details upright, as a portrait, with no metadata left', async () => {
    const original = await readFixture('portrait-exif6.jpg');

    const { harness, itemId, received, bytes } = await throughTheWorker(original, 73);

    expect(received).toMatchObject({ format: 'jpeg', orientation: 1, metadata: [] });
    expect(received.width).toBeLessThan(received.height);
    expectInLimits(received);
    // Upright by pixels: the picture's red band is at the top, its blue band at the bottom.
    const image = await decode(bytes);
    const top = image.mean(0, 0, image.width, Math.floor(image.height / 5));
    const bottom = image.mean(0, image.height - Math.floor(image.height / 5), image.width, Math.floor(image.height / 5));
    expect(top.r).toBeGreaterThan(top.b + 80);
    expect(bottom.b).toBeGreaterThan(bottom.r + 80);
    // Nothing of the phone's private details anywhere in the bytes.
    for (const text of ['Exif', 'GPS', 'Pixel', 'http://ns.adobe.com', 'Photoshop 3.0', 'ICC_PROFILE']) {
      expect(bytes.includes(Buffer.from(text, 'latin1'))).toBe(false);
    }
    // The ledger keeps what was stored and what was sent.
    const task = (await harness.runtime.deps.ledger.read({ itemId, attempt: 1 })).task;
    expect(task?.photo).toEqual({
      original: { type: 'jpeg', width: 320, height: 180, bytes: original.length, orientation: 6 },
      sent: { type: 'jpeg', width: received.width, height: received.height, bytes: received.bytes },
    });
    expect(task?.ratio).toBe('720:1280');
  });

  it('centre-crops a 4:1 panorama into Runway\'s 2:1 limit', async () => {
    const { received } = await throughTheWorker(await readFixture('panorama-4x1.jpg'));

    expect(received).toMatchObject({ format: 'jpeg', orientation: 1, metadata: [] });
    expect(received.width / received.height).toBeCloseTo(2, 1);
    expectInLimits(received);
  });

  it('shrinks an 8400×6300 photo to what the video needs', async () => {
    const photo = await phoneJpeg(grainyPixels(8400, 6300, 12), 8400, 6300, { quality: 80 });
    expect((await sharp(photo).metadata()).width).toBe(8400);

    const { received } = await throughTheWorker(photo);

    expect(received).toMatchObject({ format: 'jpeg', orientation: 1, metadata: [] });
    expectInLimits(received);
    // gen4_turbo's 4:3 output is 1104x832: with its margin, well under 2000 px a side.
    expect(Math.max(received.width, received.height)).toBeLessThanOrEqual(2000);
    expect(received.width / received.height).toBeCloseTo(4 / 3, 2);
  });
});
