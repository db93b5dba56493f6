import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { humanSize, notVideoMessage } from '../../lib/decide/failure-message.js';
import { isVideoOutput, mediaTypeOf, peekStart, startsLikeMp4, VIDEO_SNIFF_BYTES } from '../../lib/media/video-sniff.js';

/** The first 12 bytes of a real MP4: box size 32, `ftyp`, major brand `isom`. */
const MP4_START = Buffer.from('00000020667479706973736f', 'hex');
const HTML_PAGE = Buffer.from('<!DOCTYPE html><html><body>The resource you requested is unavailable.</body></html>');

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A source that yields exactly these chunks, and says whether it was destroyed. */
function sourceOf(chunks: readonly Buffer[]): { source: Readable; pulled: () => number } {
  let pulled = 0;
  const queue = [...chunks];
  const source = new Readable({
    read() {
      const next = queue.shift();
      if (next === undefined) {
        this.push(null);
        return;
      }
      pulled += 1;
      this.push(next);
    },
  });
  return { source, pulled: () => pulled };
}

describe('recognising an MP4 by its first bytes', () => {
  it('accepts a size, then `ftyp`, then a major brand', () => {
    expect(startsLikeMp4(MP4_START)).toBe(true);
    expect(startsLikeMp4(Buffer.concat([MP4_START, Buffer.alloc(100)]))).toBe(true);
  });

  it('needs all 12 bytes: `ftyp` alone at offset 4 is not enough', () => {
    expect(VIDEO_SNIFF_BYTES).toBe(12);
    expect(startsLikeMp4(MP4_START.subarray(0, 11))).toBe(false);
    expect(startsLikeMp4(MP4_START.subarray(0, 8))).toBe(false);
    expect(startsLikeMp4(Buffer.alloc(0))).toBe(false);
  });

  it('refuses HTML and `ftyp` anywhere but at offset 4', () => {
    expect(startsLikeMp4(HTML_PAGE)).toBe(false);
    expect(startsLikeMp4(Buffer.from('ftypisom0000'))).toBe(false);
    expect(startsLikeMp4(Buffer.from('\0\0\0\0\0ftypisom000'))).toBe(false);
  });

  it('reads a view into a larger buffer at its own offset', () => {
    const shared = Buffer.concat([HTML_PAGE, MP4_START]);
    expect(startsLikeMp4(shared.subarray(HTML_PAGE.length))).toBe(true);
    expect(startsLikeMp4(shared.subarray(0, 12))).toBe(false);
  });
});

describe('deciding from the Content-Type and the first bytes', () => {
  it('accepts video types, generic binary types and no type at all when the bytes say MP4', () => {
    for (const type of ['video/mp4', 'video/quicktime', 'application/octet-stream', 'binary/octet-stream', undefined]) {
      expect(isVideoOutput(type, MP4_START)).toBe(true);
    }
  });

  it('refuses video/mp4 whose bytes do not open like an MP4', () => {
    expect(isVideoOutput('video/mp4', HTML_PAGE)).toBe(false);
    expect(isVideoOutput('video/mp4', Buffer.alloc(0))).toBe(false);
  });

  it('refuses an HTML, JSON or image answer even when its bytes open like an MP4', () => {
    for (const type of ['text/html', 'application/json', 'image/jpeg', 'text/plain']) {
      expect(isVideoOutput(type, MP4_START)).toBe(false);
    }
  });

  it('reads the media type without parameters, case or spaces', () => {
    expect(mediaTypeOf('text/html; charset=utf-8')).toBe('text/html');
    expect(mediaTypeOf(' Video/MP4 ')).toBe('video/mp4');
    expect(mediaTypeOf('')).toBeUndefined();
    expect(mediaTypeOf(null)).toBeUndefined();
    expect(isVideoOutput(mediaTypeOf('Application/Octet-Stream; foo=bar'), MP4_START)).toBe(true);
  });
});

describe('peeking at the start of a stream', () => {
  it('collects tiny first chunks until it has 12 bytes, then yields every byte in order', async () => {
    const body = Buffer.concat([MP4_START, Buffer.from('the rest of the video, in several chunks')]);
    const chunks = [body.subarray(0, 1), body.subarray(1, 3), body.subarray(3, 7), body.subarray(7, 13), body.subarray(13, 30), body.subarray(30)];
    const { source } = sourceOf(chunks);

    const { head, stream } = await peekStart(source, VIDEO_SNIFF_BYTES);

    expect(head.equals(MP4_START)).toBe(true);
    expect((await readAll(stream)).equals(body)).toBe(true);
  });

  it('reads no further than the first chunks of a large body until the stream is read', async () => {
    const chunks = [Buffer.concat([MP4_START, Buffer.alloc(64 * 1024 - 12)]), ...Array.from({ length: 99 }, () => Buffer.alloc(64 * 1024, 1))];
    const { source, pulled } = sourceOf(chunks);

    const { stream } = await peekStart(source, VIDEO_SNIFF_BYTES);
    await new Promise((resolve) => setTimeout(resolve, 20));

    expect(pulled()).toBeLessThanOrEqual(3);
    expect((await readAll(stream)).length).toBe(100 * 64 * 1024);
    expect(pulled()).toBe(100);
  });

  it('takes a first chunk of exactly 12 bytes as it is', async () => {
    const rest = Buffer.alloc(70_000, 3);
    const { source } = sourceOf([MP4_START, rest]);

    const { head, stream } = await peekStart(source, VIDEO_SNIFF_BYTES);

    expect(head.equals(MP4_START)).toBe(true);
    expect((await readAll(stream)).equals(Buffer.concat([MP4_START, rest]))).toBe(true);
  });

  it('hands back only the first 12 bytes of a larger first chunk, and every byte downstream', async () => {
    const first = Buffer.concat([MP4_START, Buffer.alloc(64 * 1024, 9)]);
    const { source } = sourceOf([first, Buffer.alloc(10, 1)]);

    const { head, stream } = await peekStart(source, VIDEO_SNIFF_BYTES);

    expect(head.length).toBe(12);
    const all = await readAll(stream);
    expect(all.length).toBe(first.length + 10);
    expect(createHash('sha256').update(all).digest('hex')).toBe(createHash('sha256').update(Buffer.concat([first, Buffer.alloc(10, 1)])).digest('hex'));
  });

  it('gives an empty head and an empty stream for an empty body', async () => {
    const { source } = sourceOf([]);

    const { head, stream } = await peekStart(source, VIDEO_SNIFF_BYTES);

    expect(head.length).toBe(0);
    expect(isVideoOutput('video/mp4', head)).toBe(false);
    expect((await readAll(stream)).length).toBe(0);
  });

  it('gives what there is of a body shorter than 12 bytes', async () => {
    const { source } = sourceOf([Buffer.from('<html>')]);

    const { head, stream } = await peekStart(source, VIDEO_SNIFF_BYTES);

    expect(head.toString()).toBe('<html>');
    expect((await readAll(stream)).toString()).toBe('<html>');
  });

  it('tells an HTML page from an octet-stream MP4 by the bytes it peeked', async () => {
    const html = await peekStart(sourceOf([HTML_PAGE]).source, VIDEO_SNIFF_BYTES);
    expect(isVideoOutput('text/html', html.head)).toBe(false);
    expect(isVideoOutput(undefined, html.head)).toBe(false);
    html.stream.destroy();

    const octet = await peekStart(sourceOf([MP4_START.subarray(0, 5), MP4_START.subarray(5)]).source, VIDEO_SNIFF_BYTES);
    expect(isVideoOutput('application/octet-stream', octet.head)).toBe(true);
    octet.stream.destroy();
  });

  it('destroys the source when the stream it handed back is destroyed unread', async () => {
    const { source } = sourceOf([MP4_START, Buffer.alloc(100)]);
    const { stream } = await peekStart(source, VIDEO_SNIFF_BYTES);

    stream.destroy();
    await new Promise((resolve) => setImmediate(resolve));

    expect(source.destroyed).toBe(true);
  });

  it('passes on an error the source raises while peeking', async () => {
    const source = new Readable({
      read() {
        this.destroy(new Error('socket hang up'));
      },
    });
    await expect(peekStart(source, VIDEO_SNIFF_BYTES)).rejects.toThrow('socket hang up');
  });
});

describe('the not-a-video message', () => {
  it('names the content type and the declared size', () => {
    expect(notVideoMessage('text/html', 1229)).toBe("output: Runway's output is not a video (text/html, 1.2 KB)");
    expect(notVideoMessage('video/mp4', 300)).toBe("output: Runway's output is not a video (video/mp4, 300 bytes)");
  });

  it('says so when there was no content type or no Content-Length', () => {
    expect(notVideoMessage(undefined, undefined)).toBe("output: Runway's output is not a video (no content type, unknown size)");
  });

  it('keeps only the characters media types use', () => {
    expect(notVideoMessage('text/html"); DROP <b>', 10)).toBe("output: Runway's output is not a video (text/htmlDROPb, 10 bytes)");
  });

  it('writes sizes as people read them', () => {
    expect([0, 1023, 1024, 1536, 5 * 1024 * 1024 + 1, 3 * 1024 ** 3].map(humanSize)).toEqual([
      '0 bytes',
      '1023 bytes',
      '1.0 KB',
      '1.5 KB',
      '5.0 MB',
      '3.0 GB',
    ]);
    expect(humanSize(Number.NaN)).toBe('unknown size');
  });
});
