import sharp from 'sharp';
import { expect } from 'vitest';
import { jpegHeaderSegments } from './photos.js';

/**
 * What a create body's `promptImage` data URI holds: the image Runway received, checked the
 * way a careful reader would (sharp's view of its metadata, and the JPEG's own segments).
 */

const JPEG_DATA_URI = 'data:image/jpeg;base64,';

export interface SentPhoto {
  readonly bytes: Buffer;
  readonly width: number;
  readonly height: number;
}

/** Decodes the data URI; fails the test unless it is a JPEG with no metadata at all. */
export async function expectCleanJpeg(promptImage: string): Promise<SentPhoto> {
  expect(promptImage.startsWith(JPEG_DATA_URI)).toBe(true);
  const bytes = Buffer.from(promptImage.slice(JPEG_DATA_URI.length), 'base64');
  const meta = await sharp(bytes).metadata();
  expect(meta.format).toBe('jpeg');
  expect({ exif: meta.exif, icc: meta.icc, iptc: meta.iptc, xmp: meta.xmp, orientation: meta.orientation }).toEqual({
    exif: undefined,
    icc: undefined,
    iptc: undefined,
    xmp: undefined,
    orientation: undefined,
  });
  // Only what a bare JFIF file needs: no APP1 (EXIF/XMP), APP2 (ICC), APP13 (IPTC) or COM.
  const appOrComment = jpegHeaderSegments(bytes).filter((segment) => (segment.marker >= 0xe1 && segment.marker <= 0xef) || segment.marker === 0xfe);
  expect(appOrComment).toEqual([]);
  return { bytes, width: meta.width, height: meta.height };
}
