import { describe, expect, it } from 'vitest';
import { RUNWAY_MODELS, type RunwayModel } from '../../lib/config.js';
import { modelSpec } from '../../lib/decide/models.js';
import { chooseRatio, displayedSize, ratioSize } from '../../lib/decide/ratio.js';
import { readImageInfo } from '../../lib/media/image-info.js';
import { jpeg, type ByteOrder } from '../support/images.js';

const MODEL_ORDER = ['gen4_turbo', 'gen4.5', 'veo3.1', 'veo3.1_fast'] as const satisfies readonly RunwayModel[];

// Displayed photo size → ratio on [gen4_turbo, gen4.5, veo3.1, veo3.1_fast].
const PHOTOS: readonly (readonly [label: string, width: number, height: number, ratios: readonly [string, string, string, string]])[] = [
  ['a 4:3 landscape photo', 4032, 3024, ['1104:832', '1104:832', '1280:720', '1280:720']],
  ['a 3:2 landscape photo', 6000, 4000, ['1104:832', '1104:832', '1280:720', '1280:720']],
  ['a 16:9 landscape photo', 1920, 1080, ['1280:720', '1280:720', '1280:720', '1280:720']],
  ['a 21:9 panorama', 2520, 1080, ['1584:672', '1584:672', '1280:720', '1280:720']],
  ['a 3:1 panorama', 6000, 2000, ['1584:672', '1584:672', '1280:720', '1280:720']],
  ['a 3:4 portrait phone photo', 3024, 4032, ['832:1104', '832:1104', '720:1280', '720:1280']],
  ['a 2:3 portrait photo', 4000, 6000, ['832:1104', '832:1104', '720:1280', '720:1280']],
  ['a 9:16 portrait phone photo', 1080, 1920, ['720:1280', '720:1280', '720:1280', '720:1280']],
  ['a 1:3 very tall image', 1000, 3000, ['720:1280', '720:1280', '720:1280', '720:1280']],
  ['a square photo', 3000, 3000, ['960:960', '960:960', '1280:720', '1280:720']],
  ['a nearly square landscape photo', 1010, 1000, ['960:960', '960:960', '1280:720', '1280:720']],
  ['a nearly square portrait photo', 1000, 1010, ['960:960', '960:960', '720:1280', '720:1280']],
  ['a tiny 1×1 image', 1, 1, ['960:960', '960:960', '1280:720', '1280:720']],
];

const photoCases = PHOTOS.flatMap(([label, width, height, ratios]) =>
  MODEL_ORDER.map((model, index) => [label, width, height, model, ratios[index]] as const),
);

describe('choosing the video ratio from the displayed photo size', () => {
  it.each(photoCases)('gives %s (%i×%i) on %s → %s', (_label, width, height, model, ratio) => {
    expect(chooseRatio(model, width, height)).toBe(ratio);
  });

  it('gives portrait video for portrait photos and landscape video for landscape photos, on every model', () => {
    const orientationOf = (ratio: string): number => {
      const [w = 0, h = 0] = ratio.split(':').map(Number);
      return Math.sign(w - h);
    };
    for (const model of RUNWAY_MODELS) {
      for (let aspect = 0.2; aspect <= 5; aspect *= 1.07) {
        if (Math.abs(Math.log(aspect)) < 0.15) continue; // near square: gen4 has a square size
        expect(orientationOf(chooseRatio(model, aspect * 1000, 1000))).toBe(Math.sign(aspect - 1));
      }
    }
  });

  it('picks the allowed ratio with the smallest log-aspect distance, over a sweep of aspects', () => {
    for (const model of RUNWAY_MODELS) {
      const aspects = modelSpec(model).ratios.map((ratio) => {
        const [w = 0, h = 0] = ratio.split(':').map(Number);
        return Math.log(w / h);
      });
      for (let aspect = 0.1; aspect <= 10; aspect *= 1.013) {
        const chosen = chooseRatio(model, aspect, 1);
        const [w = 0, h = 0] = chosen.split(':').map(Number);
        const best = Math.min(...aspects.map((value) => Math.abs(value - Math.log(aspect))));
        expect(Math.abs(Math.log(w / h) - Math.log(aspect))).toBeCloseTo(best, 12);
      }
    }
  });

  it('only ever returns a ratio the model accepts', () => {
    for (const model of RUNWAY_MODELS) {
      for (let aspect = 0.05; aspect <= 20; aspect *= 1.05) {
        expect(modelSpec(model).ratios).toContain(chooseRatio(model, aspect * 700, 700));
      }
    }
  });

  it('prefers the 720p sizes on veo, whose 1080p sizes have the same aspect', () => {
    for (let aspect = 0.05; aspect <= 20; aspect *= 1.05) {
      expect(['1280:720', '720:1280']).toContain(chooseRatio('veo3.1', aspect * 700, 700));
    }
  });

  it('does not depend on the photo resolution, only on its aspect', () => {
    for (const model of RUNWAY_MODELS) {
      expect(chooseRatio(model, 400, 300)).toBe(chooseRatio(model, 4000, 3000));
      expect(chooseRatio(model, 9, 16)).toBe(chooseRatio(model, 1080, 1920));
    }
  });

  it.each([
    [0, 100],
    [100, 0],
    [-4, 3],
    [Number.NaN, 3],
    [4, Number.POSITIVE_INFINITY],
  ])('refuses a size of %s×%s, naming it', (width, height) => {
    const choosing = (): string => chooseRatio('gen4_turbo', width, height);
    expect(choosing).toThrow(RangeError);
    expect(choosing).toThrow(`image size must be positive, got ${width}x${height}`);
  });
});

describe('reading an output ratio as a pixel size', () => {
  it.each([
    ['1584:672', 1584, 672],
    ['720:1280', 720, 1280],
    ['960:960', 960, 960],
  ] as const)('reads %s as %i×%i', (ratio, width, height) => {
    expect(ratioSize(ratio)).toStrictEqual({ width, height });
  });

  it.each(['0:720', '720:0', '-1280:720'] as const)('refuses %s, which is not two positive sizes', (ratio) => {
    expect(() => ratioSize(ratio)).toThrow(`malformed ratio ${ratio}`);
  });
});

describe('the displayed size of a photo with an EXIF orientation', () => {
  it.each([1, 2, 3, 4])('keeps width and height for orientation %i', (orientation) => {
    expect(displayedSize(4032, 3024, orientation)).toStrictEqual({ width: 4032, height: 3024 });
  });

  it.each([5, 6, 7, 8])('swaps width and height for orientation %i (a quarter turn)', (orientation) => {
    expect(displayedSize(4032, 3024, orientation)).toStrictEqual({ width: 3024, height: 4032 });
  });

  it.each([0, 9, -6, 6.5, Number.NaN, 65535])('ignores the invalid orientation %s', (orientation) => {
    expect(displayedSize(4032, 3024, orientation)).toStrictEqual({ width: 4032, height: 3024 });
  });
});

describe('a phone JPEG stored landscape with an EXIF rotation', () => {
  const BYTE_ORDERS: readonly ByteOrder[] = ['big-endian', 'little-endian'];
  const rotated = BYTE_ORDERS.flatMap((order) =>
    ([6, 8] as const).flatMap((orientation) =>
      MODEL_ORDER.map((model) => [orientation, order, model] as const),
    ),
  );

  it.each(rotated)('with orientation %i (%s EXIF) becomes portrait video on %s', (orientation, exifByteOrder, model) => {
    const info = readImageInfo(jpeg({ width: 4032, height: 3024, orientation, exifByteOrder }));
    expect(info).toMatchObject({ width: 4032, height: 3024, orientation, displayWidth: 3024, displayHeight: 4032 });
    const expected = model.startsWith('veo') ? '720:1280' : '832:1104';
    expect(chooseRatio(model, info.displayWidth, info.displayHeight)).toBe(expected);
  });

  it.each(rotated)('with orientation %i (%s EXIF), a 16:9 shot becomes 720:1280 on %s', (orientation, exifByteOrder, model) => {
    const info = readImageInfo(jpeg({ width: 1920, height: 1080, orientation, exifByteOrder }));
    expect(chooseRatio(model, info.displayWidth, info.displayHeight)).toBe('720:1280');
  });

  it.each(MODEL_ORDER)('stays landscape when upside down (orientation 3) on %s', (model) => {
    const info = readImageInfo(jpeg({ width: 4032, height: 3024, orientation: 3 }));
    expect(chooseRatio(model, info.displayWidth, info.displayHeight)).toBe(model.startsWith('veo') ? '1280:720' : '1104:832');
  });
});
