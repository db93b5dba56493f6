import { describe, expect, it } from 'vitest';
import { RUNWAY_MODELS } from '../../lib/config.js';
import { DEFAULT_PROMPT, preparePrompt, PROMPT_MAX_UTF16_UNITS } from '../../lib/decide/prompt.js';

const EMOJI = '😀'; // two UTF-16 units
const hasLoneSurrogate = (text: string): boolean => /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
const words = (count: number): string =>
  Array.from({ length: count }, (_, index) => ['gentle', 'wind', 'moves', 'the', 'golden', 'wheat', 'field'][index % 7]).join(' ');

describe('an empty prompt', () => {
  const blanks = [undefined, null, '', '   ', '\n\t  \r\n'] as const;

  it.each(blanks)('becomes the neutral default prompt on gen4.5, which requires one (%j)', (prompt) => {
    expect(preparePrompt('gen4.5', prompt)).toStrictEqual({ text: DEFAULT_PROMPT, truncated: false, defaulted: true });
  });

  it.each(['gen4_turbo', 'veo3.1', 'veo3.1_fast'] as const)('is left out on %s, which does not require one', (model) => {
    for (const prompt of blanks) {
      expect(preparePrompt(model, prompt)).toStrictEqual({ text: undefined, truncated: false, defaulted: false });
    }
  });

  it('has a default that Runway accepts', () => {
    expect(DEFAULT_PROMPT.length).toBeGreaterThan(0);
    expect(DEFAULT_PROMPT.length).toBeLessThanOrEqual(PROMPT_MAX_UTF16_UNITS);
    expect(DEFAULT_PROMPT).toBe(DEFAULT_PROMPT.trim());
  });
});

describe('a prompt within the limit', () => {
  it.each(RUNWAY_MODELS)('is sent trimmed and otherwise untouched on %s', (model) => {
    expect(preparePrompt(model, '  A child laughs as the kite rises.\n')).toStrictEqual({
      text: 'A child laughs as the kite rises.',
      truncated: false,
      defaulted: false,
    });
  });

  it('keeps exactly 1000 units as they are', () => {
    const prompt = 'x'.repeat(1000);
    expect(preparePrompt('gen4_turbo', prompt)).toStrictEqual({ text: prompt, truncated: false, defaulted: false });
  });

  it('counts UTF-16 units, so 500 emoji (1000 units) still fit', () => {
    const prompt = EMOJI.repeat(500);
    expect(preparePrompt('gen4_turbo', prompt).text).toBe(prompt);
  });

  it('measures the limit after trimming', () => {
    const prompt = `   ${'y'.repeat(1000)}   `;
    expect(preparePrompt('veo3.1', prompt)).toMatchObject({ text: 'y'.repeat(1000), truncated: false });
  });

  it('keeps inner line breaks', () => {
    expect(preparePrompt('gen4_turbo', 'first line\nsecond line').text).toBe('first line\nsecond line');
  });
});

describe('a prompt over the limit', () => {
  it('of 5000 characters is cut at a word boundary and marked truncated', () => {
    const prompt = words(1000).slice(0, 5000);
    const prepared = preparePrompt('gen4_turbo', prompt);
    expect(prepared.truncated).toBe(true);
    const text = prepared.text ?? '';
    expect(text.length).toBeLessThanOrEqual(1000);
    expect(text.length).toBeGreaterThan(990);
    expect(prompt.startsWith(text)).toBe(true);
    expect(prompt.charAt(text.length)).toBe(' ');
  });

  it('is cut at 1000 exactly when a space follows the 1000th unit', () => {
    const prompt = `${'a'.repeat(1000)} tail`;
    expect(preparePrompt('gen4_turbo', prompt).text).toBe('a'.repeat(1000));
  });

  it('is cut before the last word when that word straddles the limit', () => {
    const prompt = `${'a'.repeat(900)} ${'b'.repeat(200)}`;
    expect(preparePrompt('gen4_turbo', prompt).text).toBe('a'.repeat(900));
  });

  it('is cut at a space exactly 200 units back from the limit', () => {
    const prompt = `${'a'.repeat(800)} ${'b'.repeat(300)}`;
    expect(preparePrompt('gen4_turbo', prompt).text).toBe('a'.repeat(800));
  });

  it('drops every space before the cut, not only the one it cuts at', () => {
    const prompt = `${'a'.repeat(900)}   ${'b'.repeat(200)}`;
    expect(preparePrompt('gen4_turbo', prompt).text).toBe('a'.repeat(900));
  });

  it('is cut hard at 1000 when the last space is further back than 200 units', () => {
    const prompt = `${'a'.repeat(700)} ${'b'.repeat(700)}`;
    expect(preparePrompt('gen4_turbo', prompt).text).toBe(`${'a'.repeat(700)} ${'b'.repeat(299)}`);
  });

  it('without any space (e.g. Chinese) is cut hard at 1000', () => {
    const prompt = '风吹麦浪'.repeat(400);
    expect(preparePrompt('veo3.1', prompt).text).toBe(prompt.slice(0, 1000));
  });

  it('drops an emoji that would be split by the limit instead of leaving half of it', () => {
    const prompt = `${'a'.repeat(999)}${EMOJI}${'c'.repeat(50)}`;
    const text = preparePrompt('gen4_turbo', prompt).text ?? '';
    expect(text).toBe('a'.repeat(999));
    expect(hasLoneSurrogate(text)).toBe(false);
  });

  it.each([
    ['U+10000', '\u{10000}'],
    ['U+10FFFF', '\u{10FFFF}'],
  ])('drops the first or last character of the astral planes (%s) when the limit would split it', (_label, character) => {
    const prompt = `${'a'.repeat(999)}${character}${'c'.repeat(50)}`;
    expect(preparePrompt('gen4_turbo', prompt).text).toBe('a'.repeat(999));
  });

  it('keeps an emoji that ends exactly at the limit', () => {
    const prompt = `${'a'.repeat(998)}${EMOJI}${'c'.repeat(50)}`;
    expect(preparePrompt('gen4_turbo', prompt).text).toBe(`${'a'.repeat(998)}${EMOJI}`);
  });

  it('made only of emoji is cut to 1000 units of whole emoji', () => {
    const text = preparePrompt('gen4_turbo', EMOJI.repeat(600)).text ?? '';
    expect(text).toBe(EMOJI.repeat(500));
  });

  it('with words of emoji never ends in half a surrogate pair, whatever the alignment', () => {
    for (let shift = 0; shift < 8; shift += 1) {
      for (const gap of [' ', '', '  ']) {
        const prompt = `${'x'.repeat(shift)}${Array.from({ length: 800 }, () => `${EMOJI}${EMOJI}${EMOJI}`).join(gap)}`;
        const text = preparePrompt('gen4.5', prompt).text ?? '';
        expect(text.length).toBeLessThanOrEqual(PROMPT_MAX_UTF16_UNITS);
        expect(hasLoneSurrogate(text)).toBe(false);
        expect(prompt.startsWith(text)).toBe(true);
      }
    }
  });

  it('never ends with whitespace and never exceeds the limit, over a sweep of lengths and spacings', () => {
    for (let length = 995; length <= 1300; length += 1) {
      for (const spacing of [3, 17, 150, 250]) {
        const prompt = Array.from({ length }, (_, index) => (index % spacing === spacing - 1 ? ' ' : 'w')).join('');
        const input = `z${prompt}`;
        const prepared = preparePrompt('gen4_turbo', input);
        const text = prepared.text ?? '';
        expect(text.length).toBeLessThanOrEqual(PROMPT_MAX_UTF16_UNITS);
        expect(text).toBe(text.trimEnd());
        expect(text.length).toBeGreaterThan(0);
        expect(prepared.truncated).toBe(input.trimEnd().length > PROMPT_MAX_UTF16_UNITS);
      }
    }
  });

  it('is still flagged truncated, not defaulted, on a model that requires a prompt', () => {
    expect(preparePrompt('gen4.5', 'p'.repeat(1200))).toMatchObject({ truncated: true, defaulted: false });
  });
});
