import { describe, expect, it } from 'vitest';
import { RUNWAY_MODELS, type RunwayModel } from '../../lib/config.js';
import { chooseDuration, DEFAULT_FRAME_COUNT, FRAMES_PER_SECOND } from '../../lib/decide/duration.js';
import { modelSpec } from '../../lib/decide/models.js';

// frame_num as it may arrive → seconds on [gen4_turbo, gen4.5, veo3.1, veo3.1_fast].
const EXPECTED: readonly (readonly [label: string, frameNum: unknown, seconds: readonly [number, number, number, number]])[] = [
  ['null', null, [5, 5, 6, 6]],
  ['undefined', undefined, [5, 5, 6, 6]],
  ['0', 0, [5, 5, 6, 6]],
  ['73', 73, [3, 3, 4, 4]],
  ['121', 121, [5, 5, 6, 6]],
  ['169', 169, [7, 7, 8, 8]],
  ['241', 241, [10, 10, 8, 8]],
  ['1000', 1000, [10, 10, 8, 8]],
  ['60.5', 60.5, [3, 3, 4, 4]],
  ['-5', -5, [5, 5, 6, 6]],
  ['1e9', 1e9, [10, 10, 8, 8]],
  ['"121"', '121', [5, 5, 6, 6]],
  ['" 73 "', ' 73 ', [3, 3, 4, 4]],
  ['"169.0"', '169.0', [7, 7, 8, 8]],
  ['"+73"', '+73', [3, 3, 4, 4]],
  ['"72.00"', '72.00', [3, 3, 4, 4]],
  ['".25e3"', '.25e3', [10, 10, 8, 8]],
  ['"7.3e1"', '7.3e1', [3, 3, 4, 4]],
  ['"7.3E1"', '7.3E1', [3, 3, 4, 4]],
  ['"7300e-2"', '7300e-2', [3, 3, 4, 4]],
  ['"0.073e+03"', '0.073e+03', [3, 3, 4, 4]],
  ['"0b1001001"', '0b1001001', [5, 5, 6, 6]],
  ['NaN', Number.NaN, [5, 5, 6, 6]],
  ['Infinity', Number.POSITIVE_INFINITY, [5, 5, 6, 6]],
  ['-Infinity', Number.NEGATIVE_INFINITY, [5, 5, 6, 6]],
  ['"abc"', 'abc', [5, 5, 6, 6]],
  ['""', '', [5, 5, 6, 6]],
  ['"0x10"', '0x10', [5, 5, 6, 6]],
  ['"Infinity"', 'Infinity', [5, 5, 6, 6]],
  ['"-73"', '-73', [5, 5, 6, 6]],
  ['true', true, [5, 5, 6, 6]],
  ['an object', { frames: 73 }, [5, 5, 6, 6]],
  ['an array', [73], [5, 5, 6, 6]],
  ['1 frame', 1, [2, 2, 4, 4]],
];

const MODEL_ORDER = ['gen4_turbo', 'gen4.5', 'veo3.1', 'veo3.1_fast'] as const satisfies readonly RunwayModel[];
const cases = EXPECTED.flatMap(([label, frameNum, seconds]) =>
  MODEL_ORDER.map((model, index) => [label, model, frameNum, seconds[index]] as const),
);

describe('choosing the video duration from frame_num', () => {
  it.each(cases)('gives frame_num %s on %s → %i s', (_label, model, frameNum, seconds) => {
    expect(chooseDuration(model, frameNum).seconds).toBe(seconds);
  });

  it('matches the design examples: 73/121/169/241 frames give 3/5/7/10 s on gen4 and 4/6/8/8 s on veo3.1', () => {
    const frames = [73, 121, 169, 241];
    expect(frames.map((count) => chooseDuration('gen4_turbo', count).seconds)).toEqual([3, 5, 7, 10]);
    expect(frames.map((count) => chooseDuration('veo3.1', count).seconds)).toEqual([4, 6, 8, 8]);
  });
});

describe('a frame count exactly between two allowed durations', () => {
  it.each([
    ['veo3.1', 120, 6],
    ['veo3.1_fast', 168, 8],
    ['veo3.1_fast', 120, 6],
    ['gen4_turbo', 60, 3],
    ['gen4.5', 108, 5],
  ] as const)('on %s, %i frames picks the longer neighbour (%i s)', (model, frames, seconds) => {
    expect(chooseDuration(model, frames).seconds).toBe(seconds);
  });

  it.each([
    ['gen4_turbo', 60 - 1e-12, 3],
    ['veo3.1', 120 - 1e-12, 6],
  ] as const)('on %s, %d frames (a midpoint but for float noise) still picks the longer neighbour (%i s)', (model, frames, seconds) => {
    expect(chooseDuration(model, frames).seconds).toBe(seconds);
  });
});

describe('any frame count', () => {
  const frameCounts = [
    ...Array.from({ length: 400 }, (_, index) => index * 0.75),
    ...Array.from({ length: 200 }, (_, index) => 300 + index * 7.3),
    Number.MIN_VALUE,
    Number.MAX_VALUE,
    Number.MAX_SAFE_INTEGER,
  ];

  it.each(RUNWAY_MODELS)('gives an integer from the allowed set on %s', (model) => {
    const allowed = modelSpec(model).durationsSeconds;
    for (const count of frameCounts) {
      const { seconds } = chooseDuration(model, count);
      expect(Number.isInteger(seconds)).toBe(true);
      expect(allowed).toContain(seconds);
    }
  });

  it.each(RUNWAY_MODELS)('gives the allowed value nearest to frames / 24 on %s', (model) => {
    const allowed = modelSpec(model).durationsSeconds;
    for (const count of frameCounts.filter((value) => value > 0)) {
      const choice = chooseDuration(model, count);
      const bestDistance = Math.min(...allowed.map((value) => Math.abs(value - count / FRAMES_PER_SECOND)));
      expect(Math.abs(choice.seconds - choice.requestedSeconds)).toBeCloseTo(bestDistance, 9);
    }
  });

  it.each(RUNWAY_MODELS)('never gives a shorter video for more frames on %s', (model) => {
    let previous = 0;
    for (let count = 1; count <= 400; count += 0.5) {
      const { seconds } = chooseDuration(model, count);
      expect(seconds).toBeGreaterThanOrEqual(previous);
      previous = seconds;
    }
  });
});

describe('what the choice reports for the log', () => {
  it('reports the request, the frames used and that nothing was defaulted or adjusted for 73 frames on gen4', () => {
    expect(chooseDuration('gen4_turbo', 73)).toStrictEqual({
      seconds: 3,
      requestedSeconds: 73 / 24,
      frameCount: 73,
      defaulted: false,
      adjusted: false,
    });
  });

  it('says it used the default frame count when frame_num is missing or unusable', () => {
    for (const frameNum of [null, undefined, 0, -1, Number.NaN, 'abc']) {
      const choice = chooseDuration('gen4_turbo', frameNum);
      expect(choice.defaulted).toBe(true);
      expect(choice.frameCount).toBe(DEFAULT_FRAME_COUNT);
    }
  });

  it('does not count a numeric string as defaulted', () => {
    expect(chooseDuration('gen4_turbo', '121')).toMatchObject({ defaulted: false, frameCount: 121 });
  });

  it('reports an adjustment when the model cannot give the requested whole seconds', () => {
    expect(chooseDuration('veo3.1', 73).adjusted).toBe(true); // 3 s asked, 4 s given
    expect(chooseDuration('gen4_turbo', 1000).adjusted).toBe(true); // 42 s asked, 10 s given
    expect(chooseDuration('gen4_turbo', 24).adjusted).toBe(true); // 1 s asked, 2 s given
  });

  it('does not report rounding to whole seconds as an adjustment', () => {
    expect(chooseDuration('gen4_turbo', 121).adjusted).toBe(false); // 5.04 s → 5 s
    expect(chooseDuration('veo3.1', 145).adjusted).toBe(false); // 6.04 s → 6 s
    expect(chooseDuration('gen4_turbo', 60.5).adjusted).toBe(false); // 2.52 s → 3 s
  });
});
