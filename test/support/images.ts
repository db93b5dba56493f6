import { crc32, deflateSync } from 'node:zlib';

/**
 * Builders for photo bytes in plain Node, so tests need no image files or native tools.
 * JPEG and PNG outputs are real, decodable images (a flat grey picture); the WebP and GIF
 * ones carry correct headers around placeholder image data.
 */

export type ByteOrder = 'big-endian' | 'little-endian';

const concat = (parts: readonly Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
};

const bytesOf = (...values: number[]): Uint8Array => Uint8Array.from(values);
const asciiBytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const u16be = (value: number): number[] => [(value >> 8) & 0xff, value & 0xff];
const u16le = (value: number): number[] => [value & 0xff, (value >> 8) & 0xff];
const u24le = (value: number): number[] => [value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff];
const u32be = (value: number): number[] => [(value >>> 24) & 0xff, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
const u32le = (value: number): number[] => [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];

// --- JPEG -------------------------------------------------------------------------

export interface JpegOptions {
  readonly width?: number;
  readonly height?: number;
  /** Adds an EXIF APP1 segment with this Orientation tag (any 16-bit value, even invalid ones). */
  readonly orientation?: number;
  /** Byte order of the EXIF block ('MM' or 'II'); big-endian by default. */
  readonly exifByteOrder?: ByteOrder;
  /** Adds this many bytes of COM (comment) segments, to build large files cheaply. */
  readonly paddingBytes?: number;
  /** Where the padding goes: among the metadata before the frame header, or after it (default). */
  readonly paddingPlacement?: 'before-frame' | 'after-frame';
  /**
   * Frame header marker: 0xC0 baseline (default), 0xC2 progressive, 0xC3 lossless, ...
   * Only relabels the frame: the scan stays baseline, so only 0xC0/0xC1 files decode.
   */
  readonly frameMarker?: number;
  /** Leave out the end-of-image marker, as a download cut short would. */
  readonly endMarker?: boolean;
  /** Bytes appended after the end-of-image marker (motion photos put a video there). */
  readonly trailer?: Uint8Array;
}

const MAX_SEGMENT_PAYLOAD = 0xffff - 2;

function segment(marker: number, payload: Uint8Array): Uint8Array {
  return concat([bytesOf(0xff, marker, ...u16be(payload.length + 2)), payload]);
}

function exifSegment(orientation: number, order: ByteOrder): Uint8Array {
  const u16 = order === 'big-endian' ? u16be : u16le;
  const u32 = order === 'big-endian' ? u32be : u32le;
  const tiff = bytesOf(
    ...(order === 'big-endian' ? [0x4d, 0x4d] : [0x49, 0x49]),
    ...u16(42),
    ...u32(8), // IFD0 right after the TIFF header
    ...u16(1), // one entry
    ...u16(0x0112), // Orientation
    ...u16(3), // SHORT
    ...u32(1), // one value
    ...u16(orientation),
    0,
    0,
    ...u32(0), // no next IFD
  );
  return segment(0xe1, concat([asciiBytes('Exif\0\0'), tiff]));
}

function commentSegments(totalBytes: number): Uint8Array[] {
  const segments: Uint8Array[] = [];
  for (let left = totalBytes; left > 0; left -= MAX_SEGMENT_PAYLOAD + 4) {
    const payload = new Uint8Array(Math.max(0, Math.min(MAX_SEGMENT_PAYLOAD, left - 4))).fill(0x20);
    segments.push(segment(0xfe, payload));
  }
  return segments;
}

/**
 * A decodable greyscale JPEG: every 8×8 block is flat mid-grey, coded with one-symbol
 * Huffman tables so each block costs two zero bits.
 */
export function jpeg(options: JpegOptions = {}): Uint8Array {
  const width = options.width ?? 64;
  const height = options.height ?? 48;
  const jfif = segment(0xe0, bytesOf(...asciiBytes('JFIF\0'), 1, 1, 0, ...u16be(1), ...u16be(1), 0, 0));
  const exif = options.orientation === undefined ? [] : [exifSegment(options.orientation, options.exifByteOrder ?? 'big-endian')];
  const padding = commentSegments(options.paddingBytes ?? 0);
  const paddingBefore = options.paddingPlacement === 'before-frame';
  const quantization = segment(0xdb, concat([bytesOf(0x00), new Uint8Array(64).fill(1)]));
  const frame = segment(options.frameMarker ?? 0xc0, bytesOf(8, ...u16be(height), ...u16be(width), 1, 1, 0x11, 0));
  const oneSymbolTable = (tableClass: number): Uint8Array =>
    segment(0xc4, concat([bytesOf(tableClass << 4), bytesOf(1), new Uint8Array(15), bytesOf(0x00)]));
  const scanHeader = segment(0xda, bytesOf(1, 1, 0x00, 0, 63, 0));
  const blocks = Math.ceil(width / 8) * Math.ceil(height / 8);
  const bits = blocks * 2;
  const scanData = new Uint8Array(Math.ceil(bits / 8));
  // Unused bits of the last byte are padded with ones, as the standard asks.
  if (bits % 8 !== 0) scanData[scanData.length - 1] = 0xff >> (bits % 8);
  return concat([
    bytesOf(0xff, 0xd8),
    jfif,
    ...exif,
    ...(paddingBefore ? padding : []),
    quantization,
    frame,
    ...(paddingBefore ? [] : padding),
    oneSymbolTable(0),
    oneSymbolTable(1),
    scanHeader,
    scanData,
    options.endMarker === false ? new Uint8Array(0) : bytesOf(0xff, 0xd9),
    options.trailer ?? new Uint8Array(0),
  ]);
}

// --- PNG --------------------------------------------------------------------------

function pngChunk(name: string, data: Uint8Array): Uint8Array {
  const nameAndData = concat([asciiBytes(name), data]);
  return concat([bytesOf(...u32be(data.length)), nameAndData, bytesOf(...u32be(crc32(nameAndData)))]);
}

/** A decodable 8-bit greyscale PNG, all black. */
export function png(options: { readonly width?: number; readonly height?: number } = {}): Uint8Array {
  const width = options.width ?? 64;
  const height = options.height ?? 48;
  const header = bytesOf(...u32be(width), ...u32be(height), 8, 0, 0, 0, 0);
  // One filter-type byte, then one byte per pixel, for each row.
  const pixels = deflateSync(new Uint8Array((width + 1) * height));
  return concat([
    bytesOf(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
    pngChunk('IHDR', header),
    pngChunk('IDAT', pixels),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

// --- WebP -------------------------------------------------------------------------

export type WebpKind = 'VP8' | 'VP8L' | 'VP8X';

function riffChunk(name: string, data: Uint8Array): Uint8Array {
  const pad = data.length % 2 === 1 ? bytesOf(0) : new Uint8Array(0);
  return concat([asciiBytes(name), bytesOf(...u32le(data.length)), data, pad]);
}

function vp8Chunk(width: number, height: number): Uint8Array {
  const firstPartitionSize = 16;
  // Frame tag: key frame, version 0, shown, then the first partition's size.
  const tag = (firstPartitionSize << 5) | (1 << 4);
  const data = concat([
    bytesOf(...u24le(tag), 0x9d, 0x01, 0x2a, ...u16le(width), ...u16le(height)),
    new Uint8Array(firstPartitionSize),
  ]);
  return riffChunk('VP8 ', data);
}

function vp8lChunk(width: number, height: number): Uint8Array {
  const bits = ((width - 1) & 0x3fff) | (((height - 1) & 0x3fff) << 14);
  return riffChunk('VP8L', concat([bytesOf(0x2f, ...u32le(bits)), new Uint8Array(8)]));
}

/** A WebP with a correct RIFF container and size header (the image data is a placeholder). */
export function webp(options: { readonly kind?: WebpKind; readonly width?: number; readonly height?: number } = {}): Uint8Array {
  const width = options.width ?? 64;
  const height = options.height ?? 48;
  const kind = options.kind ?? 'VP8';
  const chunks =
    kind === 'VP8'
      ? [vp8Chunk(width, height)]
      : kind === 'VP8L'
        ? [vp8lChunk(width, height)]
        : [riffChunk('VP8X', bytesOf(0, 0, 0, 0, ...u24le(width - 1), ...u24le(height - 1))), vp8Chunk(width, height)];
  const body = concat([asciiBytes('WEBP'), ...chunks]);
  return concat([asciiBytes('RIFF'), bytesOf(...u32le(body.length)), body]);
}

// --- Other things that arrive instead of a photo ----------------------------------

/** A GIF89a: a white canvas of the given size holding one 1×1 frame (valid, and tiny). */
export function gif(options: { readonly width?: number; readonly height?: number } = {}): Uint8Array {
  const width = options.width ?? 64;
  const height = options.height ?? 48;
  return concat([
    asciiBytes('GIF89a'),
    bytesOf(...u16le(width), ...u16le(height), 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff),
    bytesOf(0x2c, ...u16le(0), ...u16le(0), ...u16le(1), ...u16le(1), 0),
    bytesOf(2, 2, 0x4c, 0x01, 0, 0x3b),
  ]);
}

/** An HTML page, as a misconfigured storage proxy or login wall would return. */
export function htmlPage(text = '<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please sign in</body></html>\n'): Uint8Array {
  return asciiBytes(text);
}

/** The first `length` bytes, as a download cut short would leave them. */
export function truncated(bytes: Uint8Array, length: number): Uint8Array {
  return bytes.slice(0, length);
}
