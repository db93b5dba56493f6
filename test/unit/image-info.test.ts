import { describe, expect, it } from 'vitest';
import { isRetryable, PermanentError } from '../../lib/errors.js';
import { readImageInfo } from '../../lib/media/image-info.js';
import { gif, htmlPage, jpeg, png, truncated, webp, type ByteOrder } from '../support/images.js';

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

/** Runs readImageInfo expecting a photo error, and returns that error. */
function photoErrorOf(bytes: Uint8Array): PermanentError {
  try {
    readImageInfo(bytes);
  } catch (error) {
    if (error instanceof PermanentError) return error;
    throw error;
  }
  throw new Error('expected readImageInfo to throw');
}

const DAMAGED = 'photo: the image is damaged or truncated';

describe('a JPEG photo', () => {
  it('gives its type, size and orientation 1 when it has no EXIF', () => {
    expect(readImageInfo(jpeg({ width: 640, height: 480 }))).toStrictEqual({
      type: 'jpeg',
      mime: 'image/jpeg',
      width: 640,
      height: 480,
      orientation: 1,
      displayWidth: 640,
      displayHeight: 480,
    });
  });

  it('reads the size from a progressive frame header', () => {
    expect(readImageInfo(jpeg({ width: 1200, height: 1600, frameMarker: 0xc2 }))).toMatchObject({ width: 1200, height: 1600 });
  });

  it('reads the size from an extended sequential frame header', () => {
    expect(readImageInfo(jpeg({ width: 333, height: 222, frameMarker: 0xc1 }))).toMatchObject({ width: 333, height: 222 });
  });

  it('reads sizes at the edges of what a JPEG can hold', () => {
    expect(readImageInfo(jpeg({ width: 1, height: 1 }))).toMatchObject({ width: 1, height: 1 });
    expect(readImageInfo(jpeg({ width: 65535, height: 9 }))).toMatchObject({ width: 65535, height: 9 });
  });

  const orientations = (['big-endian', 'little-endian'] as const satisfies readonly ByteOrder[]).flatMap((order) =>
    [1, 2, 3, 4, 5, 6, 7, 8].map((orientation) => [orientation, order] as const),
  );

  it.each(orientations)('honours EXIF orientation %i (%s)', (orientation, exifByteOrder) => {
    const info = readImageInfo(jpeg({ width: 4032, height: 3024, orientation, exifByteOrder }));
    const quarterTurn = orientation >= 5;
    expect(info).toMatchObject({
      width: 4032,
      height: 3024,
      orientation,
      displayWidth: quarterTurn ? 3024 : 4032,
      displayHeight: quarterTurn ? 4032 : 3024,
    });
  });

  it.each([0, 9, 255, 65535])('treats the invalid EXIF orientation %i as 1', (orientation) => {
    expect(readImageInfo(jpeg({ width: 400, height: 300, orientation }))).toMatchObject({
      orientation: 1,
      displayWidth: 400,
      displayHeight: 300,
    });
  });

  it('accepts bytes after the end marker, as in motion photos', () => {
    const trailer = new Uint8Array(200_000).fill(0xff);
    expect(readImageInfo(jpeg({ width: 80, height: 60, trailer }))).toMatchObject({ width: 80, height: 60 });
  });

  it('accepts large metadata before the frame header', () => {
    expect(readImageInfo(jpeg({ width: 80, height: 60, orientation: 6, paddingBytes: 300_000, paddingPlacement: 'before-frame' }))).toMatchObject({
      width: 80,
      height: 60,
      orientation: 6,
    });
  });

  it('is read from a view into a larger buffer', () => {
    const photo = jpeg({ width: 321, height: 123, orientation: 8 });
    const backing = new Uint8Array(photo.length + 10).fill(0x55);
    backing.set(photo, 7);
    expect(readImageInfo(backing.subarray(7, 7 + photo.length))).toMatchObject({ width: 321, height: 123, orientation: 8 });
  });

  it('is read from a Node Buffer', () => {
    expect(readImageInfo(Buffer.from(jpeg({ width: 50, height: 70 })))).toMatchObject({ width: 50, height: 70 });
  });

  it('of 25 MB is read without changing its bytes', () => {
    const photo = jpeg({ width: 4032, height: 3024, orientation: 6, paddingBytes: 25_000_000 });
    expect(photo.length).toBeGreaterThan(25_000_000);
    const before = photo.slice(0, 64);
    const info = readImageInfo(photo);
    expect(info).toMatchObject({ displayWidth: 3024, displayHeight: 4032 });
    expect(photo.slice(0, 64)).toEqual(before);
  });
});

describe('a damaged or truncated JPEG', () => {
  const photo = jpeg({ width: 640, height: 480, orientation: 6 });
  const frameAt = photo.findIndex((byte, index) => byte === 0xff && photo[index + 1] === 0xc0);
  const scanAt = photo.findIndex((byte, index) => byte === 0xff && photo[index + 1] === 0xda);

  it.each([
    ['only the start marker', 3],
    ['cut inside the EXIF segment', 30],
    ['cut before the frame header', frameAt],
    ['cut inside the frame header', frameAt + 6],
    ['cut before the image data', scanAt],
    ['cut inside the image data', scanAt + 20],
    ['missing only the end marker', photo.length - 2],
    ['missing the last byte', photo.length - 1],
  ])('is refused when %s', (_label, length) => {
    const error = photoErrorOf(truncated(photo, length));
    expect(error.message).toBe(DAMAGED);
  });

  it('is refused when written without an end marker', () => {
    expect(photoErrorOf(jpeg({ endMarker: false })).message).toBe(DAMAGED);
  });

  it('is refused when 25 MB of it arrive without the end', () => {
    const big = jpeg({ width: 4032, height: 3024, paddingBytes: 25_000_000 });
    expect(photoErrorOf(truncated(big, big.length - 2)).message).toBe(DAMAGED);
  });

  it('is refused when the image data comes before any frame header', () => {
    const bytes = Uint8Array.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x08, 1, 1, 0, 0, 63, 0, 0x00, 0x00, 0xff, 0xd9]);
    expect(photoErrorOf(bytes).message).toBe(DAMAGED);
  });

  it('is refused when it ends before any image data', () => {
    const bytes = Uint8Array.from([0xff, 0xd8, 0xff, 0xd9]);
    expect(photoErrorOf(bytes).message).toBe(DAMAGED);
  });

  it('is refused when a segment length runs past the end', () => {
    const bytes = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0x40, 0x00, 0x4a, 0x46]);
    expect(photoErrorOf(bytes).message).toBe(DAMAGED);
  });

  it('is refused when its frame header says 0 pixels wide', () => {
    expect(photoErrorOf(jpeg({ width: 0, height: 100 })).message).toBe(DAMAGED);
  });
});

describe('a JPEG with a rarely supported encoding', () => {
  it.each([0xc3, 0xc9, 0xcb])('is refused by name (frame marker 0x%s)', (frameMarker) => {
    const error = photoErrorOf(jpeg({ frameMarker }));
    expect(error.message).toMatch(/^photo: unsupported JPEG encoding \(frame type 0xC[39B]: lossless or arithmetic-coded\)$/);
  });
});

describe('a PNG photo', () => {
  it('gives its type and size, with orientation 1', () => {
    expect(readImageInfo(png({ width: 1920, height: 1080 }))).toStrictEqual({
      type: 'png',
      mime: 'image/png',
      width: 1920,
      height: 1080,
      orientation: 1,
      displayWidth: 1920,
      displayHeight: 1080,
    });
  });

  it('is refused when cut before its end chunk', () => {
    const photo = png({ width: 300, height: 200 });
    expect(photoErrorOf(truncated(photo, photo.length - 12)).message).toBe(DAMAGED);
    expect(photoErrorOf(truncated(photo, 40)).message).toBe(DAMAGED);
    expect(photoErrorOf(truncated(photo, 20)).message).toBe(DAMAGED);
  });

  it('is refused when it has no image data', () => {
    const photo = png({ width: 300, height: 200 });
    const withoutData = new Uint8Array([...photo.subarray(0, 33), ...photo.subarray(photo.length - 12)]);
    expect(photoErrorOf(withoutData).message).toBe(DAMAGED);
  });
});

describe('a WebP photo', () => {
  it.each([
    ['VP8', 1600, 900],
    ['VP8L', 900, 1600],
    ['VP8X', 4000, 3000],
  ] as const)('gives its type and size from a %s header', (kind, width, height) => {
    expect(readImageInfo(webp({ kind, width, height }))).toStrictEqual({
      type: 'webp',
      mime: 'image/webp',
      width,
      height,
      orientation: 1,
      displayWidth: width,
      displayHeight: height,
    });
  });

  it.each(['VP8', 'VP8L', 'VP8X'] as const)('is refused when a %s file is shorter than its RIFF header says', (kind) => {
    const photo = webp({ kind });
    expect(photoErrorOf(truncated(photo, photo.length - 1)).message).toBe(DAMAGED);
    expect(photoErrorOf(truncated(photo, 16)).message).toBe(DAMAGED);
  });

  it('is refused when its first chunk is not image data', () => {
    const bytes = new Uint8Array([...text('RIFF'), 12, 0, 0, 0, ...text('WEBP'), ...text('ICCP'), 0, 0, 0, 0]);
    expect(photoErrorOf(bytes).message).toBe(DAMAGED);
  });
});

describe('something that is not a JPEG, PNG or WebP', () => {
  it('is refused as empty when it has no bytes', () => {
    const error = photoErrorOf(new Uint8Array(0));
    expect(error.message).toBe('photo: the file is empty');
    expect(error.stage).toBe('photo');
  });

  it.each([
    ['an HTML login page', htmlPage(), 'text/html'],
    ['HTML with a lower-case doctype', text('<!doctype html><html></html>'), 'text/html'],
    ['HTML without a doctype', text('<html><body>Forbidden</body></html>'), 'text/html'],
    ['HTML after a byte order mark and blank lines', text('\uFEFF\n\n  <!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN">'), 'text/html'],
    ['an HTML fragment', text('<head><title>404</title></head>'), 'text/html'],
    ['a GIF', gif(), 'image/gif'],
    ['an old GIF', text('GIF87a\u0001\u0000\u0001\u0000'), 'image/gif'],
    ['an S3-style XML error', text('<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code></Error>'), 'application/xml'],
    ['an SVG with an XML declaration', text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>'), 'image/svg+xml'],
    ['a bare SVG', text('<svg width="10" height="10"></svg>'), 'image/svg+xml'],
    ['a JSON error body', text('{"statusCode":"404","error":"not_found","message":"Object not found"}'), 'application/json'],
    ['plain text', text('Internal Server Error'), 'text/plain'],
    ['an iPhone HEIC photo', new Uint8Array([0, 0, 0, 24, ...text('ftypheic'), 0, 0, 0, 0, ...text('mif1heic')]), 'image/heic'],
    ['a HEIF image', new Uint8Array([0, 0, 0, 24, ...text('ftypmif1'), 0, 0, 0, 0, ...text('mif1heic')]), 'image/heif'],
    ['an AVIF image', new Uint8Array([0, 0, 0, 28, ...text('ftypavif'), 0, 0, 0, 0, ...text('avifmif1miaf')]), 'image/avif'],
    ['an MP4 video', new Uint8Array([0, 0, 0, 24, ...text('ftypisom'), 0, 0, 2, 0, ...text('isomiso2')]), 'video/mp4'],
    ['a QuickTime video', new Uint8Array([0, 0, 0, 20, ...text('ftypqt  '), 0, 0, 2, 0, ...text('qt  ')]), 'video/quicktime'],
    ['a TIFF (little-endian)', new Uint8Array([0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0]), 'image/tiff'],
    ['a TIFF (big-endian)', new Uint8Array([0x4d, 0x4d, 0x00, 0x2a, 0, 0, 0, 8]), 'image/tiff'],
    ['a BMP', new Uint8Array([...text('BM'), 0x46, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]), 'image/bmp'],
    ['a PDF', text('%PDF-1.7\n%âãÏÓ\n'), 'application/pdf'],
    ['a ZIP archive', new Uint8Array([0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0]), 'application/zip'],
    ['random binary data', new Uint8Array([0x00, 0x01, 0x02, 0xfe, 0x10, 0x80, 0x00]), 'application/octet-stream'],
    ['invalid UTF-8', new Uint8Array([0x41, 0xc3, 0x28, 0x41]), 'application/octet-stream'],
    ['a RIFF file that is not WebP', new Uint8Array([...text('RIFF'), 4, 0, 0, 0, ...text('WAVE')]), 'application/octet-stream'],
    ['two bytes of a JPEG', new Uint8Array([0xff, 0xd8]), 'application/octet-stream'],
  ])('is refused as %s', (_label, bytes, mime) => {
    expect(photoErrorOf(bytes).message).toBe(`photo: not a JPEG/PNG/WebP image (got ${mime})`);
  });

  it('is not taken for a BMP just because the text starts with "BM"', () => {
    expect(photoErrorOf(text('BMW of North America: service notice')).message).toBe('photo: not a JPEG/PNG/WebP image (got text/plain)');
  });

  it('is refused with a permanent error that no retry will change', () => {
    const error = photoErrorOf(htmlPage());
    expect(error).toBeInstanceOf(PermanentError);
    expect(isRetryable(error)).toBe(false);
  });

  it('sniffs only the start of a large text body', () => {
    const body = text(`<!DOCTYPE html>${'<p>x</p>'.repeat(1_000_000)}`);
    expect(photoErrorOf(body).message).toBe('photo: not a JPEG/PNG/WebP image (got text/html)');
  });
});

describe('the test image builders', () => {
  it('make a JPEG about as large as the padding asked for', () => {
    const photo = jpeg({ paddingBytes: 1_000_000 });
    expect(photo.length).toBeGreaterThan(1_000_000);
    expect(photo.length).toBeLessThan(1_010_000);
  });

  it('make every format start with its signature', () => {
    expect([...jpeg().subarray(0, 3)]).toEqual([0xff, 0xd8, 0xff]);
    expect([...png().subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(new TextDecoder().decode(webp().subarray(8, 12))).toBe('WEBP');
    expect(new TextDecoder().decode(gif().subarray(0, 6))).toBe('GIF89a');
  });
});
