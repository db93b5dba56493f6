/** The command was called wrongly: the message says how; exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The command ran and could not do its job (a service refused, a file is missing): exit code 1. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

/**
 * Runs a command's `main` and turns its result into the exit code: its own number, 2 for a
 * usage error (with the usage text), 1 for anything else that went wrong.
 */
export function runCommand(main: () => Promise<number>, usage: string): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      if (error instanceof UsageError) {
        const synopsis = usage.split('\n\n')[0] ?? usage;
        process.stderr.write(`error: ${error.message}\n\n${synopsis}\n(--help for more)\n`);
        process.exitCode = 2;
      } else if (error instanceof CliError) {
        process.stderr.write(`error: ${error.message}\n`);
        process.exitCode = 1;
      } else {
        process.stderr.write(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
        process.exitCode = 1;
      }
    },
  );
}
