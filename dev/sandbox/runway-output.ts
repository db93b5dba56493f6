import { createCipheriv, createHash, createHmac, timingSafeEqual, type Hash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** A real 1 s 320x240 H.264 clip, served as every task's output unless a size is asked for. */
const FIXTURE_URL = new URL('./fixtures/sample.mp4', import.meta.url);

let fixture: Buffer | undefined;

export function sampleVideo(): Buffer {
  fixture ??= readFileSync(FIXTURE_URL);
  return fixture;
}

const CHUNK_BYTES = 64 * 1024;
const ZEROS = Buffer.alloc(CHUNK_BYTES);

/**
 * `ftyp` (isom) then an `mdat` box spanning the rest, so the stream sniffs as MP4.
 * Sizes past 4 GiB use the 64-bit box size form.
 */
export function mp4Header(totalBytes: number): Buffer {
  const ftyp = Buffer.alloc(32);
  ftyp.writeUInt32BE(32, 0);
  ftyp.write('ftypisom', 4, 'latin1');
  ftyp.writeUInt32BE(0x200, 12);
  ftyp.write('isomiso2avc1mp41', 16, 'latin1');
  const mdatBytes = totalBytes - ftyp.length;
  let mdat: Buffer;
  if (mdatBytes <= 0xffffffff) {
    mdat = Buffer.alloc(8);
    mdat.writeUInt32BE(Math.max(0, mdatBytes), 0);
    mdat.write('mdat', 4, 'latin1');
  } else {
    mdat = Buffer.alloc(16);
    mdat.writeUInt32BE(1, 0);
    mdat.write('mdat', 4, 'latin1');
    mdat.writeBigUInt64BE(BigInt(mdatBytes), 8);
  }
  return Buffer.concat([ftyp, mdat]).subarray(0, Math.max(0, totalBytes));
}

/**
 * A deterministic MP4-typed byte stream of exactly `totalBytes`, produced a chunk at a
 * time: the payload is AES-CTR keystream keyed by the task id, so the same task always
 * yields the same bytes and a 300 MB output never sits in memory.
 */
export function* syntheticVideoChunks(taskId: string, totalBytes: number): Generator<Buffer> {
  const header = mp4Header(totalBytes);
  if (header.length > 0) yield header;
  const key = createHash('sha256').update(`runway-sandbox-output:${taskId}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  let remaining = totalBytes - header.length;
  while (remaining > 0) {
    const size = Math.min(CHUNK_BYTES, remaining);
    yield cipher.update(ZEROS.subarray(0, size));
    remaining -= size;
  }
}

/** Hashes what is streamed, so serving an output also settles its sha256 without a second pass. */
export function* tapChunks(chunks: Iterable<Buffer>, hash: Hash | undefined): Generator<Buffer> {
  for (const chunk of chunks) {
    hash?.update(chunk);
    yield chunk;
  }
}

export function sha256OfChunks(chunks: Iterable<Buffer>): string {
  const hash = createHash('sha256');
  for (const chunk of chunks) hash.update(chunk);
  return hash.digest('hex');
}

/** Signs `taskId` + expiry like a CDN's signed URL; anyone holding the URL can fetch until it expires. */
export function signOutput(secret: Buffer, taskId: string, expiresAtMs: number): string {
  return createHmac('sha256', secret).update(`${taskId}:${String(expiresAtMs)}`).digest('base64url');
}

export function isOutputSignatureValid(secret: Buffer, taskId: string, expiresAtMs: number, signature: string): boolean {
  const expected = Buffer.from(signOutput(secret, taskId, expiresAtMs), 'utf8');
  const given = Buffer.from(signature, 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
