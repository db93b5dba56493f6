/**
 * Reads what a prompt image declares about itself — pixel size and which metadata blocks
 * it carries — by walking its container (JPEG segments, PNG chunks, WebP RIFF chunks),
 * without decoding any pixels. What the worker sends to Runway is checked against this:
 * a photo should arrive upright and with nothing private left in it.
 */
import { sniffImageFormat, type ImageFormat } from './runway-prompt-image.js';

/** Metadata that can say where a photo was taken, by whom, or with what. */
export type MetadataKind = 'exif' | 'gps' | 'camera' | 'xmp' | 'iptc' | 'icc' | 'comment';
export const METADATA_KINDS: readonly MetadataKind[] = ['exif', 'gps', 'camera', 'xmp', 'iptc', 'icc', 'comment'];

export interface ImageHeaders {
  readonly format: ImageFormat;
  /** Pixel size as stored (before any EXIF orientation); 0 when no size header was found. */
  readonly width: number;
  readonly height: number;
  /** The TIFF structure of the EXIF block, when there is one. */
  readonly exif: Buffer | undefined;
  /** Kinds found in the container itself; 'gps' and 'camera' come from reading `exif`. */
  readonly metadata: ReadonlySet<MetadataKind>;
}

export function readImageHeaders(bytes: Buffer): ImageHeaders | undefined {
  const format = sniffImageFormat(bytes);
  switch (format) {
    case 'jpeg':
      return readJpeg(bytes);
    case 'png':
      return readPng(bytes);
    case 'webp':
      return readWebp(bytes);
    case undefined:
      return undefined;
  }
}

interface Found {
  width: number;
  height: number;
  exif: Buffer | undefined;
  metadata: Set<MetadataKind>;
}

const EXIF_HEADER = Buffer.from('Exif\0\0', 'latin1');
const XMP_NAMESPACES = ['http://ns.adobe.com/xap/1.0/\0', 'http://ns.adobe.com/xmp/extension/\0'].map((text) =>
  Buffer.from(text, 'latin1'),
);
const ICC_HEADER = Buffer.from('ICC_PROFILE\0', 'latin1');
const PHOTOSHOP_HEADER = Buffer.from('Photoshop 3.0\0', 'latin1');

const JPEG_SOS = 0xda;
const JPEG_EOI = 0xd9;
const JPEG_COM = 0xfe;

/** SOF0-SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not. */
function isJpegFrameMarker(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/** Marker segments up to the first scan; metadata after the image data is not looked for. */
function readJpeg(bytes: Buffer): ImageHeaders {
  const found: Found = { width: 0, height: 0, exif: undefined, metadata: new Set() };
  let offset = 2;
  while (offset + 4 <= bytes.length) {
    if (bytes[offset] !== 0xff) break;
    const marker = bytes[offset + 1] ?? 0;
    if (marker === 0xff) {
      offset += 1; // fill byte
      continue;
    }
    if (marker === 0x01 || marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7)) {
      offset += 2; // markers without a length
      continue;
    }
    if (marker === JPEG_EOI || marker === JPEG_SOS) break;
    const length = bytes.readUInt16BE(offset + 2);
    if (length < 2) break;
    const payload = bytes.subarray(offset + 4, Math.min(bytes.length, offset + 2 + length));
    if (isJpegFrameMarker(marker) && payload.length >= 5) {
      found.height = payload.readUInt16BE(1);
      found.width = payload.readUInt16BE(3);
    } else if (marker === 0xe1 && startsWith(payload, EXIF_HEADER)) {
      found.metadata.add('exif');
      found.exif ??= payload.subarray(EXIF_HEADER.length);
    } else if (marker === 0xe1 && XMP_NAMESPACES.some((namespace) => startsWith(payload, namespace))) {
      found.metadata.add('xmp');
    } else if (marker === 0xe2 && startsWith(payload, ICC_HEADER)) {
      found.metadata.add('icc');
    } else if (marker === 0xed && startsWith(payload, PHOTOSHOP_HEADER)) {
      found.metadata.add('iptc');
    } else if (marker === JPEG_COM) {
      found.metadata.add('comment');
    }
    offset += 2 + length;
  }
  return { format: 'jpeg', ...found };
}

/** PNG text chunks are sorted by keyword: some are containers for the usual metadata blocks. */
const PNG_TEXT_KEYWORDS: Readonly<Record<string, MetadataKind>> = {
  'XML:com.adobe.xmp': 'xmp',
  'Raw profile type xmp': 'xmp',
  'Raw profile type exif': 'exif',
  'Raw profile type APP1': 'exif',
  'Raw profile type iptc': 'iptc',
  'Raw profile type 8bim': 'iptc',
  'Raw profile type icc': 'icc',
  'Raw profile type icm': 'icc',
};

function readPng(bytes: Buffer): ImageHeaders {
  const found: Found = { width: 0, height: 0, exif: undefined, metadata: new Set() };
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString('latin1', offset + 4, offset + 8);
    const data = bytes.subarray(offset + 8, Math.min(bytes.length, offset + 8 + length));
    if (type === 'IHDR' && data.length >= 8) {
      found.width = data.readUInt32BE(0);
      found.height = data.readUInt32BE(4);
    } else if (type === 'eXIf') {
      found.metadata.add('exif');
      found.exif ??= data;
    } else if (type === 'iCCP') {
      found.metadata.add('icc');
    } else if (type === 'tEXt' || type === 'zTXt' || type === 'iTXt') {
      const keywordEnd = data.indexOf(0);
      const keyword = data.toString('latin1', 0, keywordEnd < 0 ? data.length : keywordEnd);
      found.metadata.add(PNG_TEXT_KEYWORDS[keyword] ?? 'comment');
    } else if (type === 'IEND') {
      break;
    }
    offset += 12 + length;
  }
  return { format: 'png', ...found };
}

function readWebp(bytes: Buffer): ImageHeaders {
  const found: Found = { width: 0, height: 0, exif: undefined, metadata: new Set() };
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const type = bytes.toString('latin1', offset, offset + 4);
    const length = bytes.readUInt32LE(offset + 4);
    const data = bytes.subarray(offset + 8, Math.min(bytes.length, offset + 8 + length));
    if (type === 'VP8X' && data.length >= 10) {
      found.width = 1 + data.readUIntLE(4, 3);
      found.height = 1 + data.readUIntLE(7, 3);
    } else if (type === 'VP8 ' && data.length >= 10 && found.width === 0) {
      // 3-byte frame tag, 3-byte start code, then 14-bit sizes (the top 2 bits are scaling).
      found.width = data.readUInt16LE(6) & 0x3fff;
      found.height = data.readUInt16LE(8) & 0x3fff;
    } else if (type === 'VP8L' && data.length >= 5 && found.width === 0) {
      const bits = data.readUInt32LE(1);
      found.width = (bits & 0x3fff) + 1;
      found.height = ((bits >>> 14) & 0x3fff) + 1;
    } else if (type === 'EXIF') {
      found.metadata.add('exif');
      // Some writers keep the JPEG-style "Exif\0\0" prefix inside the chunk.
      found.exif ??= startsWith(data, EXIF_HEADER) ? data.subarray(EXIF_HEADER.length) : data;
    } else if (type === 'XMP ') {
      found.metadata.add('xmp');
    } else if (type === 'ICCP') {
      found.metadata.add('icc');
    }
    offset += 8 + length + (length % 2);
  }
  return { format: 'webp', ...found };
}

function startsWith(bytes: Buffer, prefix: Buffer): boolean {
  return bytes.length >= prefix.length && bytes.subarray(0, prefix.length).equals(prefix);
}
