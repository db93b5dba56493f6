import { allReported, demoRows, formatPhotoTable, formatTable, photoRows, progressLine } from './report.js';
import { localModeOf, startLocalRuntime, type LocalRuntime } from './local-runtime.js';

/**
 * `npm start`. Demo mode (no NEXT_API_URL / RUNWAY_API_KEY): three sample photos through
 * sandbox services, a final table, exit 0. Self-hosted mode (both set) hands over to the
 * product's own entry, `server/main.ts`: the worker against the real app and Runway until
 * SIGINT/SIGTERM.
 */

/** The demo runs QStash's delays this much faster, so it finishes in well under a minute. */
const DEMO_TIME_SCALE = 0.2;
const DEMO_DEADLINE_MS = 5 * 60_000;

async function runDemo(runtime: LocalRuntime): Promise<number> {
  const sandbox = runtime.sandbox;
  if (!sandbox) return 1;
  const say = (line: string): void => {
    process.stdout.write(`[demo] ${line}\n`);
  };
  say(`worker on ${runtime.url}; sandbox app, Runway and storage on ${new URL(sandbox.nextApiUrl).origin}`);
  say(`${runtime.items.length} photos queued: ${runtime.items.map((item) => item.expectation).join('; ')}`);
  const last = new Map<string, string>();
  const started = Date.now();
  for (;;) {
    for (const seed of runtime.items) {
      const latest = await runtime.deps.ledger.latest(seed.item_id);
      const line = progressLine(sandbox, seed, latest?.task?.runway_task_id);
      if (last.get(seed.item_id) !== line) {
        last.set(seed.item_id, line);
        say(line);
      }
    }
    if (allReported(sandbox, runtime.items)) break;
    if (Date.now() - started > DEMO_DEADLINE_MS) {
      say('gave up waiting after 5 minutes');
      process.stdout.write(`\n${formatTable(demoRows(sandbox, runtime.items))}\n`);
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(`\nAll ${runtime.items.length} items reported in ${seconds} s:\n\n${formatTable(demoRows(sandbox, runtime.items))}\n\n`);
  process.stdout.write(`Each photo as stored, and as Runway received it (upright, no metadata, within its limits):\n\n`);
  process.stdout.write(`${formatPhotoTable(await photoRows(sandbox, runtime.items))}\n\n`);
  return 0;
}

async function main(): Promise<number | undefined> {
  const env = process.env;
  if (localModeOf(env) === 'self-hosted') {
    await import('../../server/main.js');
    return undefined;
  }
  const runtime = await startLocalRuntime({ env, pretty: true, qstashTimeScale: DEMO_TIME_SCALE });
  try {
    return await runDemo(runtime);
  } finally {
    await runtime.close();
  }
}

main().then(
  (code) => {
    if (code !== undefined) process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
