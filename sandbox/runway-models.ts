import { z } from 'zod';
import { promptImageSyntaxProblem } from './runway-prompt-image.js';

/** The only API version the sandbox (and the worker) speaks. */
export const RUNWAY_API_VERSION = '2024-11-06';

export const RUNWAY_MODELS = ['gen4_turbo', 'gen4.5', 'veo3.1', 'veo3.1_fast'] as const;
export type RunwayModel = (typeof RUNWAY_MODELS)[number];

const GEN4_RATIOS = ['1280:720', '720:1280', '1104:832', '832:1104', '960:960', '1584:672'] as const;
const VEO_RATIOS = ['1280:720', '720:1280', '1080:1920', '1920:1080'] as const;

/**
 * A string bounded in UTF-16 code units (JS `length`), as Runway counts prompt length.
 * zod's own min/max count code points, which would let a 1001-unit emoji prompt through.
 */
function utf16String(minimum: number, maximum: number) {
  return z.string().superRefine((value, ctx) => {
    if (value.length > maximum) {
      ctx.addIssue({ code: 'too_big', origin: 'string', maximum, inclusive: true, input: value });
    } else if (value.length < minimum) {
      ctx.addIssue({ code: 'too_small', origin: 'string', minimum, inclusive: true, input: value });
    }
  });
}

const promptText = utf16String(1, 1000);

const promptImageUri = z.string().superRefine((value, ctx) => {
  const problem = promptImageSyntaxProblem(value);
  if (problem?.code === 'too_big') {
    ctx.addIssue({ code: 'too_big', origin: 'string', maximum: problem.maximum, inclusive: true, input: value });
  } else if (problem !== undefined) {
    ctx.addIssue({ code: 'custom', message: problem.message, input: value });
  }
});

/** Gen-4 models take one first frame; Veo can also take a last frame. */
const gen4PromptImage = z.union([
  promptImageUri,
  z.array(z.strictObject({ uri: promptImageUri, position: z.literal('first') })).min(1).max(1),
]);
const veoPromptImage = z.union([
  promptImageUri,
  z
    .array(z.strictObject({ uri: promptImageUri, position: z.enum(['first', 'last']) }))
    .min(1)
    .max(2)
    .refine((frames) => new Set(frames.map((frame) => frame.position)).size === frames.length, {
      message: 'Each position can be used once',
    }),
]);

const gen4Extras = {
  seed: z.number().int().min(0).max(4_294_967_295).optional(),
  contentModeration: z.strictObject({ publicFigureThreshold: z.enum(['auto', 'low']).optional() }).optional(),
};
const gen4Duration = z.number().int().min(2).max(10);

const veoFields = {
  promptImage: veoPromptImage,
  ratio: z.enum(VEO_RATIOS),
  duration: z.literal([4, 6, 8]).optional(),
  promptText: promptText.optional(),
  audio: z.boolean().optional(),
  negativePrompt: utf16String(1, 1000).optional(),
};

/** `POST /v1/image_to_video` body: a strict union on `model` (contract §2.1). */
export const imageToVideoRequestSchema = z.discriminatedUnion('model', [
  z.strictObject({
    model: z.literal('gen4_turbo'),
    promptImage: gen4PromptImage,
    ratio: z.enum(GEN4_RATIOS),
    duration: gen4Duration.optional(),
    promptText: promptText.optional(),
    ...gen4Extras,
  }),
  z.strictObject({
    model: z.literal('gen4.5'),
    promptImage: gen4PromptImage,
    ratio: z.enum(GEN4_RATIOS),
    duration: gen4Duration,
    promptText,
    ...gen4Extras,
  }),
  z.strictObject({ model: z.literal('veo3.1'), ...veoFields }),
  z.strictObject({ model: z.literal('veo3.1_fast'), ...veoFields }),
]);
export type ImageToVideoRequest = z.infer<typeof imageToVideoRequestSchema>;

export const uploadRequestSchema = z.strictObject({
  filename: utf16String(1, 255),
  type: z.literal('ephemeral'),
});

const DEFAULT_DURATION_SECONDS: Record<RunwayModel, number> = {
  gen4_turbo: 10,
  'gen4.5': 10,
  'veo3.1': 8,
  'veo3.1_fast': 8,
};

/** The duration the task will actually have once the model's default is applied. */
export function effectiveDurationSeconds(request: ImageToVideoRequest): number {
  return request.duration ?? DEFAULT_DURATION_SECONDS[request.model];
}

/** Credits per second from the published price table; Veo audio is on by default and costs more. */
export function creditsPerSecond(request: ImageToVideoRequest): number {
  switch (request.model) {
    case 'gen4_turbo':
      return 5;
    case 'gen4.5':
      return 12;
    case 'veo3.1':
      return request.audio === false ? 20 : 40;
    case 'veo3.1_fast':
      return request.audio === false ? 10 : 15;
  }
}

export function estimateCredits(request: ImageToVideoRequest): number {
  return creditsPerSecond(request) * effectiveDurationSeconds(request);
}

export interface RunwayIssue {
  readonly code: string;
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/**
 * Runway's validator words length errors the zod-3 way ("String must contain at most N
 * character(s)"); the oversized data URI error clients see comes out in that form.
 */
export function toRunwayIssues(issues: readonly z.core.$ZodIssue[]): RunwayIssue[] {
  return issues.map((issue) => {
    const path = issue.path.filter((part): part is string | number => typeof part !== 'symbol');
    let message = issue.message;
    if (issue.code === 'too_big' && issue.origin === 'string') {
      message = `String must contain at most ${String(issue.maximum)} character(s)`;
    } else if (issue.code === 'too_small' && issue.origin === 'string') {
      message = `String must contain at least ${String(issue.minimum)} character(s)`;
    }
    return { code: issue.code, path, message };
  });
}

/** One line naming every problem, e.g. `promptImage: String must contain at most 2048 character(s)`. */
export function describeIssues(issues: readonly RunwayIssue[]): string {
  return issues
    .map((issue) => (issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message))
    .join('; ');
}
