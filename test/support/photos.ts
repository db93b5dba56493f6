import sharp from 'sharp';

/**
 * Real photos made with sharp, and readers for what a prepared photo contains. Tests of
 * the photo preparation use these; the byte builders in images.ts stay for the header tests.
 */

export interface Rgb {
  readonly r: number;
  readonly g: number;
  readonly b: number;
}

export interface JpegSegment {
  /** The marker byte after 0xFF: 0xE0-0xEF for APPn, 0xFE for a comment, 0xDB, 0xC0, ... */
  readonly marker: number;
  /** For APPn segments, the identifier at the start of the payload ("JFIF", "Exif", "ICC_PROFILE", ...). */
  readonly identifier: string;
}

/** The segments of a JPEG up to its first scan: where every kind of metadata would sit. */
export function jpegHeaderSegments(bytes: Uint8Array): JpegSegment[] {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) throw new Error('not a JPEG');
  const segments: JpegSegment[] = [];
  let position = 2;
  while (position + 4 <= bytes.length) {
    if (bytes[position] !== 0xff) throw new Error(`no marker at byte ${position}`);
    const marker = bytes[position + 1] ?? 0;
    const length = ((bytes[position + 2] ?? 0) << 8) | (bytes[position + 3] ?? 0);
    const payload = bytes.subarray(position + 4, position + 2 + length);
    const isApp = marker >= 0xe0 && marker <= 0xef;
    const identifierEnd = payload.indexOf(0);
    const identifier = isApp ? Buffer.from(payload.subarray(0, identifierEnd < 0 ? Math.min(payload.length, 16) : identifierEnd)).toString('latin1') : '';
    segments.push({ marker, identifier });
    if (marker === 0xda) break;
    position += 2 + length;
  }
  return segments;
}

/**
 * The first entry of the JPEG's first quantisation table, which says the quality it was
 * written at: libjpeg scales a base of 16 to 3 at quality 90, 6 at 80, 10 at 70.
 */
export function firstQuantizer(bytes: Uint8Array): number {
  const table = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(Buffer.from([0xff, 0xdb]));
  if (table < 0) throw new Error('no quantisation table');
  return bytes[table + 5] ?? 0;
}

/** Whether `needle` occurs in the bytes as Latin-1 text. */
export function containsText(bytes: Uint8Array, needle: string): boolean {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes(Buffer.from(needle, 'latin1'));
}

export interface DecodedImage {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly pixel: (x: number, y: number) => Rgb;
  /** The mean colour of a rectangle, to read a region without caring about JPEG noise. */
  readonly mean: (left: number, top: number, width: number, height: number) => Rgb;
}

/** Decodes an image as stored (no orientation applied) into 8-bit pixels. */
export async function decode(bytes: Uint8Array): Promise<DecodedImage> {
  const { data, info } = await sharp(bytes, { autoOrient: false }).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  const pixel = (x: number, y: number): Rgb => {
    const at = (y * info.width + x) * info.channels;
    return { r: data[at] ?? 0, g: data[at + 1] ?? 0, b: data[at + 2] ?? 0 };
  };
  const mean = (left: number, top: number, width: number, height: number): Rgb => {
    let r = 0;
    let g = 0;
    let b = 0;
    for (let y = top; y < top + height; y++) {
      for (let x = left; x < left + width; x++) {
        const p = pixel(x, y);
        r += p.r;
        g += p.g;
        b += p.b;
      }
    }
    const count = width * height;
    return { r: Math.round(r / count), g: Math.round(g / count), b: Math.round(b / count) };
  };
  return { width: info.width, height: info.height, channels: info.channels, pixel, mean };
}

/**
 * Pixels with real content: a colour gradient under pseudo-random grain of `grain` levels,
 * the same for the same seed. Grain is what makes a JPEG big; 28 gives about 0.4 bytes per
 * pixel at quality 90, like a phone camera's file.
 */
export function grainyPixels(width: number, height: number, grain: number, seed = 1): Buffer {
  const pixels = Buffer.allocUnsafe(width * height * 3);
  let state = seed >>> 0;
  for (let y = 0; y < height; y++) {
    const green = Math.floor((y * 255) / height);
    for (let x = 0; x < width; x++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      const noise = ((state >>> 24) * grain) >> 8;
      const at = (y * width + x) * 3;
      pixels[at] = (Math.floor((x * 255) / width) + noise) & 0xff;
      pixels[at + 1] = (green + noise) & 0xff;
      pixels[at + 2] = (128 + noise) & 0xff;
    }
  }
  return pixels;
}

/** Random black and white pixels in every channel: about the hardest content a JPEG can get. */
export function noisePixels(width: number, height: number, seed = 1): Buffer {
  const pixels = Buffer.allocUnsafe(width * height * 3);
  let state = seed >>> 0;
  for (let i = 0; i < pixels.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    pixels[i] = state >>> 31 === 1 ? 255 : 0;
  }
  return pixels;
}

export interface PhoneJpegOptions {
  readonly quality?: number;
  /** EXIF Orientation to write (a phone stores its pixels sideways and writes 6 or 8). */
  readonly orientation?: number;
}

/**
 * A JPEG from raw RGB pixels, carrying what a phone writes: make, model, body serial and a
 * GPS position in EXIF, and the given orientation.
 */
export async function phoneJpeg(pixels: Buffer, width: number, height: number, options: PhoneJpegOptions = {}): Promise<Buffer> {
  const image = sharp(pixels, { raw: { width, height, channels: 3 } }).withExif({
    IFD0: { Make: 'Google', Model: 'Pixel 8 Pro' },
    IFD2: { BodySerialNumber: '37111JEHN04221' },
    IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 2376/100', GPSLongitudeRef: 'E', GPSLongitude: '2/1 21/1 792/100' },
  });
  const oriented = options.orientation === undefined ? image : image.withMetadata({ orientation: options.orientation });
  return oriented.jpeg({ quality: options.quality ?? 90 }).toBuffer();
}

const MAX_COMMENT_PAYLOAD = 0xffff - 2;

/** The JPEG with COM (comment) segments added right after its start marker, `paddingBytes` in all. */
export function withCommentPadding(jpeg: Uint8Array, paddingBytes: number): Buffer {
  const segments: Buffer[] = [];
  for (let left = paddingBytes; left > 4; ) {
    const payload = Math.min(MAX_COMMENT_PAYLOAD, left - 4);
    const segment = Buffer.alloc(payload + 4, 0x20);
    segment.writeUInt16BE(0xfffe, 0);
    segment.writeUInt16BE(payload + 2, 2);
    segments.push(segment);
    left -= payload + 4;
  }
  return Buffer.concat([Buffer.from(jpeg.subarray(0, 2)), ...segments, Buffer.from(jpeg.subarray(2))]);
}
