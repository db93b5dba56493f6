import { startWorkerRuntime } from './runtime.js';

/**
 * The self-hosted worker's entry (`node dist/server/main.js`, the Docker image's command):
 * the worker against the app, Runway and QStash named in the environment, until SIGINT or
 * SIGTERM. A bad or missing setting is one clear message and exit 1.
 */

async function main(): Promise<void> {
  // Readable lines on a terminal, JSON lines for a log collector.
  const runtime = await startWorkerRuntime({ env: process.env, pretty: process.stdout.isTTY === true });
  process.stdout.write(`worker running on ${runtime.url} (cron every ${runtime.deps.config.localCronSeconds} s); Ctrl-C to stop\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await runtime.close();
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
