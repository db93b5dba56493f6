import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { isVideoOutput, mediaTypeOf, peekStart, VIDEO_SNIFF_BYTES } from '../../lib/media/video-sniff.js';

const MP4_START = Buffer.from('\0\0\0\x18ftypmp42', 'latin1');

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('the media type of a Content-Type header', () => {
  it('ends at the first semicolon, even when a parameter holds another', () => {
    expect(mediaTypeOf('video/mp4; codecs="avc1.640028; mp4a.40.2"')).toBe('video/mp4');
  });

  it('is none when the header has only parameters', () => {
    expect(mediaTypeOf('; charset=utf-8')).toBeUndefined();
    expect(mediaTypeOf(undefined)).toBeUndefined();
  });
});

describe('peeking at a stream of objects rather than Buffers', () => {
  it('reads Uint8Array chunks, views into larger buffers included, byte for byte', async () => {
    const body = Buffer.concat([MP4_START, Buffer.from('rest of the video')]);
    const backing = new Uint8Array(body.length + 8).fill(0xee);
    backing.set(body, 5);
    const view = backing.subarray(5, 5 + body.length);
    const source = Readable.from([view.subarray(0, 7), view.subarray(7, 20), view.subarray(20)]);

    const { head, stream } = await peekStart(source, VIDEO_SNIFF_BYTES);

    expect(head.equals(MP4_START)).toBe(true);
    expect(isVideoOutput('video/mp4', head)).toBe(true);
    expect((await readAll(stream)).equals(body)).toBe(true);
  });

  it('reads string chunks as their UTF-8 bytes', async () => {
    const source = Readable.from(['<!DOCTYPE html>', '<html>é</html>']);

    const { head, stream } = await peekStart(source, VIDEO_SNIFF_BYTES);

    expect(head.toString('utf8')).toBe('<!DOCTYPE ht');
    expect(isVideoOutput('text/html', head)).toBe(false);
    expect((await readAll(stream)).toString('utf8')).toBe('<!DOCTYPE html><html>é</html>');
  });
});
