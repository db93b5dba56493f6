import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../lib/errors.js';
import { readImageInfo } from '../../lib/media/image-info.js';
import { jpeg, truncated } from '../support/images.js';

const DAMAGED = 'photo: the image is damaged or truncated';

function photoErrorOf(bytes: Uint8Array): PermanentError {
  try {
    readImageInfo(bytes);
  } catch (error) {
    if (error instanceof PermanentError) return error;
    throw error;
  }
  throw new Error('expected readImageInfo to throw');
}

/** Index of the first `FF <marker>` pair. */
const markerAt = (bytes: Uint8Array, marker: number): number => bytes.findIndex((byte, index) => byte === 0xff && bytes[index + 1] === marker);

const withBytesAt = (bytes: Uint8Array, at: number, inserted: readonly number[]): Uint8Array =>
  Uint8Array.from([...bytes.subarray(0, at), ...inserted, ...bytes.subarray(at)]);

describe('a JPEG whose segments end early', () => {
  it.each([4, 5])('is refused when it ends %i bytes in, right after a marker', (length) => {
    expect(photoErrorOf(truncated(jpeg(), length)).message).toBe(DAMAGED);
  });

  it('is refused when only stray bytes follow its last segment', () => {
    const bytes = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x4a, 0x46, 0x00, 0x00]);
    expect(photoErrorOf(bytes).message).toBe(DAMAGED);
  });
});

describe('a JPEG with markers that carry no segment', () => {
  it('reads the size past TEM, restart and stuffed-zero markers between segments', () => {
    const photo = jpeg({ width: 320, height: 240 });
    const bytes = withBytesAt(photo, markerAt(photo, 0xc4), [0xff, 0x01, 0xff, 0xd3, 0xff, 0x00]);

    expect(readImageInfo(bytes)).toMatchObject({ type: 'jpeg', width: 320, height: 240 });
  });
});

describe('a JPEG whose frame header is too short to read', () => {
  it("is refused as damaged, keeping the parser's complaint as the cause", () => {
    const photo = jpeg();
    const frame = markerAt(photo, 0xc0);
    const frameLength = ((photo[frame + 2] ?? 0) << 8) | (photo[frame + 3] ?? 0);
    // The same file with a frame header of 4 bytes (precision and one byte of height).
    const bytes = Uint8Array.from([...photo.subarray(0, frame), 0xff, 0xc0, 0x00, 0x04, 8, 0, ...photo.subarray(frame + 2 + frameLength)]);

    const error = photoErrorOf(bytes);

    expect(error.message).toBe(DAMAGED);
    expect(error.cause).toBeInstanceOf(Error);
  });
});
