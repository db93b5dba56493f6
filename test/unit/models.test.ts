import { describe, expect, it } from 'vitest';
import { RUNWAY_MODELS, type RunwayModel } from '../../lib/config.js';
import {
  creditsPerSecond,
  estimateCredits,
  MODEL_SPECS,
  modelSpec,
  resolveProvider,
  type ProviderResolution,
} from '../../lib/decide/models.js';

const GEN4_RATIOS = ['1280:720', '720:1280', '1104:832', '832:1104', '960:960', '1584:672'];
const VEO_RATIOS = ['1280:720', '720:1280', '1080:1920', '1920:1080'];

describe('the model table', () => {
  it('has an entry for every configurable Runway model and nothing else', () => {
    expect(Object.keys(MODEL_SPECS).sort()).toEqual([...RUNWAY_MODELS].sort());
  });

  it.each([
    ['gen4_turbo', [2, 3, 4, 5, 6, 7, 8, 9, 10], GEN4_RATIOS],
    ['gen4.5', [2, 3, 4, 5, 6, 7, 8, 9, 10], GEN4_RATIOS],
    ['veo3.1', [4, 6, 8], VEO_RATIOS],
    ['veo3.1_fast', [4, 6, 8], VEO_RATIOS],
  ] as const)('lists the durations and ratios Runway accepts for %s', (model, durations, ratios) => {
    expect(modelSpec(model).durationsSeconds).toEqual(durations);
    expect(modelSpec(model).ratios).toEqual(ratios);
  });

  it.each([
    ['gen4_turbo', { promptRequired: false, durationRequired: false, supportsSeed: true, supportsContentModeration: true, supportsAudio: false, supportsNegativePrompt: false }],
    ['gen4.5', { promptRequired: true, durationRequired: true, supportsSeed: true, supportsContentModeration: true, supportsAudio: false, supportsNegativePrompt: false }],
    ['veo3.1', { promptRequired: false, durationRequired: false, supportsSeed: false, supportsContentModeration: false, supportsAudio: true, supportsNegativePrompt: true }],
    ['veo3.1_fast', { promptRequired: false, durationRequired: false, supportsSeed: false, supportsContentModeration: false, supportsAudio: true, supportsNegativePrompt: true }],
  ] as const)('knows which fields %s requires and supports', (model, flags) => {
    expect(modelSpec(model)).toMatchObject(flags);
  });

  it('keeps durations ascending integers so "nearest" and "longer on a tie" are well defined', () => {
    for (const model of RUNWAY_MODELS) {
      const durations = modelSpec(model).durationsSeconds;
      expect(durations.every((value) => Number.isInteger(value))).toBe(true);
      expect([...durations].sort((a, b) => a - b)).toEqual(durations);
    }
  });

  it('gives every model a typical generation time within what Runway documents (30-120 s)', () => {
    for (const model of RUNWAY_MODELS) {
      expect(modelSpec(model).typicalGenerationSeconds).toBeGreaterThanOrEqual(30);
      expect(modelSpec(model).typicalGenerationSeconds).toBeLessThanOrEqual(120);
    }
  });

  it('cannot be changed at run time', () => {
    expect(Object.isFrozen(MODEL_SPECS)).toBe(true);
  });
});

describe('pricing', () => {
  it.each([
    ['gen4_turbo', false, 5],
    ['gen4_turbo', true, 5],
    ['gen4.5', false, 12],
    ['veo3.1', true, 40],
    ['veo3.1', false, 20],
    ['veo3.1_fast', true, 15],
    ['veo3.1_fast', false, 10],
  ] as const)('charges %s (audio %s) %i credits per second', (model, audio, credits) => {
    expect(creditsPerSecond(model, audio)).toBe(credits);
  });

  it('estimates a silent 8 s veo3.1 video at 160 credits and a 5 s gen4_turbo one at 25', () => {
    expect(estimateCredits('veo3.1', 8, false)).toBe(160);
    expect(estimateCredits('gen4_turbo', 5, false)).toBe(25);
  });
});

describe('resolving the provider named by a task', () => {
  type Row = readonly [provider: string | null | undefined, expected: ProviderResolution['kind'], model: RunwayModel | undefined, warns: boolean];

  // Every row of design §3's mapping table, with gen4_turbo as the configured default.
  const rows: readonly Row[] = [
    [undefined, 'runway', 'gen4_turbo', false],
    [null, 'runway', 'gen4_turbo', false],
    ['', 'runway', 'gen4_turbo', false],
    ['seedance2', 'runway', 'gen4_turbo', true],
    ['gen4_turbo', 'runway', 'gen4_turbo', false],
    ['runway_gen4_turbo', 'runway', 'gen4_turbo', false],
    ['gen4.5', 'runway', 'gen4.5', false],
    ['gen4.5_turbo', 'runway', 'gen4.5', false],
    ['runway_gen4.5', 'runway', 'gen4.5', false],
    ['veo3.1', 'runway', 'veo3.1', false],
    ['runway_veo3.1', 'runway', 'veo3.1', false],
    ['veo3', 'runway', 'veo3.1', true],
    ['runway_veo3', 'runway', 'veo3.1', true],
    ['veo3.1_fast', 'runway', 'veo3.1_fast', false],
    ['runway_veo3.1_fast', 'runway', 'veo3.1_fast', false],
    ['gen3a_turbo', 'runway', 'gen4_turbo', true],
    ['wan_local', 'not-ours', undefined, false],
  ];

  it.each(rows)('maps %j to %s %s (warning: %s)', (provider, kind, model, warns) => {
    const resolved = resolveProvider(provider, 'gen4_turbo');
    expect(resolved.kind).toBe(kind);
    if (resolved.kind === 'runway') {
      expect(resolved.model).toBe(model);
      expect(resolved.warning !== undefined).toBe(warns);
    } else {
      expect(resolved.provider).toBe(provider);
    }
  });

  it('leaves the warning property out entirely when there is nothing to warn about', () => {
    expect(resolveProvider('gen4_turbo', 'gen4_turbo')).toStrictEqual({ kind: 'runway', model: 'gen4_turbo' });
    expect(Object.keys(resolveProvider(undefined, 'veo3.1'))).not.toContain('warning');
  });

  it('uses the configured default model for absent and unknown providers', () => {
    expect(resolveProvider(undefined, 'veo3.1_fast')).toStrictEqual({ kind: 'runway', model: 'veo3.1_fast' });
    expect(resolveProvider('hailuo3', 'gen4.5')).toMatchObject({ kind: 'runway', model: 'gen4.5' });
  });

  it('names the unknown provider and the model used instead in the warning', () => {
    const resolved = resolveProvider('Seedance2', 'gen4_turbo');
    expect(resolved).toStrictEqual({ kind: 'runway', model: 'gen4_turbo', warning: 'unknown provider "seedance2"; using gen4_turbo' });
  });

  it('says that veo3 and gen3a_turbo are retired when it maps them onto current models', () => {
    for (const provider of ['veo3', 'runway_veo3', 'gen3a_turbo']) {
      const resolved = resolveProvider(provider, 'gen4_turbo');
      expect(resolved.kind === 'runway' ? resolved.warning : undefined).toMatch(/retired/);
    }
  });

  it.each([
    ['GEN4.5', 'gen4.5'],
    ['  Veo3.1_Fast  ', 'veo3.1_fast'],
    ['Runway_Gen4_Turbo', 'gen4_turbo'],
    ['\tveo3.1\n', 'veo3.1'],
  ] as const)('ignores case and surrounding whitespace (%j → %s)', (provider, model) => {
    expect(resolveProvider(provider, 'gen4_turbo')).toStrictEqual({ kind: 'runway', model });
  });

  it('treats a blank provider as absent, without a warning', () => {
    expect(resolveProvider('   ', 'veo3.1')).toStrictEqual({ kind: 'runway', model: 'veo3.1' });
  });

  it('recognises the GPU worker provider whatever its case', () => {
    expect(resolveProvider(' WAN_LOCAL ', 'gen4_turbo')).toStrictEqual({ kind: 'not-ours', provider: 'wan_local' });
  });

  it('does not mistake names of object properties for known providers', () => {
    for (const provider of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      expect(resolveProvider(provider, 'gen4_turbo')).toStrictEqual({
        kind: 'runway',
        model: 'gen4_turbo',
        warning: `unknown provider "${provider.toLowerCase()}"; using gen4_turbo`,
      });
    }
  });

  it('keeps the warning short when the provider name is absurdly long', () => {
    const resolved = resolveProvider('x'.repeat(10_000), 'gen4_turbo');
    expect(resolved.kind === 'runway' ? resolved.warning?.length : undefined).toBeLessThan(120);
  });

  it('does not accept near misses of known names', () => {
    for (const provider of ['gen4', 'veo3.2', 'runway', 'runway_', 'gen4.5 turbo', 'wan']) {
      expect(resolveProvider(provider, 'veo3.1')).toStrictEqual({
        kind: 'runway',
        model: 'veo3.1',
        warning: `unknown provider ${JSON.stringify(provider)}; using veo3.1`,
      });
    }
  });
});
