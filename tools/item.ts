import { runItemCli } from './item/cli.js';

/** `npm run item -- <item_id> [--url https://<deployment>] [--env-file path] [--json]` (see tools/item/cli.ts). */
runItemCli({
  argv: process.argv.slice(2),
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
}).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
