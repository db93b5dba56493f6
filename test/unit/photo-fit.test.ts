import { describe, expect, it } from 'vitest';
import { RUNWAY_MODELS, type RunwayModel } from '../../lib/config.js';
import { modelSpec } from '../../lib/decide/models.js';
import {
  DATA_URI_MAX_JPEG_BYTES,
  fitsJpegDataUri,
  MAX_SENT_PIXELS,
  OUTPUT_RESOLUTION_MARGIN,
  planPhotoFit,
  scaleWithinLimits,
  RUNWAY_DATA_URI_MAX_CHARS,
  RUNWAY_INPUT_MAX_ASPECT,
  RUNWAY_INPUT_MAX_SIDE_PX,
  RUNWAY_INPUT_MIN_ASPECT,
  WORST_CASE_JPEG_BYTES_PER_PIXEL,
  type PhotoFitPlan,
} from '../../lib/decide/photo-fit.js';
import { chooseRatio, ratioSize } from '../../lib/decide/ratio.js';

const plan = (displayWidth: number, displayHeight: number, model: RunwayModel = 'gen4_turbo'): PhotoFitPlan =>
  planPhotoFit({ displayWidth, displayHeight, model });

const sizeOf = (fit: PhotoFitPlan): string => `${fit.width}×${fit.height}`;

/** Widths and heights from 1 px to 20,000 px, denser at the small end. */
function sweepOfSides(): number[] {
  const sides = new Set<number>([1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17]);
  for (let side = 10; side <= 20_000; side = Math.ceil(side * 1.17)) sides.add(side);
  for (const side of [672, 720, 832, 960, 1080, 1104, 1280, 1584, 1920, 3024, 4032, 6000, 6300, 7998, 7999, 8000, 8400]) sides.add(side);
  return [...sides].sort((a, b) => a - b);
}

/**
 * Built by each test that needs it, not once when the file loads: an exception then fails that
 * test instead of the whole file, and mutation testing sees which tests exercise the planner.
 */
function everyPlan(): { width: number; height: number; model: RunwayModel; fit: PhotoFitPlan }[] {
  const sides = sweepOfSides();
  return RUNWAY_MODELS.flatMap((model) =>
    sides.flatMap((width) => sides.map((height) => ({ width, height, model, fit: plan(width, height, model) }))),
  );
}

describe("Runway's input limits", () => {
  it('are an aspect of 0.5 to 2 and 7999 px a side', () => {
    expect([RUNWAY_INPUT_MIN_ASPECT, RUNWAY_INPUT_MAX_ASPECT, RUNWAY_INPUT_MAX_SIDE_PX]).toEqual([0.5, 2, 7999]);
  });

  it('allow a JPEG of at most 3,932,142 bytes in a 5,242,880-character data URI', () => {
    expect(RUNWAY_DATA_URI_MAX_CHARS).toBe(5_242_880);
    expect(DATA_URI_MAX_JPEG_BYTES).toBe(3_932_142);
    expect(fitsJpegDataUri(DATA_URI_MAX_JPEG_BYTES)).toBe(true);
    expect(fitsJpegDataUri(DATA_URI_MAX_JPEG_BYTES + 1)).toBe(false);
  });

  it('count the data URI as its real base64 text, prefix included', () => {
    for (const length of [0, 1, 2, 3, 4, 5, 6, 100, 1001]) {
      const uri = `data:image/jpeg;base64,${Buffer.alloc(length, 0xab).toString('base64')}`;
      const roomLeft = RUNWAY_DATA_URI_MAX_CHARS - uri.length;
      expect(fitsJpegDataUri(length)).toBe(roomLeft >= 0);
      expect(Math.ceil(length / 3) * 4 + 'data:image/jpeg;base64,'.length).toBe(uri.length);
    }
  });

  it('leave room for the worst-case JPEG of the largest photo the plan may send', () => {
    expect(MAX_SENT_PIXELS * WORST_CASE_JPEG_BYTES_PER_PIXEL).toBeLessThanOrEqual(DATA_URI_MAX_JPEG_BYTES);
  });
});

describe('planning a photo that is within the limits', () => {
  it.each([
    ['a 12 MP 4:3 phone photo', 4032, 3024, 'gen4_turbo', '1104:832', '1387×1040'],
    ['a 12 MP 3:4 portrait', 3024, 4032, 'gen4_turbo', '832:1104', '1040×1387'],
    ['a 48 MP 4:3 photo', 8000, 6000, 'gen4_turbo', '1104:832', '1387×1040'],
    ['an 8400×6300 photo', 8400, 6300, 'gen4.5', '1104:832', '1387×1040'],
    ['a full-HD landscape', 1920, 1080, 'gen4_turbo', '1280:720', '1600×900'],
    ['a full-HD portrait', 1080, 1920, 'veo3.1', '720:1280', '900×1600'],
    ['a square photo', 3000, 3000, 'gen4_turbo', '960:960', '1200×1200'],
    ['a square photo on veo (no square output: the 16:9 frame is covered)', 3000, 3000, 'veo3.1_fast', '1280:720', '1600×1600'],
    ['a 4:3 photo on veo', 4032, 3024, 'veo3.1', '1280:720', '1600×1200'],
  ] as const)('sends %s (%i×%i on %s) as %s at %s', (_label, width, height, model, ratio, size) => {
    const fit = plan(width, height, model);
    expect(fit.ratio).toBe(ratio);
    expect(fit.crop).toBeUndefined();
    expect(sizeOf(fit)).toBe(size);
  });

  it.each([
    ['a tiny 1×1 image', 1, 1],
    ['a 64×48 thumbnail', 64, 48],
    ['a 640×480 photo', 640, 480],
    ['a 1000×1000 photo on gen4 (its 960:960 frame needs 1200 with the margin)', 1000, 1000],
  ] as const)('never upscales %s', (_label, width, height) => {
    for (const model of RUNWAY_MODELS) {
      const fit = plan(width, height, model);
      expect(sizeOf(fit)).toBe(`${width}×${height}`);
      expect(fit.crop).toBeUndefined();
    }
  });

  it.each([
    [2000, 1000, '1280:720', '1800×900'],
    [1000, 2000, '720:1280', '900×1800'],
    [7999, 4000, '1280:720', '1800×900'],
    [4000, 7999, '720:1280', '900×1800'],
    [2, 1, '1280:720', '2×1'],
    [1, 2, '720:1280', '1×2'],
  ] as const)('keeps %i×%i whole: an aspect right at a limit is allowed', (width, height, ratio, size) => {
    const fit = plan(width, height, 'gen4_turbo');
    expect(fit.crop).toBeUndefined();
    expect(fit.ratio).toBe(ratio);
    expect(sizeOf(fit)).toBe(size);
  });

  it('gives the same plan to any photo larger than the output needs, whatever its resolution', () => {
    for (const model of RUNWAY_MODELS) {
      expect(plan(4032, 3024, model)).toStrictEqual(plan(8064, 6048, model));
      expect(plan(1080, 1920, model)).toStrictEqual(plan(4320, 7680, model));
    }
  });

  it('keeps at least the output frame in both directions, with the margin on the side that binds', () => {
    const fit = plan(4032, 3024, 'gen4_turbo');
    const output = ratioSize(fit.ratio);
    expect(fit.width).toBeGreaterThanOrEqual(output.width);
    expect(fit.height).toBe(output.height * OUTPUT_RESOLUTION_MARGIN);
  });
});

describe('planning a photo with an extreme aspect', () => {
  it.each([
    ['a 4:1 panorama', 800, 200, 'gen4_turbo', '1584:672', { width: 400, height: 200 }, '400×200'],
    ['a 4:1 panorama', 800, 200, 'veo3.1', '1280:720', { width: 356, height: 200 }, '356×200'],
    ['a 1:4 tower', 200, 800, 'gen4.5', '720:1280', { width: 200, height: 356 }, '200×356'],
    ['a 1:4 tower', 200, 800, 'veo3.1_fast', '720:1280', { width: 200, height: 356 }, '200×356'],
    ['a large 4:1 panorama', 8000, 2000, 'gen4_turbo', '1584:672', { width: 4000, height: 2000 }, '1980×990'],
    ['a large 1:4 tower', 2000, 8000, 'gen4_turbo', '720:1280', { width: 2000, height: 3556 }, '900×1600'],
    ['a 20000×1000 strip', 20_000, 1000, 'gen4_turbo', '1584:672', { width: 2000, height: 1000 }, '1980×990'],
    ['a 3×1 sliver', 3, 1, 'gen4_turbo', '1584:672', { width: 2, height: 1 }, '2×1'],
    ['a 1×3 sliver', 1, 3, 'gen4_turbo', '720:1280', { width: 1, height: 2 }, '1×2'],
    ['a 1×100 line', 1, 100, 'veo3.1', '720:1280', { width: 1, height: 2 }, '1×2'],
  ] as const)('centre-crops %s (%i×%i on %s, ratio %s) to %o and sends %s', (_label, width, height, model, ratio, crop, size) => {
    const fit = plan(width, height, model);
    expect(fit.ratio).toBe(ratio);
    expect(fit.crop).toStrictEqual(crop);
    expect(sizeOf(fit)).toBe(size);
  });

  it('crops a photo just past the limit towards the output ratio, not just to the limit', () => {
    const fit = plan(2001, 1000, 'gen4_turbo');
    expect(fit.ratio).toBe('1280:720');
    expect(fit.crop).toStrictEqual({ width: 1778, height: 1000 });
    expect(sizeOf(fit)).toBe('1600×900');
  });

  it("stops at the limit when the output ratio is wider than Runway's inputs may be (1584:672)", () => {
    const fit = plan(6000, 1000, 'gen4_turbo');
    expect(fit.ratio).toBe('1584:672');
    expect(fit.crop).toStrictEqual({ width: 2000, height: 1000 });
  });
});

describe('scaling a photo into whole pixels', () => {
  it.each([
    ['a 2:1 photo whose width rounds up past the limit', { width: 2000, height: 1000 }, 0.45025, { width: 900, height: 450 }],
    ['a 1:2 photo whose width rounds down past the limit', { width: 1000, height: 2000 }, 0.45025, { width: 451, height: 901 }],
    ['a photo scaled by more than 1', { width: 300, height: 200 }, 3, { width: 300, height: 200 }],
    ['a photo scaled to nothing', { width: 300, height: 200 }, 0.0001, { width: 1, height: 1 }],
  ] as const)('keeps %s within the limits', (_label, source, factor, expected) => {
    expect(scaleWithinLimits(source, factor)).toStrictEqual(expected);
  });
});

describe('planning refuses sizes that are not whole pixels', () => {
  it.each([
    [0, 100],
    [100, 0],
    [-4, 3],
    [4.5, 3],
    [Number.NaN, 3],
    [4, Number.POSITIVE_INFINITY],
  ])('such as %s×%s, naming the size it was given', (width, height) => {
    const planning = (): PhotoFitPlan => plan(width, height);
    expect(planning).toThrow(RangeError);
    expect(planning).toThrow(`image size must be whole pixels, got ${width}x${height}`);
  });
});

describe('every plan, over photos from 1 px to 20,000 px a side on every model', () => {
  it('covers more than 20,000 photo sizes', () => {
    expect(everyPlan().length).toBeGreaterThan(20_000);
  });

  it('uses the ratio chooseRatio picks on the displayed size, one the model accepts', () => {
    const bad = everyPlan().filter(
      ({ width, height, model, fit }) => fit.ratio !== chooseRatio(model, width, height) || !modelSpec(model).ratios.includes(fit.ratio),
    );
    expect(bad).toEqual([]);
  });

  it("sends whole pixels within Runway's aspect and side limits", () => {
    const bad = everyPlan().filter(({ fit }) => {
      const aspect = fit.width / fit.height;
      return (
        !Number.isInteger(fit.width) ||
        !Number.isInteger(fit.height) ||
        fit.width < 1 ||
        fit.height < 1 ||
        fit.width > RUNWAY_INPUT_MAX_SIDE_PX ||
        fit.height > RUNWAY_INPUT_MAX_SIDE_PX ||
        aspect < RUNWAY_INPUT_MIN_ASPECT ||
        aspect > RUNWAY_INPUT_MAX_ASPECT
      );
    });
    expect(bad).toEqual([]);
  });

  it('is never larger than the photo, nor than its crop (no upscale)', () => {
    const bad = everyPlan().filter(({ width, height, fit }) => {
      const source = fit.crop ?? { width, height };
      return fit.width > source.width || fit.height > source.height || source.width > width || source.height > height;
    });
    expect(bad).toEqual([]);
  });

  it('crops exactly the photos outside the aspect limits, only along their long side, into the limits', () => {
    const bad = everyPlan().filter(({ width, height, fit }) => {
      const aspect = width / height;
      const outside = aspect < RUNWAY_INPUT_MIN_ASPECT || aspect > RUNWAY_INPUT_MAX_ASPECT;
      if (fit.crop === undefined) return outside;
      const cropAspect = fit.crop.width / fit.crop.height;
      const keptShortSide = aspect > 1 ? fit.crop.height === height : fit.crop.width === width;
      return !outside || !keptShortSide || cropAspect < RUNWAY_INPUT_MIN_ASPECT || cropAspect > RUNWAY_INPUT_MAX_ASPECT;
    });
    expect(bad).toEqual([]);
  });

  it('keeps the shape of what it sends (a downscale, not a squeeze)', () => {
    const bad = everyPlan().filter(({ width, height, fit }) => {
      const source = fit.crop ?? { width, height };
      if (fit.width < 100 || fit.height < 100) return false;
      return Math.abs(Math.log(fit.width / fit.height) - Math.log(source.width / source.height)) >= 0.01;
    });
    expect(bad).toEqual([]);
  });

  it('keeps enough pixels to cover the output frame, and no more than the margin beyond it', () => {
    const downscaled = everyPlan().filter(({ width, height, fit }) => {
      const source = fit.crop ?? { width, height };
      return fit.width !== source.width || fit.height !== source.height;
    });
    expect(downscaled.length).toBeGreaterThan(4000);
    const bad = downscaled.filter(({ fit }) => {
      const output = ratioSize(fit.ratio);
      const coverFactor = Math.min(fit.width / output.width, fit.height / output.height);
      return (
        fit.width < output.width ||
        fit.height < output.height ||
        coverFactor > OUTPUT_RESOLUTION_MARGIN + 1 / Math.min(output.width, output.height)
      );
    });
    expect(bad).toEqual([]);
  });

  it('stays small enough that even the worst-case JPEG fits a data URI', () => {
    const bad = everyPlan().filter(
      ({ fit }) =>
        fit.width * fit.height > MAX_SENT_PIXELS || !fitsJpegDataUri(Math.ceil(fit.width * fit.height * WORST_CASE_JPEG_BYTES_PER_PIXEL)),
    );
    expect(bad).toEqual([]);
  });

  it('sends at most 1600×1600 (2.56 MP) with the current model table', () => {
    const plans = everyPlan();
    const largest = Math.max(...plans.map(({ fit }) => fit.width * fit.height));
    expect(largest).toBe(1600 * 1600);
    const longest = Math.max(...plans.map(({ fit }) => Math.max(fit.width, fit.height)));
    expect(longest).toBe(1980);
  });
});
