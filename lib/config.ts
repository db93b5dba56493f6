import { z } from 'zod';

/**
 * Configuration, parsed once from an env object passed in (nothing else reads
 * `process.env`). Empty strings count as missing; every problem is reported at once.
 * Names and defaults are part of the interface (design §6).
 */

const emptyAsMissing = (value: unknown): unknown =>
  typeof value === 'string' && value.trim() === '' ? undefined : value;

const text = () => z.preprocess(emptyAsMissing, z.string());
const optionalText = () => z.preprocess(emptyAsMissing, z.string().optional());
const url = () => z.preprocess(emptyAsMissing, z.url({ protocol: /^https?$/ }));
const optionalUrl = () => z.preprocess(emptyAsMissing, z.url({ protocol: /^https?$/ }).optional());
const seconds = (fallback: number, min = 0) =>
  z.preprocess(emptyAsMissing, z.coerce.number().int().min(min).default(fallback));
/** Off unless set to a yes. */
const flag = () =>
  z.preprocess(
    emptyAsMissing,
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'])
      .default('false')
      .transform((value) => value === 'true' || value === '1' || value === 'yes'),
  );

export const RUNWAY_MODELS = ['gen4_turbo', 'gen4.5', 'veo3.1', 'veo3.1_fast'] as const;
/** Each new generation is billed: a few at most. */
export const MAX_REGENERATIONS = 3;
export type RunwayModel = (typeof RUNWAY_MODELS)[number];
const POLL_MIN_DEFAULT = 5;
const POLL_MAX_DEFAULT = 60;

const envSchema = z
  .object({
    NEXT_API_URL: url(),
    WORKER_API_KEY: text(),
    WORKER_ID: optionalText().transform((v) => v ?? 'runway-worker'),
    WORKER_TYPE: optionalText().transform((v) => v ?? 'runway'),
    RUNWAY_API_KEY: text(),
    RUNWAY_API_URL: optionalUrl().transform((v) => v ?? 'https://api.dev.runwayml.com'),
    RUNWAY_MODEL: z.preprocess(emptyAsMissing, z.enum(RUNWAY_MODELS).default('gen4_turbo')),
    RUNWAY_AUDIO: flag(),
    RUNWAY_TIMEOUT_SECONDS: seconds(600, 1),
    RUNWAY_POLL_MIN_SECONDS: seconds(POLL_MIN_DEFAULT, 5),
    RUNWAY_POLL_MAX_SECONDS: seconds(POLL_MAX_DEFAULT, 5),
    LEASE_DURATION_SECONDS: seconds(600, 10),
    HEARTBEAT_INTERVAL_SECONDS: seconds(120, 1),
    MAX_TASKS_PER_RUN: seconds(10, 1),
    RUNWAY_REGENERATIONS: z.preprocess(emptyAsMissing, z.coerce.number().int().min(0).max(MAX_REGENERATIONS).default(1)),
    QSTASH_TOKEN: text(),
    QSTASH_URL: optionalUrl().transform((v) => v ?? 'https://qstash.upstash.io'),
    QSTASH_CURRENT_SIGNING_KEY: text(),
    QSTASH_NEXT_SIGNING_KEY: text(),
    WORKER_BASE_URL: optionalUrl(),
    VERCEL_PROJECT_PRODUCTION_URL: optionalText(),
    VERCEL: optionalText(),
    VERCEL_AUTOMATION_BYPASS_SECRET: optionalText(),
    CRON_SECRET: optionalText(),
    BLOB_READ_WRITE_TOKEN: optionalText(),
    LEDGER_DIR: optionalText().transform((v) => v ?? '.data/ledger'),
    PORT: seconds(3000, 0),
    LOCAL_CRON_SECONDS: seconds(5, 1),
    LOG_LEVEL: z.preprocess(
      emptyAsMissing,
      z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    ),
  });

export type Env = Record<string, string | undefined>;

export interface Config {
  readonly nextApiUrl: string;
  readonly workerApiKey: string;
  readonly workerId: string;
  readonly workerType: string;
  readonly runwayApiKey: string;
  readonly runwayApiUrl: string;
  readonly runwayModel: RunwayModel;
  readonly runwayAudio: boolean;
  readonly runwayTimeoutSeconds: number;
  readonly runwayPollMinSeconds: number;
  readonly runwayPollMaxSeconds: number;
  readonly leaseDurationSeconds: number;
  readonly heartbeatIntervalSeconds: number;
  readonly maxTasksPerRun: number;
  /** New generations after a transient Runway failure (0 = none). */
  readonly runwayRegenerations: number;
  readonly qstashToken: string;
  readonly qstashUrl: string;
  readonly qstashCurrentSigningKey: string;
  readonly qstashNextSigningKey: string;
  readonly workerBaseUrl: string;
  readonly cronSecret: string | undefined;
  readonly blobToken: string | undefined;
  readonly ledgerDir: string;
  readonly onVercel: boolean;
  /** Forwarded to QStash so its calls pass Vercel Deployment Protection (set by Vercel when enabled). */
  readonly protectionBypassSecret: string | undefined;
  readonly port: number;
  readonly localCronSeconds: number;
  readonly logLevel: string;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration (${problems.length}):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

const isMissing = (value: string | undefined): value is undefined => value === undefined || value.trim() === '';

/** A number from the raw env for the cross checks: missing (or empty) means the default. */
const numberOr = (value: string | undefined, fallback: number): number => (isMissing(value) ? fallback : Number(value));

/** Rules that span several variables; checked on the raw env so they are reported with the rest. */
function crossCheck(env: Env): string[] {
  const problems: string[] = [];
  const min = numberOr(env.RUNWAY_POLL_MIN_SECONDS, POLL_MIN_DEFAULT);
  const max = numberOr(env.RUNWAY_POLL_MAX_SECONDS, POLL_MAX_DEFAULT);
  if (Number.isFinite(min) && Number.isFinite(max) && max < min) {
    problems.push('RUNWAY_POLL_MAX_SECONDS: must be at least RUNWAY_POLL_MIN_SECONDS');
  }
  if (isMissing(env.WORKER_BASE_URL) && isMissing(env.VERCEL_PROJECT_PRODUCTION_URL)) {
    problems.push('WORKER_BASE_URL is missing (or VERCEL_PROJECT_PRODUCTION_URL, which Vercel sets)');
  }
  if (env.VERCEL === '1' && isMissing(env.BLOB_READ_WRITE_TOKEN)) {
    problems.push('BLOB_READ_WRITE_TOKEN is missing (required on Vercel: the job ledger lives in Vercel Blob)');
  }
  return problems;
}

const stripSlash = (value: string): string => value.replace(/\/+$/, '');

export function parseConfig(env: Env): Config {
  const result = envSchema.safeParse(env);
  const problems = result.success
    ? []
    : result.error.issues.map((issue) => {
        const key = issue.path.join('.') || '(env)';
        return isMissing(env[key]) ? `${key} is missing` : `${key}: ${issue.message}`;
      });
  problems.push(...crossCheck(env));
  if (!result.success || problems.length > 0) throw new ConfigError(problems);
  const e = result.data;
  return Object.freeze({
    nextApiUrl: stripSlash(e.NEXT_API_URL),
    workerApiKey: e.WORKER_API_KEY,
    workerId: e.WORKER_ID,
    workerType: e.WORKER_TYPE,
    runwayApiKey: e.RUNWAY_API_KEY,
    runwayApiUrl: stripSlash(e.RUNWAY_API_URL),
    runwayModel: e.RUNWAY_MODEL,
    runwayAudio: e.RUNWAY_AUDIO,
    runwayTimeoutSeconds: e.RUNWAY_TIMEOUT_SECONDS,
    runwayPollMinSeconds: e.RUNWAY_POLL_MIN_SECONDS,
    runwayPollMaxSeconds: e.RUNWAY_POLL_MAX_SECONDS,
    leaseDurationSeconds: e.LEASE_DURATION_SECONDS,
    heartbeatIntervalSeconds: e.HEARTBEAT_INTERVAL_SECONDS,
    maxTasksPerRun: e.MAX_TASKS_PER_RUN,
    runwayRegenerations: e.RUNWAY_REGENERATIONS,
    qstashToken: e.QSTASH_TOKEN,
    qstashUrl: stripSlash(e.QSTASH_URL),
    qstashCurrentSigningKey: e.QSTASH_CURRENT_SIGNING_KEY,
    qstashNextSigningKey: e.QSTASH_NEXT_SIGNING_KEY,
    // One of the two is set (crossCheck).
    workerBaseUrl: stripSlash(e.WORKER_BASE_URL ?? `https://${String(e.VERCEL_PROJECT_PRODUCTION_URL)}`),
    cronSecret: e.CRON_SECRET,
    blobToken: e.BLOB_READ_WRITE_TOKEN,
    ledgerDir: e.LEDGER_DIR,
    onVercel: e.VERCEL === '1',
    protectionBypassSecret: e.VERCEL_AUTOMATION_BYPASS_SECRET,
    port: e.PORT,
    localCronSeconds: e.LOCAL_CRON_SECONDS,
    logLevel: e.LOG_LEVEL,
  });
}

/** Values that must never reach a log line or an error message. */
export function secretsOf(config: Config): string[] {
  return [
    config.workerApiKey,
    config.runwayApiKey,
    config.qstashToken,
    config.qstashCurrentSigningKey,
    config.qstashNextSigningKey,
    config.cronSecret,
    config.blobToken,
    config.protectionBypassSecret,
  ].filter((s): s is string => typeof s === 'string' && s.length >= 4);
}
