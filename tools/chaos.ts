import path from 'node:path';
import { parseArgs } from 'node:util';
import { checkInvariants, formatFigures, runChaos } from './chaos/run-chaos.js';

/**
 * `npm run chaos [-- --items N --seed S]`: drives N items (default 300, or CHAOS_ITEMS)
 * through the local runtime with faults everywhere, prints one `name: value` line per
 * figure on stdout, and exits 1 when an invariant breaks (each broken one on stderr).
 */

const DEFAULT_ITEMS = 300;
const DEFAULT_SEED = 1;
const DATA_DIR = '.data/chaos';

function positiveInteger(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be a whole number ≥ 0, got ${JSON.stringify(raw)}`);
  return value;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      items: { type: 'string' },
      seed: { type: 'string' },
      'deadline-seconds': { type: 'string' },
      'data-dir': { type: 'string' },
    },
    strict: true,
  });
  const items = positiveInteger('--items', values.items ?? process.env.CHAOS_ITEMS, DEFAULT_ITEMS);
  const seed = positiveInteger('--seed', values.seed, DEFAULT_SEED);
  const deadline = values['deadline-seconds'];
  const dataDir = values['data-dir'] ?? DATA_DIR;
  const logFile = path.join(dataDir, 'worker.log');
  const say = (line: string): void => {
    process.stderr.write(`[chaos] ${line}\n`);
  };

  say(`${items} items, seed ${seed}; worker log in ${logFile}`);
  const figures = await runChaos({
    items,
    seed,
    dataDir,
    logFile,
    ...(deadline === undefined ? {} : { deadlineSeconds: positiveInteger('--deadline-seconds', deadline, 0) }),
    onProgress: (progress) =>
      say(
        `${progress.completed + progress.failed}/${progress.items} finished (${progress.completed} completed, ${progress.failed} failed) after ${Math.round(progress.elapsedMs / 1000)} s`,
      ),
  });

  process.stdout.write(`${formatFigures(figures).join('\n')}\n`);
  const quietest = figures.details.longestQuiet;
  if (quietest) say(`longest quiet stretch: ${quietest.item_id}: ${quietest.detail}`);
  for (const note of figures.details.unexpectedFailures) say(`unexpected failure: ${note.item_id}: ${note.detail}`);
  const broken = checkInvariants(figures);
  for (const problem of broken) say(`INVARIANT BROKEN: ${problem}`);
  if (broken.length > 0) say(`replay with --seed ${seed} --items ${items}; grep the item ids in ${logFile}`);
  return broken.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`[chaos] ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
