import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp, { type Sharp } from 'sharp';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RUNWAY_MODELS } from '../../lib/config.js';
import { DATA_URI_MAX_JPEG_BYTES, fitsJpegDataUri, planPhotoFit } from '../../lib/decide/photo-fit.js';
import { PermanentError } from '../../lib/errors.js';
import { preparePhoto, type PreparedPhoto } from '../../lib/media/prepare-photo.js';
import { containsText, decode, firstQuantizer, jpegHeaderSegments, noisePixels, phoneJpeg, type Rgb } from '../support/photos.js';

const fixture = (name: string): Promise<Buffer> => readFile(new URL(`../../sandbox/fixtures/${name}`, import.meta.url));

/** Every photo prepared in this file, to check them all against the data URI budget at the end. */
const prepared: PreparedPhoto[] = [];
async function prepare(...args: Parameters<typeof preparePhoto>): Promise<PreparedPhoto> {
  const result = await preparePhoto(...args);
  prepared.push(result);
  return result;
}

async function photoErrorOf(promise: Promise<unknown>): Promise<PermanentError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof PermanentError)) throw new Error(`expected a PermanentError, got ${String(error)}`);
  return error;
}

/** What libjpeg scales the first luminance quantizer (16) to at quality 90. */
const QUALITY_90_QUANTIZER = 3;

const isRed = ({ r, g, b }: Rgb): boolean => r > 180 && g < 80 && b < 80;
const isBlue = ({ r, g, b }: Rgb): boolean => b > 150 && r < 80 && g < 100;
const isWhite = ({ r, g, b }: Rgb): boolean => r > 245 && g > 245 && b > 245;

/** The markers a bare baseline or progressive JPEG needs: tables, frame, scan, and at most an APP0 JFIF header. */
const BARE_JFIF_MARKERS = new Set([0xe0, 0xdb, 0xc4, 0xc0, 0xc2, 0xdd, 0xda]);

async function expectNoMetadata(bytes: Uint8Array): Promise<void> {
  const metadata = await sharp(bytes).metadata();
  expect(metadata.format).toBe('jpeg');
  expect(metadata.exif).toBeUndefined();
  expect(metadata.icc).toBeUndefined();
  expect(metadata.iptc).toBeUndefined();
  expect(metadata.xmp).toBeUndefined();
  expect(metadata.orientation).toBeUndefined();
  expect(metadata.hasProfile).toBe(false);
  expect(metadata.space).toBe('srgb');
  expect(metadata.channels).toBe(3);
  const segments = jpegHeaderSegments(bytes);
  expect(segments.filter((segment) => !BARE_JFIF_MARKERS.has(segment.marker))).toEqual([]);
  expect(segments.filter((segment) => segment.marker === 0xe0 && segment.identifier !== 'JFIF')).toEqual([]);
  expect(segments.map((segment) => segment.marker)).toEqual(expect.arrayContaining([0xdb, 0xc4, 0xda]));
}

describe('the EXIF-rotated phone portrait in the demo fixtures', () => {
  it('carries everything that must not reach Runway (so the tests below prove something)', async () => {
    const photo = await fixture('portrait-exif6.jpg');
    const metadata = await sharp(photo).metadata();
    expect(metadata).toMatchObject({ width: 320, height: 180, orientation: 6 });
    expect(metadata.exif).toBeDefined();
    expect(metadata.iptc).toBeDefined();
    expect(metadata.xmp).toBeDefined();
    expect(metadata.icc).toBeDefined();
    const markers = jpegHeaderSegments(photo).map((segment) => segment.marker);
    expect(markers).toContain(0xfe);
    for (const text of ['Google', 'Pixel 8 Pro', '37111JEHN04221', 'Jane Example', 'Paris', 'GPSLatitude', 'home']) {
      expect(containsText(photo, text)).toBe(true);
    }
    expect(photo.length).toBeLessThan(40_000);
  });

  it('is sent upright: red at the top, blue at the bottom, taller than wide', async () => {
    const result = await prepare(await fixture('portrait-exif6.jpg'), 'gen4_turbo');
    const image = await decode(result.bytes);
    expect(image.width).toBeLessThan(image.height);
    expect(isRed(image.mean(20, 10, image.width - 40, 60))).toBe(true);
    expect(isBlue(image.mean(20, image.height - 70, image.width - 40, 60))).toBe(true);
  });

  it('is sent without any metadata: no EXIF, GPS, XMP, IPTC, comment, ICC or orientation', async () => {
    const result = await prepare(await fixture('portrait-exif6.jpg'), 'gen4_turbo');
    await expectNoMetadata(result.bytes);
    for (const text of ['Google', 'Pixel', '37111JEHN04221', 'Jane', 'Paris', 'Exif', 'http://ns.adobe.com', 'Photoshop', 'home']) {
      expect(containsText(result.bytes, text)).toBe(false);
    }
  });

  it('has its Display P3 colours converted to sRGB rather than its profile just dropped', async () => {
    const photo = await fixture('portrait-exif6.jpg');
    const result = await prepare(photo, 'gen4_turbo');
    const sent = (await decode(result.bytes)).mean(20, 10, 140, 60);
    // The stored numbers read as if they were sRGB: what dropping the profile would send.
    const stored = await sharp(photo, { ignoreIcc: true }).rotate().raw().toBuffer({ resolveWithObject: true });
    const storedRed = stored.data[(20 * stored.info.width + 90) * 3] ?? 0;
    expect(storedRed).toBeLessThan(200);
    expect(sent.r).toBeGreaterThan(storedRed + 8);
  });

  it('reports what it received and what it sent, re-encoded at quality 90', async () => {
    const photo = await fixture('portrait-exif6.jpg');
    const result = await prepare(photo, 'gen4_turbo');
    expect(firstQuantizer(result.bytes)).toBe(QUALITY_90_QUANTIZER);
    expect(result).toMatchObject({
      mime: 'image/jpeg',
      ratio: '720:1280',
      original: { type: 'jpeg', width: 320, height: 180, bytes: photo.length, orientation: 6 },
      sent: { type: 'jpeg', width: 180, height: 320, bytes: result.bytes.length },
      cropped: false,
      resized: false,
    });
    expect(result.bytes).toBeInstanceOf(Uint8Array);
    expect(result.bytes.buffer).toBeInstanceOf(ArrayBuffer);
  });

  it.each(RUNWAY_MODELS)('becomes a portrait on %s', async (model) => {
    const result = await prepare(await fixture('portrait-exif6.jpg'), model);
    expect(result.ratio).toBe('720:1280');
    expect(result.sent.width).toBeLessThan(result.sent.height);
  });
});

describe('a phone photo with GPS in its EXIF and each orientation', () => {
  // A 64×32 picture: left half red, right half blue, as the phone saw it upright.
  async function uprightPicture(): Promise<Buffer> {
    return sharp({ create: { width: 32, height: 32, channels: 3, background: '#ff0000' } })
      .extend({ right: 32, background: '#0000ff' })
      .raw()
      .toBuffer();
  }

  it.each([1, 2, 3, 4, 5, 6, 7, 8])('is sent upright, red left and blue right, for orientation %i', async (orientation) => {
    // Store the pixels the way a camera with this orientation would, so that applying
    // the tag brings back the upright picture.
    const upright = sharp(await uprightPicture(), { raw: { width: 64, height: 32, channels: 3 } });
    const storedPixels = await storedFor(upright, orientation).raw().toBuffer({ resolveWithObject: true });
    const photo = await phoneJpeg(storedPixels.data, storedPixels.info.width, storedPixels.info.height, { orientation });
    expect((await sharp(photo).metadata()).orientation).toBe(orientation);
    expect(containsText(photo, '37111JEHN04221')).toBe(true);

    const result = await prepare(photo, 'gen4_turbo');
    const image = await decode(result.bytes);
    expect([image.width, image.height]).toEqual([64, 32]);
    expect(isRed(image.mean(4, 4, 20, 24))).toBe(true);
    expect(isBlue(image.mean(40, 4, 20, 24))).toBe(true);
    await expectNoMetadata(result.bytes);
    expect(containsText(result.bytes, '37111JEHN04221')).toBe(false);
  });
});

/**
 * The stored pixels for an upright picture under an EXIF orientation (the inverse of applying
 * the tag). Sharp always mirrors before it rotates, whatever the call order.
 */
function storedFor(upright: Sharp, orientation: number): Sharp {
  switch (orientation) {
    case 2:
      return upright.flop();
    case 3:
      return upright.rotate(180);
    case 4:
      return upright.flip();
    case 5:
      return upright.rotate(270).flop();
    case 6:
      return upright.rotate(270);
    case 7:
      return upright.rotate(90).flop();
    case 8:
      return upright.rotate(90);
    default:
      return upright;
  }
}

describe('a 4:1 panorama', () => {
  it('is centre-cropped into the 2:1 limit on gen4 (its 1584:672 frame is wider than inputs may be)', async () => {
    const result = await prepare(await fixture('panorama-4x1.jpg'), 'gen4_turbo');
    expect(result).toMatchObject({ ratio: '1584:672', cropped: true, resized: false, sent: { width: 400, height: 200 } });
    await expectNoMetadata(result.bytes);
  });

  it('is centre-cropped to its 16:9 frame on veo', async () => {
    const result = await prepare(await fixture('panorama-4x1.jpg'), 'veo3.1');
    expect(result).toMatchObject({ ratio: '1280:720', cropped: true, sent: { width: 356, height: 200 } });
  });

  it('keeps the middle of the picture and cuts both ends evenly', async () => {
    // Red, green, green, blue quarters: the centred 2:1 crop is all green.
    const quarter = { width: 200, height: 200, channels: 3 } as const;
    const green = await sharp({ create: { ...quarter, width: 400, background: '#00c000' } }).png().toBuffer();
    const photo = await sharp({ create: { ...quarter, background: '#ff0000' } })
      .extend({ right: 600, background: '#0000ff' })
      .composite([{ input: green, left: 200, top: 0 }])
      .jpeg()
      .toBuffer();
    const image = await decode((await prepare(photo, 'gen4_turbo')).bytes);
    expect(image.width).toBe(400);
    for (const x of [2, 200, 397]) {
      const { r, g, b } = image.mean(x, 80, 1, 40);
      expect(g).toBeGreaterThan(150);
      expect(Math.max(r, b)).toBeLessThan(60);
    }
  });

  it('as a 1:4 tower is cropped into the limits too', async () => {
    const photo = await sharp({ create: { width: 200, height: 800, channels: 3, background: '#336699' } }).jpeg().toBuffer();
    const result = await prepare(photo, 'gen4.5');
    expect(result).toMatchObject({ ratio: '720:1280', cropped: true, sent: { width: 200, height: 356 } });
  });
});

describe('a very large photo', () => {
  it('of 8400×6300 is downscaled to what the model needs, far inside 7999 px', async () => {
    const photo = await sharp({ create: { width: 8400, height: 6300, channels: 3, background: '#4080c0' } })
      .composite([{ input: { create: { width: 4200, height: 3150, channels: 3, background: '#c08040' } }, left: 2100, top: 1575 }])
      .jpeg({ quality: 80 })
      .toBuffer();
    for (const model of ['gen4_turbo', 'veo3.1'] as const) {
      const result = await prepare(photo, model);
      const plan = planPhotoFit({ displayWidth: 8400, displayHeight: 6300, model });
      expect(result.sent).toMatchObject({ width: plan.width, height: plan.height });
      expect(result).toMatchObject({ cropped: false, resized: true, original: { width: 8400, height: 6300 } });
      expect(Math.max(result.sent.width, result.sent.height)).toBeLessThanOrEqual(1600);
      const centre = image8(await decode(result.bytes));
      expect(Math.abs(centre.r - 0xc0)).toBeLessThan(8);
      expect(Math.abs(centre.b - 0x40)).toBeLessThan(8);
    }
  });

  it('of pure noise at the largest planned size still fits a data URI at the first quality', async () => {
    // 1600×1600 is the largest plan (a square photo on veo); noise is the worst case for JPEG.
    const photo = await sharp(noisePixels(1600, 1600), { raw: { width: 1600, height: 1600, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
    const result = await prepare(photo, 'veo3.1');
    expect(result.sent).toMatchObject({ width: 1600, height: 1600 });
    expect(firstQuantizer(result.bytes)).toBe(QUALITY_90_QUANTIZER);
    expect(result.bytes.length).toBeGreaterThan(DATA_URI_MAX_JPEG_BYTES / 2);
    expect(fitsJpegDataUri(result.bytes.length)).toBe(true);
  });
});

describe('the JPEG quality steps', () => {
  it('step down until the image fits the budget', async () => {
    const photo = await sharp(noisePixels(600, 600, 7), { raw: { width: 600, height: 600, channels: 3 } }).png().toBuffer();
    const first = await prepare(photo, 'gen4_turbo');
    const budget = Math.floor(first.bytes.length * 0.75);
    const smaller = await preparePhoto(photo, 'gen4_turbo', { maxJpegBytes: budget });
    expect(firstQuantizer(first.bytes)).toBe(QUALITY_90_QUANTIZER);
    expect(firstQuantizer(smaller.bytes)).toBeGreaterThan(QUALITY_90_QUANTIZER);
    expect(smaller.bytes.length).toBeLessThanOrEqual(budget);
    expect(smaller.sent).toStrictEqual({ ...first.sent, bytes: smaller.bytes.length });
  });

  it('give up with a photo error when even the lowest quality is too big', async () => {
    const photo = await sharp(noisePixels(600, 600, 7), { raw: { width: 600, height: 600, channels: 3 } }).png().toBuffer();
    const error = await photoErrorOf(preparePhoto(photo, 'gen4_turbo', { maxJpegBytes: 10_000 }));
    expect(error.stage).toBe('photo');
    expect(error.message).toMatch(/^photo: the prepared image is still too large for Runway \(\d+ bytes, at most 10000\)$/);
  });
});

describe('photos in other formats and colour spaces', () => {
  it('flattens a transparent PNG onto white and sends a JPEG', async () => {
    const photo = await sharp({ create: { width: 300, height: 200, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .composite([{ input: { create: { width: 100, height: 100, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 1 } } }, left: 100, top: 50 }])
      .png()
      .toBuffer();
    expect((await sharp(photo).metadata()).hasAlpha).toBe(true);
    const result = await prepare(photo, 'gen4_turbo');
    expect(result.original).toMatchObject({ type: 'png', width: 300, height: 200, orientation: 1 });
    const image = await decode(result.bytes);
    expect(image.channels).toBe(3);
    expect(isWhite(image.mean(2, 2, 40, 40))).toBe(true);
    expect(isRed(image.mean(130, 80, 40, 40))).toBe(true);
    await expectNoMetadata(result.bytes);
  });

  it('sends a 16-bit PNG as an 8-bit sRGB JPEG', async () => {
    const photo = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#208040' } }).toColourspace('rgb16').png().toBuffer();
    expect((await sharp(photo).metadata()).depth).toBe('ushort');
    const result = await prepare(photo, 'gen4_turbo');
    expect((await sharp(result.bytes).metadata()).depth).toBe('uchar');
    expect(Math.abs(image8(await decode(result.bytes)).g - 0x80)).toBeLessThan(6);
    await expectNoMetadata(result.bytes);
  });

  it('sends a WebP as a JPEG', async () => {
    const photo = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#3366cc' } }).webp().toBuffer();
    const result = await prepare(photo, 'veo3.1_fast');
    expect(result.original).toMatchObject({ type: 'webp', width: 640, height: 480 });
    expect(result.sent).toMatchObject({ type: 'jpeg', width: 640, height: 480 });
    await expectNoMetadata(result.bytes);
  });

  it('sends a CMYK JPEG as sRGB, colours kept', async () => {
    const photo = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#d02020' } }).toColourspace('cmyk').jpeg().toBuffer();
    expect((await sharp(photo).metadata()).space).toBe('cmyk');
    const result = await prepare(photo, 'gen4_turbo');
    expect(isRed(image8(await decode(result.bytes)))).toBe(true);
    await expectNoMetadata(result.bytes);
  });

  it('sends a greyscale JPEG as a three-channel sRGB one', async () => {
    const photo = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#808080' } }).toColourspace('b-w').jpeg().toBuffer();
    expect((await sharp(photo).metadata()).channels).toBe(1);
    const result = await prepare(photo, 'gen4_turbo');
    await expectNoMetadata(result.bytes);
  });
});

/** The colour in the middle of a decoded image. */
function image8(image: Awaited<ReturnType<typeof decode>>): Rgb {
  return image.mean(Math.floor(image.width / 2) - 5, Math.floor(image.height / 2) - 5, 10, 10);
}

describe('a small photo', () => {
  it.each([
    [1, 1],
    [64, 48],
    [640, 480],
  ])('of %i×%i is sent at its own size, never upscaled', async (width, height) => {
    const photo = await sharp({ create: { width, height, channels: 3, background: '#aa5500' } }).jpeg().toBuffer();
    for (const model of RUNWAY_MODELS) {
      const result = await prepare(photo, model);
      expect(result.sent).toMatchObject({ width, height });
      expect(result.resized).toBe(false);
    }
  });
});

describe('a file that is not a usable photo', () => {
  it('is refused by its header check before any decoding: HTML', async () => {
    const error = await photoErrorOf(preparePhoto(new TextEncoder().encode('<!DOCTYPE html><html></html>'), 'gen4_turbo'));
    expect(error.stage).toBe('photo');
    expect(error.message).toBe('photo: not a JPEG/PNG/WebP image (got text/html)');
  });

  it('is refused when cut short', async () => {
    const photo = await fixture('portrait-exif6.jpg');
    const error = await photoErrorOf(preparePhoto(photo.subarray(0, photo.length - 100), 'gen4_turbo'));
    expect(error.stage).toBe('photo');
    expect(error.message).toBe('photo: the image is damaged or truncated');
  });

  it('is refused with the decoder reason when a PNG fails its checksum', async () => {
    const photo = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#ff0000' } }).png().toBuffer();
    const idatData = photo.indexOf('IDAT') + 8;
    photo.writeUInt8((photo.readUInt8(idatData) ^ 0xff) & 0xff, idatData);
    const error = await photoErrorOf(preparePhoto(photo, 'gen4_turbo'));
    expect(error.stage).toBe('photo');
    expect(error.message).toMatch(/^photo: the image could not be decoded \([\x20-\x7e]{5,120}\)$/);
    expect(error.cause).toBeInstanceOf(Error);
  });

  it('is refused with a one-line reason when a JPEG scan names a component its frame lacks', async () => {
    const photo = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#00ff00' } }).jpeg().toBuffer();
    const frame = photo.indexOf(Buffer.from([0xff, 0xc0]));
    photo[frame + 16] = 0x99; // the third component's id
    const error = await photoErrorOf(preparePhoto(photo, 'gen4_turbo'));
    expect(error.message).toMatch(/^photo: the image could not be decoded \(.*Invalid component ID.*\)$/);
    expect(error.message).not.toContain('\n');
  });

  it('is refused when its header claims more pixels than any photo has', async () => {
    const photo = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#00ff00' } }).jpeg().toBuffer();
    const frame = photo.indexOf(Buffer.from([0xff, 0xc0]));
    photo.writeUInt16BE(30_000, frame + 5);
    photo.writeUInt16BE(30_000, frame + 7);
    const error = await photoErrorOf(preparePhoto(photo, 'gen4_turbo'));
    expect(error.message).toBe('photo: the image is too large to prepare (30000x30000, 900 MP; at most 268 MP)');
  });
});

describe('loading the module', () => {
  const childSchema = z.object({ afterImport: z.boolean(), afterPrepare: z.boolean() });

  it('does not load sharp until a photo is prepared', async () => {
    const modulePath = fileURLToPath(new URL('../../lib/media/prepare-photo.ts', import.meta.url));
    const fixturePath = fileURLToPath(new URL('../../sandbox/fixtures/landscape.jpg', import.meta.url));
    // Sharp's native addon is loaded with require() and maps libvips into the process: both
    // show from inside without any loader hooks.
    const script = `
      import { readFileSync } from 'node:fs';
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      const sharpLoaded = () =>
        Object.keys(require.cache).some((file) => /sharp/.test(file)) || /libvips/.test(readFileSync('/proc/self/maps', 'utf8'));
      const { preparePhoto } = await import(${JSON.stringify(modulePath)});
      const afterImport = sharpLoaded();
      await preparePhoto(readFileSync(${JSON.stringify(fixturePath)}), 'gen4_turbo');
      process.stdout.write(JSON.stringify({ afterImport, afterPrepare: sharpLoaded() }));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
    });
    expect(childSchema.parse(JSON.parse(stdout))).toStrictEqual({ afterImport: false, afterPrepare: true });
  });
});

describe('every photo prepared above', () => {
  it("fits Runway's data URI", () => {
    expect(prepared.length).toBeGreaterThan(30);
    expect(prepared.filter((result) => !fitsJpegDataUri(result.bytes.length))).toEqual([]);
  });
});
