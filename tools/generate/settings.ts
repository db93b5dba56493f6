import { readFile } from 'node:fs/promises';
import { parseEnv } from 'node:util';
import { z } from 'zod';
import { RUNWAY_MODELS, type RunwayModel } from '../../lib/config.js';
import { UsageError } from './errors.js';

/** The part of the worker's configuration (design §6) one generation needs, with the same names and defaults. */
export interface GenerateSettings {
  readonly runwayApiUrl: string;
  readonly runwayApiKey: string;
  readonly defaultModel: RunwayModel;
  readonly audio: boolean;
  readonly pollMinSeconds: number;
  readonly pollMaxSeconds: number;
  readonly timeoutSeconds: number;
}

export type Env = Readonly<Record<string, string | undefined>>;

const MODEL_LIST = RUNWAY_MODELS.join(', ');

const emptyAsMissing = (value: unknown): unknown => (typeof value === 'string' && value.trim() === '' ? undefined : value);
const seconds = (fallback: number, min: number) =>
  z.preprocess(emptyAsMissing, z.coerce.number().int().min(min).default(fallback));

const envSchema = z.object({
  RUNWAY_API_KEY: z.preprocess(emptyAsMissing, z.string({ error: 'RUNWAY_API_KEY is not set (export it, or pass --env-file <path>)' })),
  RUNWAY_API_URL: z.preprocess(
    emptyAsMissing,
    z.url({ protocol: /^https?$/, error: 'RUNWAY_API_URL is not an http(s) URL' }).default('https://api.dev.runwayml.com'),
  ),
  RUNWAY_MODEL: z.preprocess(
    emptyAsMissing,
    z.enum(RUNWAY_MODELS, { error: `RUNWAY_MODEL is not one of ${MODEL_LIST}` }).default('gen4_turbo'),
  ),
  RUNWAY_AUDIO: z.preprocess(
    emptyAsMissing,
    z.enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'RUNWAY_AUDIO must be true or false' }).default('false'),
  ),
  RUNWAY_POLL_MIN_SECONDS: seconds(5, 5),
  RUNWAY_POLL_MAX_SECONDS: seconds(60, 5),
  RUNWAY_TIMEOUT_SECONDS: seconds(600, 1),
});

/** Reads `--env-file`: variables set (and not empty) in the environment win, as with `node --env-file`. */
export async function withEnvFile(env: Env, envFile: string | undefined): Promise<Env> {
  if (envFile === undefined) return env;
  let text: string;
  try {
    text = await readFile(envFile, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read the env file ${envFile} (${code === 'ENOENT' ? 'no such file' : (code ?? 'unreadable')})`);
  }
  const merged: Record<string, string | undefined> = { ...parseEnv(text) };
  for (const [name, value] of Object.entries(env)) if (emptyAsMissing(value) !== undefined) merged[name] = value;
  return merged;
}

export function parseSettings(env: Env): GenerateSettings {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const name = issue.path.join('.');
      return issue.message.startsWith(name) ? issue.message : `${name}: ${issue.message}`;
    });
    throw new UsageError(problems.join('; '));
  }
  const e = result.data;
  if (e.RUNWAY_POLL_MAX_SECONDS < e.RUNWAY_POLL_MIN_SECONDS) {
    throw new UsageError('RUNWAY_POLL_MAX_SECONDS must be at least RUNWAY_POLL_MIN_SECONDS');
  }
  return {
    runwayApiUrl: e.RUNWAY_API_URL.replace(/\/+$/, ''),
    runwayApiKey: e.RUNWAY_API_KEY,
    defaultModel: e.RUNWAY_MODEL,
    audio: ['true', '1', 'yes'].includes(e.RUNWAY_AUDIO),
    pollMinSeconds: e.RUNWAY_POLL_MIN_SECONDS,
    pollMaxSeconds: e.RUNWAY_POLL_MAX_SECONDS,
    timeoutSeconds: e.RUNWAY_TIMEOUT_SECONDS,
  };
}

/** `--model`, else RUNWAY_MODEL: only the models the worker supports. */
export function chooseModel(requested: string | undefined, settings: GenerateSettings): RunwayModel {
  if (requested === undefined) return settings.defaultModel;
  const model = RUNWAY_MODELS.find((name) => name === requested.trim());
  if (model === undefined) throw new UsageError(`unknown model ${JSON.stringify(requested)}: use one of ${MODEL_LIST}`);
  return model;
}
