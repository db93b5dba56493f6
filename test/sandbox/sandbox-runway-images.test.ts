import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { readExifFacts } from '../../sandbox/runway-exif.js';
import { readImageHeaders } from '../../sandbox/runway-image-headers.js';
import { jpeg as jpegOfSize } from '../support/images.js';
import {
  closeSandboxes,
  dataUri,
  jpeg,
  magicOnlyJpeg,
  sha256,
  startSandbox,
  terminal,
  withComment,
  type Harness,
} from '../support/sandbox-runway.js';

afterEach(closeSandboxes);

const fixture = (name: string): Buffer => readFileSync(new URL(`../../sandbox/fixtures/${name}`, import.meta.url));
const REFUSED = fixture('refused.jpg');

const XMP = `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>Grandma</dc:creator></rdf:Description>
</rdf:RDF></x:xmpmeta>`;
const CAMERA_AND_GPS = {
  IFD0: { Make: 'Google', Model: 'Pixel 8' },
  IFD2: { BodySerialNumber: '38121FDJG00A4X' },
  IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 1234/100' },
};

function picture(width = 120, height = 80) {
  return sharp({ create: { width, height, channels: 3, background: { r: 90, g: 140, b: 60 } } });
}

/** An APP13 Photoshop segment holding one IPTC caption record, as photo tools write it. */
function iptcSegment(): Buffer {
  const record = Buffer.concat([Buffer.from([0x1c, 0x02, 0x78, 0x00, 0x08]), Buffer.from('Birthday', 'latin1')]);
  const resourceHeader = Buffer.concat([Buffer.from('8BIM', 'latin1'), Buffer.from([0x04, 0x04, 0x00, 0x00]), Buffer.alloc(4)]);
  resourceHeader.writeUInt32BE(record.length, 8);
  const payload = Buffer.concat([Buffer.from('Photoshop 3.0\0', 'latin1'), resourceHeader, record, Buffer.alloc(record.length % 2)]);
  const marker = Buffer.from([0xff, 0xed, 0, 0]);
  marker.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([marker, payload]);
}

/** A phone photo with everything private still in it: EXIF (rotated, GPS, camera), XMP, IPTC, ICC, a comment. */
async function photoWithEverything(): Promise<Buffer> {
  const encoded = await picture().withExif(CAMERA_AND_GPS).withMetadata({ orientation: 6 }).withIccProfile('p3').withXmp(XMP).jpeg().toBuffer();
  const withIptc = Buffer.concat([encoded.subarray(0, 2), iptcSegment(), encoded.subarray(2)]);
  return withComment(withIptc, 'Taken at 12 Elm Street');
}

/** Adds a tEXt chunk right after IHDR, as many tools store a PNG's description. */
function withPngText(png: Buffer, keyword: string, text: string): Buffer {
  const nameAndData = Buffer.concat([Buffer.from('tEXt', 'latin1'), Buffer.from(`${keyword}\0${text}`, 'latin1')]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(nameAndData.length - 4);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(nameAndData));
  const afterHeader = 8 + 8 + 13 + 4;
  return Buffer.concat([png.subarray(0, afterHeader), length, nameAndData, crc, png.subarray(afterHeader)]);
}

async function sendPhoto(sandbox: Harness, photo: Buffer, type = 'jpeg', ratio = '1280:720'): Promise<string> {
  return sandbox.createTask({ model: 'gen4_turbo', promptImage: dataUri(photo, type), ratio });
}

describe('what Runway received', () => {
  it('records a photo carrying every kind of metadata, its orientation and size, and still generates', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const photo = await photoWithEverything();
    const id = await sendPhoto(sandbox, photo);
    expect(sandbox.runway.task(id)?.promptImage).toEqual({
      format: 'jpeg',
      width: 120,
      height: 80,
      bytes: photo.length,
      orientation: 6,
      metadata: ['exif', 'gps', 'camera', 'xmp', 'iptc', 'icc', 'comment'],
      sha256: sha256(photo),
    });
    expect((await sandbox.getTask(id)).status).toBe('SUCCEEDED');
  });

  it('records a clean, upright photo as carrying no metadata', async () => {
    const sandbox = await startSandbox();
    const photo = await picture(1280, 720).jpeg({ quality: 85 }).toBuffer();
    const id = await sendPhoto(sandbox, photo);
    expect(sandbox.runway.task(id)?.promptImage).toEqual({
      format: 'jpeg',
      width: 1280,
      height: 720,
      bytes: photo.length,
      orientation: 1,
      metadata: [],
      sha256: sha256(photo),
    });
  });

  it('finds EXIF, XMP, ICC and text chunks in a PNG', async () => {
    const sandbox = await startSandbox();
    const encoded = await picture().withExif(CAMERA_AND_GPS).withIccProfile('p3').withXmp(XMP).png().toBuffer();
    const id = await sendPhoto(sandbox, withPngText(encoded, 'Description', 'Grandma at the beach'), 'png');
    expect(sandbox.runway.task(id)?.promptImage).toMatchObject({
      format: 'png',
      width: 120,
      height: 80,
      metadata: ['exif', 'gps', 'camera', 'xmp', 'icc', 'comment'],
    });
  });

  it('finds EXIF, XMP and ICC chunks in a WebP', async () => {
    const sandbox = await startSandbox();
    const photo = await picture(90, 160).withExif(CAMERA_AND_GPS).withIccProfile('p3').withXmp(XMP).webp().toBuffer();
    const id = await sendPhoto(sandbox, photo, 'webp', '720:1280');
    expect(sandbox.runway.task(id)?.promptImage).toMatchObject({
      format: 'webp',
      width: 90,
      height: 160,
      metadata: ['exif', 'gps', 'camera', 'xmp', 'icc'],
    });
    const clean = await sendPhoto(sandbox, await picture(90, 160).webp().toBuffer(), 'webp');
    expect(sandbox.runway.task(clean)?.promptImage?.metadata).toEqual([]);
  });

  it('records an uploaded photo the same way, and nothing for an https URL it does not fetch', async () => {
    const sandbox = await startSandbox();
    const photo = await photoWithEverything();
    const uploaded = await sandbox.createTask({ model: 'gen4_turbo', promptImage: await sandbox.upload(photo), ratio: '1280:720' });
    expect(sandbox.runway.task(uploaded)?.promptImage).toMatchObject({
      bytes: photo.length,
      orientation: 6,
      sha256: sha256(photo),
      metadata: ['exif', 'gps', 'camera', 'xmp', 'iptc', 'icc', 'comment'],
    });
    const linked = await sandbox.createTask({ model: 'gen4_turbo', promptImage: 'https://photos.example.com/a.jpg', ratio: '1280:720' });
    expect(sandbox.runway.task(linked)?.promptImage).toBeUndefined();
  });

  it('keeps the received bytes only with keepPromptImages', async () => {
    const photo = await photoWithEverything();
    const keeping = await startSandbox({ keepPromptImages: true });
    const fromDataUri = await sendPhoto(keeping, photo);
    const fromUpload = await keeping.createTask({ model: 'gen4_turbo', promptImage: await keeping.upload(photo), ratio: '1280:720' });
    expect(keeping.runway.promptImageBytes(fromDataUri)?.equals(photo)).toBe(true);
    expect(keeping.runway.promptImageBytes(fromUpload)?.equals(photo)).toBe(true);

    const forgetting = await startSandbox();
    expect(forgetting.runway.promptImageBytes(await sendPhoto(forgetting, photo))).toBeUndefined();
  });
});

describe('a photo outside Runway’s input limits', () => {
  it.each([
    { shape: '4:1', width: 400, height: 100 },
    { shape: '1:4', width: 100, height: 400 },
    { shape: '8000×100', width: 8000, height: 100 },
    { shape: '8000×5000 (too wide a side at a fine aspect)', width: 8000, height: 5000 },
  ])('is accepted at create, then fails ASSET.INVALID on leaving PENDING ($shape)', async ({ width, height }) => {
    const sandbox = await startSandbox({ generationMs: 1000 });
    const res = await sandbox.create({ model: 'gen4_turbo', promptImage: dataUri(Buffer.from(jpegOfSize({ width, height }))), ratio: '1280:720' });
    expect(res.status).toBe(200);
    const { id } = (await res.json()) as { id: string };
    expect((await sandbox.getTask(id)).status).toBe('PENDING');
    const seen = await sandbox.waitFor(id, terminal);
    expect(seen.at(-1)).toMatchObject({ status: 'FAILED', failureCode: 'ASSET.INVALID', failure: 'The input image could not be processed.' });
    expect(seen.some((task) => task.status === 'RUNNING')).toBe(false);
    expect(sandbox.runway.task(id)?.promptImage).toMatchObject({ width, height });
  });

  it.each([
    { shape: '2:1', width: 400, height: 200 },
    { shape: '1:2', width: 200, height: 400 },
    { shape: '7999×4000', width: 7999, height: 4000 },
  ])('is within them at the edge ($shape) and succeeds', async ({ width, height }) => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sendPhoto(sandbox, Buffer.from(jpegOfSize({ width, height })));
    expect((await sandbox.getTask(id)).status).toBe('SUCCEEDED');
  });
});

describe('a photo that cannot be decoded', () => {
  it('fails ASSET.INVALID when it is a JPEG by its magic number only', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sendPhoto(sandbox, magicOnlyJpeg());
    expect(await sandbox.getTask(id)).toMatchObject({ status: 'FAILED', failureCode: 'ASSET.INVALID' });
    expect(sandbox.runway.task(id)?.promptImage).toMatchObject({ format: 'jpeg', width: 0, height: 0, bytes: 8 });
  });

  it('fails ASSET.INVALID when it was cut short', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const whole = await sharp(REFUSED).resize(640, 480).jpeg({ quality: 90 }).toBuffer();
    const id = await sendPhoto(sandbox, whole.subarray(0, Math.floor(whole.length / 2)));
    expect(await sandbox.getTask(id)).toMatchObject({ status: 'FAILED', failureCode: 'ASSET.INVALID' });
  });

  it('fails ASSET.INVALID when uploaded', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sandbox.createTask({ model: 'gen4_turbo', promptImage: await sandbox.upload(magicOnlyJpeg()), ratio: '1280:720' });
    expect(await sandbox.getTask(id)).toMatchObject({ status: 'FAILED', failureCode: 'ASSET.INVALID' });
  });
});

describe('input moderation by picture', () => {
  it('ships a small, mostly magenta refused.jpg', async () => {
    expect(REFUSED.length).toBeLessThan(10 * 1024);
    expect(await sharp(REFUSED).metadata()).toMatchObject({ format: 'jpeg', width: 320, height: 240 });
  });

  it('refuses refused.jpg with SAFETY.INPUT.IMAGE', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sendPhoto(sandbox, REFUSED);
    expect(await sandbox.getTask(id)).toMatchObject({ status: 'FAILED', failureCode: 'SAFETY.INPUT.IMAGE' });
  });

  it.each([
    { how: 'shrunk to 160×120 at quality 60', prepare: (image: Sharp) => image.resize(160, 120).jpeg({ quality: 60 }) },
    { how: 'centre-cropped to 2:1', prepare: (image: Sharp) => image.resize(320, 160, { fit: 'cover' }).jpeg() },
    { how: 'centre-cropped to 1:2 as a WebP', prepare: (image: Sharp) => image.resize(120, 240, { fit: 'cover' }).webp() },
  ])('still refuses it re-encoded without its comment marker: $how', async ({ prepare }) => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const prepared = await prepare(sharp(REFUSED)).toBuffer();
    expect(prepared.includes(Buffer.from('runway-sandbox:'))).toBe(false);
    const format = (await sharp(prepared).metadata()).format;
    const id = await sendPhoto(sandbox, prepared, format === 'webp' ? 'webp' : 'jpeg');
    expect(await sandbox.getTask(id)).toMatchObject({ status: 'FAILED', failureCode: 'SAFETY.INPUT.IMAGE' });
    expect(sandbox.runway.task(id)?.promptImage?.metadata).toEqual([]);
  });

  it.each(['landscape.jpg', 'portrait-exif6.jpg', 'square.png'])('lets the ordinary fixture %s through', async (name) => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sendPhoto(sandbox, fixture(name), name.endsWith('.png') ? 'png' : 'jpeg');
    expect((await sandbox.getTask(id)).status).toBe('SUCCEEDED');
  });

  it('keeps refusing a grey photo that carries the comment marker', async () => {
    const sandbox = await startSandbox({ generationMs: 0 });
    const id = await sendPhoto(sandbox, jpeg('runway-sandbox:SAFETY.INPUT.IMAGE'));
    expect(await sandbox.getTask(id)).toMatchObject({ status: 'FAILED', failureCode: 'SAFETY.INPUT.IMAGE' });
  });
});

describe('reading EXIF', () => {
  it('counts a body serial number alone as camera details, and reads orientation from either byte order', async () => {
    const serialOnly = await picture().withExif({ IFD2: { BodySerialNumber: '38121FDJG00A4X' } }).jpeg().toBuffer();
    const headers = readImageHeaders(serialOnly);
    expect(readExifFacts(headers?.exif)).toEqual({ orientation: 1, gps: false, camera: true });

    const bigEndian = readImageHeaders(Buffer.from(jpegOfSize({ orientation: 8, exifByteOrder: 'big-endian' })));
    const littleEndian = readImageHeaders(Buffer.from(jpegOfSize({ orientation: 3, exifByteOrder: 'little-endian' })));
    expect(readExifFacts(bigEndian?.exif)).toEqual({ orientation: 8, gps: false, camera: false });
    expect(readExifFacts(littleEndian?.exif)).toEqual({ orientation: 3, gps: false, camera: false });
  });

  it('yields the defaults for a damaged EXIF block', () => {
    expect(readExifFacts(Buffer.from('MM\0\x2a\xff\xff\xff\xff', 'latin1'))).toEqual({ orientation: 1, gps: false, camera: false });
    expect(readExifFacts(Buffer.from('nonsense'))).toEqual({ orientation: 1, gps: false, camera: false });
  });
});
