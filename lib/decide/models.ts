import type { RunwayModel } from '../config.js';

/** A Runway output size, `width:height` in pixels (contract §2.1). */
export type RunwayRatio = `${number}:${number}`;

/** What the worker needs to know about one Runway image-to-video model (contract §2.1). */
export interface ModelSpec {
  /** Allowed `duration` values in seconds, ascending. */
  readonly durationsSeconds: readonly number[];
  /** Allowed `ratio` values. Order matters: on equal aspect distance the earlier one wins. */
  readonly ratios: readonly RunwayRatio[];
  readonly promptRequired: boolean;
  readonly durationRequired: boolean;
  readonly supportsSeed: boolean;
  readonly supportsContentModeration: boolean;
  readonly supportsAudio: boolean;
  readonly supportsNegativePrompt: boolean;
  /** 1 credit = $0.01. Veo prices depend on whether audio is generated. */
  readonly creditsPerSecond: number | { readonly audio: number; readonly silent: number };
  /**
   * Our guess at submission-to-finish time when Runway is not queueing us. Runway documents
   * only "30-120 s" overall, so these only steer the first poll.
   */
  readonly typicalGenerationSeconds: number;
}

const GEN4_DURATIONS_SECONDS = [2, 3, 4, 5, 6, 7, 8, 9, 10] as const;
const VEO_DURATIONS_SECONDS = [4, 6, 8] as const;

// The 720p sizes come before their 1080p twins of the same aspect so they win ties:
// same framing, smaller files to move.
const GEN4_RATIOS: readonly RunwayRatio[] = ['1280:720', '720:1280', '1104:832', '832:1104', '960:960', '1584:672'];
const VEO_RATIOS: readonly RunwayRatio[] = ['1280:720', '720:1280', '1080:1920', '1920:1080'];

const GEN4_FAMILY = {
  durationsSeconds: GEN4_DURATIONS_SECONDS,
  ratios: GEN4_RATIOS,
  supportsSeed: true,
  supportsContentModeration: true,
  supportsAudio: false,
  supportsNegativePrompt: false,
} as const;

const VEO_FAMILY = {
  durationsSeconds: VEO_DURATIONS_SECONDS,
  ratios: VEO_RATIOS,
  promptRequired: false,
  durationRequired: false,
  supportsSeed: false,
  supportsContentModeration: false,
  supportsAudio: true,
  supportsNegativePrompt: true,
} as const;

export const MODEL_SPECS: Readonly<Record<RunwayModel, ModelSpec>> = Object.freeze({
  gen4_turbo: {
    ...GEN4_FAMILY,
    promptRequired: false,
    durationRequired: false,
    creditsPerSecond: 5,
    typicalGenerationSeconds: 45,
  },
  'gen4.5': {
    ...GEN4_FAMILY,
    promptRequired: true,
    durationRequired: true,
    creditsPerSecond: 12,
    typicalGenerationSeconds: 90,
  },
  'veo3.1': {
    ...VEO_FAMILY,
    creditsPerSecond: { audio: 40, silent: 20 },
    typicalGenerationSeconds: 90,
  },
  'veo3.1_fast': {
    ...VEO_FAMILY,
    creditsPerSecond: { audio: 15, silent: 10 },
    typicalGenerationSeconds: 50,
  },
});

export function modelSpec(model: RunwayModel): ModelSpec {
  return MODEL_SPECS[model];
}

/** Credits per second of video; `audio` only matters for models that can generate it. */
export function creditsPerSecond(model: RunwayModel, audio: boolean): number {
  const price = MODEL_SPECS[model].creditsPerSecond;
  return typeof price === 'number' ? price : audio ? price.audio : price.silent;
}

export function estimateCredits(model: RunwayModel, durationSeconds: number, audio: boolean): number {
  return creditsPerSecond(model, audio) * durationSeconds;
}

export type ProviderResolution =
  | { readonly kind: 'runway'; readonly model: RunwayModel; readonly warning?: string }
  | { readonly kind: 'not-ours'; readonly provider: string };

interface ProviderAlias {
  readonly model: RunwayModel;
  /** Why the name was mapped to something other than itself; worth a warning in the log. */
  readonly note?: string;
}

// Provider names the app may send (contract §2.5, design §3). A Map, not an object
// literal, so names like "constructor" cannot hit inherited properties.
const PROVIDER_ALIASES: ReadonlyMap<string, ProviderAlias> = new Map<string, ProviderAlias>([
  ['gen4_turbo', { model: 'gen4_turbo' }],
  ['runway_gen4_turbo', { model: 'gen4_turbo' }],
  ['gen4.5', { model: 'gen4.5' }],
  // The app's planned name; Runway never had a model of that id.
  ['gen4.5_turbo', { model: 'gen4.5' }],
  ['runway_gen4.5', { model: 'gen4.5' }],
  ['veo3.1', { model: 'veo3.1' }],
  ['runway_veo3.1', { model: 'veo3.1' }],
  ['veo3', { model: 'veo3.1', note: 'provider "veo3" is retired at Runway; using veo3.1' }],
  ['runway_veo3', { model: 'veo3.1', note: 'provider "runway_veo3" is retired at Runway; using veo3.1' }],
  ['veo3.1_fast', { model: 'veo3.1_fast' }],
  ['runway_veo3.1_fast', { model: 'veo3.1_fast' }],
  ['gen3a_turbo', { model: 'gen4_turbo', note: 'provider "gen3a_turbo" is retired at Runway; using gen4_turbo' }],
]);

/** Providers served by other workers: their tasks are released at once, untouched. */
const OTHER_WORKERS_PROVIDERS: ReadonlySet<string> = new Set(['wan_local']);

const MAX_QUOTED_PROVIDER_LENGTH = 60;

/**
 * Maps the task's `provider` field onto a Runway model (design §3). Matching ignores case
 * and surrounding spaces; absent or empty means "use the configured default".
 */
export function resolveProvider(provider: string | null | undefined, defaultModel: RunwayModel): ProviderResolution {
  const name = (provider ?? '').trim().toLowerCase();
  if (name === '') return { kind: 'runway', model: defaultModel };
  if (OTHER_WORKERS_PROVIDERS.has(name)) return { kind: 'not-ours', provider: name };
  const alias = PROVIDER_ALIASES.get(name);
  if (alias === undefined) {
    const quoted = JSON.stringify(name.slice(0, MAX_QUOTED_PROVIDER_LENGTH));
    return { kind: 'runway', model: defaultModel, warning: `unknown provider ${quoted}; using ${defaultModel}` };
  }
  return alias.note === undefined
    ? { kind: 'runway', model: alias.model }
    : { kind: 'runway', model: alias.model, warning: alias.note };
}
