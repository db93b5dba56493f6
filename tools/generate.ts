import { EXIT_INTERRUPTED, errorLine, exitCodeOf } from './generate/errors.js';
import { runGenerate } from './generate/run.js';

/**
 * `npm run generate -- --image photo.jpg [--model gen4_turbo] [--prompt "…"] [--duration 5] [--out video.mp4]`:
 * one real Runway image-to-video generation with the worker's own client and decisions.
 * Ctrl-C cancels the task at Runway before exiting; a second Ctrl-C exits at once.
 */

const controller = new AbortController();
let interruptions = 0;
function interrupt(): void {
  interruptions += 1;
  if (interruptions > 1) process.exit(EXIT_INTERRUPTED);
  controller.abort();
}
process.on('SIGINT', interrupt);
process.on('SIGTERM', interrupt);

try {
  await runGenerate({
    argv: process.argv.slice(2),
    env: process.env,
    cwd: process.cwd(),
    signal: controller.signal,
    print: (line) => process.stdout.write(`${line}\n`),
  });
} catch (error) {
  process.stderr.write(`generate: ${errorLine(error)}\n`);
  process.exitCode = exitCodeOf(error);
}
