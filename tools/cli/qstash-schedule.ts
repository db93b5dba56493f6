import { Client, QstashError } from '@upstash/qstash';
import { z } from 'zod';
import type { Env } from '../../lib/config.js';
import type { Cadence } from './cadence.js';
import { CliError } from './errors.js';

/** The one QStash schedule this worker owns; a fixed id makes creating it again an update. */
export const SCHEDULE_ID = 'runway-worker-cron';
export const CRON_POLL_PATH = '/api/cron-poll';
/**
 * No QStash retries for a scheduled run: the next run comes at the next tick anyway, and
 * every retry is a billed message.
 */
export const SCHEDULE_RETRIES = 0;

const QSTASH_DEFAULT_URL = 'https://qstash.upstash.io';
/** The SDK retries network errors itself; a few tries are enough for a command. */
const CLIENT_NETWORK_RETRIES = 2;

const scheduleSchema = z.looseObject({ scheduleId: z.string(), cron: z.string(), destination: z.string() });
export type ScheduleSummary = z.infer<typeof scheduleSchema>;

export interface ScheduleClient {
  readonly qstashUrl: string;
  /** Every schedule of the account. */
  list(): Promise<ScheduleSummary[]>;
  /** Creates the worker's schedule, or replaces it (same id), and reads it back. */
  upsert(destination: string, cadence: Cadence): Promise<ScheduleSummary>;
  remove(): Promise<void>;
}

export interface ScheduleSettings {
  readonly qstashUrl: string;
  readonly token: string;
  /** Forwarded as `x-vercel-protection-bypass`, as the worker does with its own messages. */
  readonly protectionBypassSecret: string | undefined;
}

export function scheduleSettingsOf(env: Env): ScheduleSettings {
  const token = env.QSTASH_TOKEN?.trim();
  if (!token) {
    throw new CliError('QSTASH_TOKEN is missing: set it in the environment or --env-file (Upstash console, QStash → Request builder)');
  }
  const qstashUrl = (env.QSTASH_URL?.trim() || QSTASH_DEFAULT_URL).replace(/\/+$/, '');
  if (!URL.canParse(qstashUrl)) throw new CliError(`QSTASH_URL is not a URL: ${JSON.stringify(qstashUrl)}`);
  return { qstashUrl, token, protectionBypassSecret: env.VERCEL_AUTOMATION_BYPASS_SECRET?.trim() || undefined };
}

/** QStash's refusal in the operator's words, with what to do about it. */
function failure(error: unknown, qstashUrl: string): CliError {
  if (error instanceof QstashError && (error.status === 401 || error.status === 403)) {
    return new CliError(
      `QStash at ${qstashUrl} rejected the token (${error.status})\n` +
        'fix: use the QSTASH_TOKEN from the Upstash console (QStash → Request builder), with the QSTASH_URL shown there',
    );
  }
  if (error instanceof QstashError && error.status === 429) {
    return new CliError(`QStash at ${qstashUrl} is refusing requests for now (429): ${error.message}`);
  }
  if (error instanceof QstashError && error.status !== undefined) {
    return new CliError(`QStash at ${qstashUrl} answered ${error.status}: ${error.message}`);
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new CliError(`QStash unreachable at ${qstashUrl}: ${reason}\nfix: check QSTASH_URL (default ${QSTASH_DEFAULT_URL})`);
}

export function createScheduleClient(settings: ScheduleSettings): ScheduleClient {
  const client = new Client({
    baseUrl: settings.qstashUrl,
    token: settings.token,
    retry: { retries: CLIENT_NETWORK_RETRIES },
    enableTelemetry: false,
    devMode: false,
  });
  const { qstashUrl } = settings;
  const guarded = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (error) {
      throw failure(error, qstashUrl);
    }
  };
  const parsed = (value: unknown): ScheduleSummary => {
    const schedule = scheduleSchema.safeParse(value);
    if (!schedule.success) throw new CliError(`QStash at ${qstashUrl} answered a schedule of an unexpected shape`);
    return schedule.data;
  };

  return {
    qstashUrl,
    list: () => guarded(async () => (await client.schedules.list()).map(parsed)),
    upsert: (destination, cadence) =>
      guarded(async () => {
        await client.schedules.create({
          destination,
          cron: cadence.cron,
          scheduleId: SCHEDULE_ID,
          method: 'POST',
          retries: SCHEDULE_RETRIES,
          ...(settings.protectionBypassSecret ? { headers: { 'x-vercel-protection-bypass': settings.protectionBypassSecret } } : {}),
        });
        return parsed(await client.schedules.get(SCHEDULE_ID));
      }),
    remove: () => guarded(() => client.schedules.delete(SCHEDULE_ID)),
  };
}
