import { deploymentUrl, readOptions } from './cli/args.js';
import { parseEvery, type Cadence } from './cli/cadence.js';
import { describeSource, loadEnv } from './cli/env-file.js';
import { runCommand, UsageError } from './cli/errors.js';
import { QSTASH_MESSAGES_PER_VIDEO_SOURCE, dailyBudget } from './cli/qstash-budget.js';
import {
  CRON_POLL_PATH,
  SCHEDULE_ID,
  SCHEDULE_RETRIES,
  createScheduleClient,
  scheduleSettingsOf,
  type ScheduleClient,
  type ScheduleSummary,
} from './cli/qstash-schedule.js';
import { formatPairs } from './cli/table.js';

/** Every 10 minutes is 144 messages a day: most of the free 1,000 stays for videos. */
const DEFAULT_EVERY_MINUTES = '10';

const USAGE = `Usage: npm run schedule -- --url https://<deployment> [--every <minutes>] [--env-file <path>]
       npm run schedule -- --remove [--env-file <path>]

Creates or updates the QStash schedule "${SCHEDULE_ID}" that POSTs to <url>${CRON_POLL_PATH}
(for Vercel Hobby, where Vercel Cron runs at most once a day), and prints the daily QStash
message budget it leaves for videos. Running it again updates the same schedule.

  --url <url>         the deployment's base URL, https://<deployment>
  --every <minutes>   how often cron-poll runs: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60,
                      120, 180, 240, 360, 480, 720 or 1440 (default ${DEFAULT_EVERY_MINUTES})
  --remove            delete the schedule
  --env-file <path>   read the variables from this dotenv file (the environment wins)
  -h, --help          show this help

Environment: QSTASH_TOKEN (required), QSTASH_URL (default https://qstash.upstash.io),
VERCEL_AUTOMATION_BYPASS_SECRET (forwarded as x-vercel-protection-bypass when set).`;

const count = (n: number): string => n.toLocaleString('en-US');
const say = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

function budgetLines(cadence: Cadence): string {
  const budget = dailyBudget(cadence);
  const left = budget.quota - budget.scheduleMessages;
  const fit = left > 0 ? `(${count(budget.quota)} − ${count(budget.scheduleMessages)}) / ${budget.messagesPerVideo}` : 'the schedule alone uses the quota';
  const lines = [
    `QStash messages a day (free tier: ${count(budget.quota)}, every delivery counted):`,
    formatPairs([
      ['schedule', `${count(budget.scheduleMessages)} (${cadence.label})`],
      ['per video', `${budget.messagesPerVideo} (measured: ${QSTASH_MESSAGES_PER_VIDEO_SOURCE})`],
      ['videos a day that fit', `${count(budget.videos)} (${fit})`],
    ]),
  ];
  if (left <= 0) {
    lines.push(`warning: ${cadence.label} spends the whole free quota: pick a longer --every, or QStash pay-as-you-go ($1 per 100,000 messages)`);
  }
  return lines.join('\n');
}

/** Other schedules that also call cron-poll: each one polls again and spends messages. */
function othersCallingCronPoll(schedules: readonly ScheduleSummary[]): ScheduleSummary[] {
  return schedules.filter((schedule) => schedule.scheduleId !== SCHEDULE_ID && new URL(schedule.destination, 'http://x').pathname === CRON_POLL_PATH);
}

async function createOrUpdate(client: ScheduleClient, base: string, cadence: Cadence, bypass: boolean): Promise<void> {
  const before = await client.list();
  const previous = before.find((schedule) => schedule.scheduleId === SCHEDULE_ID);
  const destination = `${base}${CRON_POLL_PATH}`;
  const saved = await client.upsert(destination, cadence);
  const was = previous && (previous.cron !== saved.cron || previous.destination !== saved.destination) ? ` (was ${previous.cron} → ${previous.destination})` : '';
  say(`QStash schedule ${saved.scheduleId} ${previous ? 'updated' : 'created'} at ${client.qstashUrl}${was}`);
  say(
    formatPairs([
      ['destination', `POST ${saved.destination} (empty body)`],
      ['cron', `${saved.cron} (${cadence.label}, UTC)`],
      ['retries', `${SCHEDULE_RETRIES} (the next run comes at the next tick; each retry is a billed message)`],
      ...(bypass ? [['forwarded', 'x-vercel-protection-bypass (VERCEL_AUTOMATION_BYPASS_SECRET)'] as const] : []),
    ]),
  );
  for (const other of othersCallingCronPoll(before)) {
    say(`warning: schedule ${other.scheduleId} (${other.cron} → ${other.destination}) also calls cron-poll; delete it in the Upstash console (QStash → Schedules) unless it is meant to`);
  }
  say('');
  say(budgetLines(cadence));
  say('');
  say('Vercel Cron is not needed with this schedule: on Hobby, remove "crons" from vercel.json.');
  say(`Check the deployment with: npm run check -- --url ${base}`);
}

async function remove(client: ScheduleClient): Promise<void> {
  const existing = (await client.list()).find((schedule) => schedule.scheduleId === SCHEDULE_ID);
  if (!existing) {
    say(`no QStash schedule ${SCHEDULE_ID} at ${client.qstashUrl}: nothing to remove`);
    return;
  }
  await client.remove();
  say(`QStash schedule ${SCHEDULE_ID} removed from ${client.qstashUrl} (it was ${existing.cron} → ${existing.destination})`);
}

async function main(): Promise<number> {
  const options = readOptions(process.argv.slice(2), {
    url: { type: 'string' },
    every: { type: 'string' },
    remove: { type: 'boolean', default: false },
    'env-file': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (options.help) {
    say(USAGE);
    return 0;
  }
  if (options.remove && (options.url !== undefined || options.every !== undefined)) {
    throw new UsageError('--remove takes neither --url nor --every');
  }
  if (!options.remove && options.url === undefined) throw new UsageError('--url https://<deployment> is required (or --remove)');
  const base = options.url === undefined ? undefined : deploymentUrl(options.url);
  const cadence = parseEvery(options.every ?? DEFAULT_EVERY_MINUTES);
  const loaded = await loadEnv(options['env-file'], process.env);
  const settings = scheduleSettingsOf(loaded.env);
  const client = createScheduleClient(settings);
  say(describeSource(loaded));
  if (base === undefined) await remove(client);
  else await createOrUpdate(client, base, cadence, settings.protectionBypassSecret !== undefined);
  return 0;
}

runCommand(main, USAGE);
