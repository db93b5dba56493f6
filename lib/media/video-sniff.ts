import { Readable } from 'node:stream';

/**
 * Is Runway's output really a video? A CDN can answer the output URL with 200 and an HTML
 * page, which must never be stored as `videos/<id>.mp4`. The answer's Content-Type and its
 * first bytes decide, without buffering the file.
 */

/** An MP4 opens with its `ftyp` box: a 4-byte size, `ftyp`, then a 4-byte major brand. */
export const VIDEO_SNIFF_BYTES = 12;

/** Types a CDN or bucket puts on a file it knows nothing about; the bytes then decide. */
const UNTYPED_MEDIA_TYPES: ReadonlySet<string> = new Set(['application/octet-stream', 'binary/octet-stream']);

/** `text/html; charset=utf-8` → `text/html`; undefined when there is no type at all. */
export function mediaTypeOf(contentType: string | null | undefined): string | undefined {
  const type = (contentType ?? '').replace(/;[\s\S]*$/, '').trim().toLowerCase();
  return type === '' ? undefined : type;
}

export function startsLikeMp4(head: Uint8Array): boolean {
  return head.length >= VIDEO_SNIFF_BYTES && Buffer.from(head.buffer, head.byteOffset + 4, 4).toString('latin1') === 'ftyp';
}

/** A video type (or none, or a generic binary one) and bytes that open like an MP4. */
export function isVideoOutput(mediaType: string | undefined, head: Uint8Array): boolean {
  const typeAllowsVideo = mediaType === undefined || mediaType.startsWith('video/') || UNTYPED_MEDIA_TYPES.has(mediaType);
  return typeAllowsVideo && startsLikeMp4(head);
}

/**
 * Reads chunks from `source` until at least `count` bytes have come (or the stream ended),
 * and hands back those first bytes with a stream that yields every byte of `source`, the
 * peeked ones first. Only the peeked chunks are held; the rest flows with backpressure.
 * Destroying the returned stream destroys `source`.
 */
export async function peekStart(source: Readable, count: number): Promise<{ head: Buffer; stream: Readable }> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  const peeked: Buffer[] = [];
  let size = 0;
  while (size < count) {
    const next = await iterator.next();
    if (next.done === true) break;
    const chunk = toBuffer(next.value);
    peeked.push(chunk);
    size += chunk.length;
  }
  async function* everyByte(): AsyncGenerator<Buffer> {
    yield* peeked.splice(0);
    for (;;) {
      const next = await iterator.next();
      if (next.done === true) return;
      yield toBuffer(next.value);
    }
  }
  const stream = Readable.from(everyByte(), { objectMode: false });
  stream.once('close', () => source.destroy());
  return { head: Buffer.concat(peeked).subarray(0, count), stream };
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(String(chunk));
}
