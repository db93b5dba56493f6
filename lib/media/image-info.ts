import { imageSize } from 'image-size';
import { displayedSize } from '../decide/ratio.js';
import { PermanentError } from '../errors.js';

export type ImageType = 'jpeg' | 'png' | 'webp';
export type ImageMime = 'image/jpeg' | 'image/png' | 'image/webp';

export interface ImageInfo {
  readonly type: ImageType;
  readonly mime: ImageMime;
  /** Stored pixel size. */
  readonly width: number;
  readonly height: number;
  /** EXIF orientation 1-8 (JPEG only; 1 when absent or invalid). */
  readonly orientation: number;
  /** Size as viewers show it: width and height swap for orientations 5-8. */
  readonly displayWidth: number;
  readonly displayHeight: number;
}

const EMPTY_MESSAGE = 'photo: the file is empty';
const DAMAGED_MESSAGE = 'photo: the image is damaged or truncated';

const photoError = (message: string, cause?: unknown): PermanentError =>
  new PermanentError('photo', message, cause === undefined ? undefined : { cause });
const damaged = (cause?: unknown): PermanentError => photoError(DAMAGED_MESSAGE, cause);

const startsWith = (bytes: Uint8Array, signature: readonly number[], at = 0): boolean =>
  bytes.length >= at + signature.length && signature.every((byte, index) => bytes[at + index] === byte);
const ascii = (text: string): readonly number[] => Array.from(text, (char) => char.charCodeAt(0));
const asciiAt = (bytes: Uint8Array, start: number, end: number): string =>
  String.fromCharCode(...bytes.subarray(start, end));

const uint16BE = (bytes: Uint8Array, at: number): number => ((bytes[at] ?? 0) << 8) | (bytes[at + 1] ?? 0);
const uint32BE = (bytes: Uint8Array, at: number): number => (uint16BE(bytes, at) * 0x10000) + uint16BE(bytes, at + 2);
const uint32LE = (bytes: Uint8Array, at: number): number =>
  ((bytes[at] ?? 0) | ((bytes[at + 1] ?? 0) << 8) | ((bytes[at + 2] ?? 0) << 16)) + (bytes[at + 3] ?? 0) * 0x1000000;

// --- JPEG -------------------------------------------------------------------------

const JPEG_SOI = [0xff, 0xd8, 0xff];
const JPEG_EOI = 0xd9;
const JPEG_SOS = 0xda;
/** Baseline, extended and progressive frames: what decoders everywhere read. */
const JPEG_COMMON_FRAMES: ReadonlySet<number> = new Set([0xc0, 0xc1, 0xc2]);
/** Lossless and arithmetic-coded frames: valid JPEG, but few decoders accept them. */
const JPEG_RARE_FRAMES: ReadonlySet<number> = new Set([0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);
const isRestartMarker = (marker: number): boolean => marker >= 0xd0 && marker <= 0xd7;
/** Markers without a length field. */
const isStandaloneMarker = (marker: number): boolean => marker === 0x01 || isRestartMarker(marker);

/** Index of the marker that ends the entropy-coded data starting at `from`, or -1. */
function endOfEntropyData(bytes: Uint8Array, from: number): number {
  let position = from;
  for (;;) {
    const candidate = bytes.indexOf(0xff, position);
    const next = candidate < 0 ? undefined : bytes[candidate + 1];
    if (next === undefined) return -1;
    // FF 00 is an escaped data byte and FF D0-D7 a restart marker: both belong to the scan.
    if (next === 0x00 || isRestartMarker(next)) position = candidate + 2;
    else return candidate;
  }
}

/**
 * Walks the JPEG's segments without copying (fast on 25 MB): checks that a frame header
 * comes before image data and that the image data is complete up to its end marker (EOI).
 * Trailing bytes after EOI are allowed (motion photos append a video there).
 * Returns the end of the frame header: everything needed for size and orientation.
 */
function jpegHeaderEnd(bytes: Uint8Array): number {
  let position = 2;
  let frameEnd: number | undefined;
  let sawScan = false;
  while (position < bytes.length) {
    // Like libjpeg, skip stray bytes before a marker, then any 0xFF fill bytes.
    position = bytes.indexOf(0xff, position);
    if (position < 0) break;
    while (bytes[position] === 0xff) position += 1;
    const marker = bytes[position];
    if (marker === undefined) break;
    position += 1;
    if (marker === JPEG_EOI) {
      if (frameEnd === undefined || !sawScan) throw damaged();
      return frameEnd;
    }
    if (marker === 0x00 || isStandaloneMarker(marker)) continue;
    if (position + 2 > bytes.length) break;
    const segmentLength = uint16BE(bytes, position);
    const segmentEnd = position + segmentLength;
    if (segmentLength < 2 || segmentEnd > bytes.length) break;
    if (JPEG_RARE_FRAMES.has(marker)) {
      const kind = `0x${marker.toString(16).toUpperCase()}`;
      throw photoError(`photo: unsupported JPEG encoding (frame type ${kind}: lossless or arithmetic-coded)`);
    }
    if (JPEG_COMMON_FRAMES.has(marker)) frameEnd ??= segmentEnd;
    if (marker === JPEG_SOS) {
      if (frameEnd === undefined) throw damaged();
      sawScan = true;
      position = endOfEntropyData(bytes, segmentEnd);
      if (position < 0) break;
    } else {
      position = segmentEnd;
    }
  }
  throw damaged();
}

// --- PNG --------------------------------------------------------------------------

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const PNG_CHUNK_OVERHEAD = 12;

/** Walks the chunks up to IEND (jumping over data, no copies); returns the end of IHDR. */
function pngHeaderEnd(bytes: Uint8Array): number {
  let position = PNG_SIGNATURE.length;
  let headerEnd: number | undefined;
  let sawImageData = false;
  while (position + 8 <= bytes.length) {
    const chunkEnd = position + PNG_CHUNK_OVERHEAD + uint32BE(bytes, position);
    const name = asciiAt(bytes, position + 4, position + 8);
    if (name === 'IEND') {
      if (headerEnd === undefined || !sawImageData) throw damaged();
      return headerEnd;
    }
    if (chunkEnd > bytes.length) break;
    if (name === 'IHDR') headerEnd ??= chunkEnd;
    if (name === 'IDAT') sawImageData = true;
    position = chunkEnd;
  }
  throw damaged();
}

// --- WebP -------------------------------------------------------------------------

const RIFF = ascii('RIFF');
const WEBP = ascii('WEBP');
const WEBP_IMAGE_CHUNKS: ReadonlySet<string> = new Set(['VP8 ', 'VP8L', 'VP8X']);

/** Checks the RIFF container is complete; returns the end of the first chunk, which holds the size. */
function webpHeaderEnd(bytes: Uint8Array): number {
  const riffEnd = 8 + uint32LE(bytes, 4);
  const firstChunkName = asciiAt(bytes, 12, 16);
  const firstChunkEnd = 20 + uint32LE(bytes, 16);
  if (bytes.length < riffEnd || firstChunkEnd > riffEnd || !WEBP_IMAGE_CHUNKS.has(firstChunkName)) throw damaged();
  return firstChunkEnd;
}

// --- Sniffing ---------------------------------------------------------------------

interface SupportedFormat {
  readonly type: ImageType;
  readonly mime: ImageMime;
  /** What image-size calls the type, to check it read the format we sniffed. */
  readonly imageSizeType: string;
  readonly matches: (bytes: Uint8Array) => boolean;
  readonly headerEnd: (bytes: Uint8Array) => number;
}

const SUPPORTED_FORMATS: readonly SupportedFormat[] = [
  { type: 'jpeg', mime: 'image/jpeg', imageSizeType: 'jpg', matches: (b) => startsWith(b, JPEG_SOI), headerEnd: jpegHeaderEnd },
  { type: 'png', mime: 'image/png', imageSizeType: 'png', matches: (b) => startsWith(b, PNG_SIGNATURE), headerEnd: pngHeaderEnd },
  {
    type: 'webp',
    mime: 'image/webp',
    imageSizeType: 'webp',
    matches: (b) => startsWith(b, RIFF) && startsWith(b, WEBP, 8),
    headerEnd: webpHeaderEnd,
  },
];

/** ISO-BMFF brands (bytes 8-11 after `ftyp`) that are still images. */
const STILL_IMAGE_BRANDS: ReadonlyMap<string, string> = new Map([
  ['heic', 'image/heic'],
  ['heix', 'image/heic'],
  ['heim', 'image/heic'],
  ['heis', 'image/heic'],
  ['mif1', 'image/heif'],
  ['msf1', 'image/heif'],
  ['avif', 'image/avif'],
  ['avis', 'image/avif'],
]);

/** Binary formats people upload by mistake, named so the error message says what arrived. */
const GIF87A = ascii('GIF87a');
const GIF89A = ascii('GIF89a');
const BMP = ascii('BM');
const PDF = ascii('%PDF-');
const OTHER_BINARY_FORMATS: readonly { readonly mime: string; readonly matches: (bytes: Uint8Array) => boolean }[] = [
  { mime: 'image/gif', matches: (b) => startsWith(b, GIF87A) || startsWith(b, GIF89A) },
  // "BM" alone is too common at the start of text; the reserved header bytes must be zero too.
  { mime: 'image/bmp', matches: (b) => startsWith(b, BMP) && b.length >= 26 && startsWith(b, [0, 0, 0, 0], 6) },
  { mime: 'image/tiff', matches: (b) => startsWith(b, [0x49, 0x49, 0x2a, 0x00]) || startsWith(b, [0x4d, 0x4d, 0x00, 0x2a]) },
  { mime: 'application/pdf', matches: (b) => startsWith(b, PDF) },
  { mime: 'application/zip', matches: (b) => startsWith(b, [0x50, 0x4b, 0x03, 0x04]) },
];

const TEXT_SNIFF_BYTES = 512;
const HTML_START = /^<(?:!doctype|html|head|body|script|iframe|title|meta|div|p|h1|!--)[\s>/]/i;
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** A media type for bytes that are not a supported image, for the error message. */
function describeUnsupported(bytes: Uint8Array): string {
  const binary = OTHER_BINARY_FORMATS.find((format) => format.matches(bytes));
  if (binary !== undefined) return binary.mime;
  if (asciiAt(bytes, 4, 8) === 'ftyp') {
    const brand = asciiAt(bytes, 8, 12);
    return STILL_IMAGE_BRANDS.get(brand) ?? (brand === 'qt  ' ? 'video/quicktime' : 'video/mp4');
  }
  let head: string;
  try {
    head = textDecoder.decode(bytes.subarray(0, TEXT_SNIFF_BYTES), { stream: true });
  } catch {
    return 'application/octet-stream';
  }
  // eslint-disable-next-line no-control-regex -- text files have no NULs or other C0 controls but tab/CR/LF/FF
  if (/[\u0000-\u0008\u000e-\u001f]/.test(head)) return 'application/octet-stream';
  const start = head.replace(/^\uFEFF/, '').trimStart();
  if (HTML_START.test(start)) return 'text/html';
  if (/^<\?xml[\s?]/i.test(start)) return /<svg[\s>]/i.test(start) ? 'image/svg+xml' : 'application/xml';
  if (/^<svg[\s>]/i.test(start)) return 'image/svg+xml';
  if (/^[{[]/.test(start)) return 'application/json';
  return 'text/plain';
}

/**
 * Type, size and EXIF orientation of a photo, for choosing the video ratio and the
 * `promptImage` media type. Accepts JPEG, PNG and WebP that are complete; anything else
 * throws a PermanentError (stage `photo`) whose message is fit for an admin.
 * Never copies the image bytes, so it stays fast on 25 MB photos.
 */
export function readImageInfo(bytes: Uint8Array): ImageInfo {
  if (bytes.length === 0) throw photoError(EMPTY_MESSAGE);
  const format = SUPPORTED_FORMATS.find((candidate) => candidate.matches(bytes));
  if (format === undefined) throw photoError(`photo: not a JPEG/PNG/WebP image (got ${describeUnsupported(bytes)})`);
  // image-size copies what it is given (JPEG), so it only gets the header.
  const header = bytes.subarray(0, format.headerEnd(bytes));
  let size: ReturnType<typeof imageSize>;
  try {
    size = imageSize(header);
  } catch (error) {
    throw damaged(error);
  }
  const { width, height } = size;
  if (size.type !== format.imageSizeType || !(width > 0 && height > 0)) throw damaged();
  const orientation =
    size.orientation !== undefined && Number.isInteger(size.orientation) && size.orientation >= 1 && size.orientation <= 8
      ? size.orientation
      : 1;
  const displayed = displayedSize(width, height, orientation);
  return {
    type: format.type,
    mime: format.mime,
    width,
    height,
    orientation,
    displayWidth: displayed.width,
    displayHeight: displayed.height,
  };
}
