import { readOptions, deploymentUrl } from './cli/args.js';
import { describeSource, loadEnv } from './cli/env-file.js';
import { runCommand } from './cli/errors.js';
import { preflightHere } from './cli/local-preflight.js';
import { formatPreflight } from './cli/preflight-table.js';
import { preflightOf } from './cli/remote-preflight.js';

const USAGE = `Usage: npm run check -- [--env-file <path>] [--url https://<deployment>]

Checks what the worker depends on, as GET /api/cron-poll?check=1 does: the configuration
(defaults applied, secrets named but never shown), the app's worker API and key, the Runway
key with its credits, per-model limits and today's usage, the QStash token, the job ledger,
and the callback URL QStash will call. One row per check, a fix under every failing one;
exits 1 when any fails.

  --env-file <path>   read the variables from this dotenv file (the environment wins)
  --url <url>         ask a deployment instead: GET <url>/api/cron-poll?check=1 with
                      Authorization: Bearer $CRON_SECRET (from the environment or --env-file)
  -h, --help          show this help`;

async function main(): Promise<number> {
  const options = readOptions(process.argv.slice(2), {
    'env-file': { type: 'string' },
    url: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (options.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const base = options.url === undefined ? undefined : deploymentUrl(options.url);
  const loaded = await loadEnv(options['env-file'], process.env);
  const report = base === undefined ? await preflightHere(loaded.env) : await preflightOf(base, loaded.env);
  const heading = base === undefined ? describeSource(loaded) : `preflight of ${base} (GET /api/cron-poll?check=1), ${describeSource(loaded)}`;
  process.stdout.write(`${heading}\n\n${formatPreflight(report)}`);
  return report.ok ? 0 : 1;
}

runCommand(main, USAGE);
