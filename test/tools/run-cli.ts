import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Runs one of the operator commands as a real child process, the way `npm run <name>`
 * does (`tsx tools/<name>.ts`), with only the environment given here.
 */

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const TSX = path.resolve('node_modules/.bin/tsx');
const CHILD_TIMEOUT_MS = 60_000;

export function runCli(script: 'check' | 'schedule', args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    execFile(
      TSX,
      [path.resolve(`tools/${script}.ts`), ...args],
      { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, timeout: CHILD_TIMEOUT_MS },
      (error, stdout, stderr) => {
        if (error === null) resolve({ code: 0, stdout, stderr });
        else if (typeof error.code === 'number') resolve({ code: error.code, stdout, stderr });
        else reject(new Error(`tools/${script}.ts did not exit by itself: ${error.message}\n${stderr}`));
      },
    );
  });
}

/** Writes a dotenv file: `NAME=value` lines, undefined values left out. */
export async function writeEnvFile(file: string, env: Record<string, string | undefined>): Promise<string> {
  const lines = Object.entries(env).flatMap(([name, value]) => (value === undefined ? [] : [`${name}=${value}`]));
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}
