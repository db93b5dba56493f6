import { readFile } from 'node:fs/promises';
import { parseEnv } from 'node:util';
import type { Env } from '../../lib/config.js';
import { UsageError } from './errors.js';

export interface LoadedEnv {
  readonly env: Env;
  /** Where the values came from, for the first line of a command's output. */
  readonly source: string;
  /** Variables set both in the file and in the environment: the environment's value is used. */
  readonly overridden: readonly string[];
}

/**
 * The environment, plus the variables of a dotenv file when one is given. As with Node's
 * own `--env-file`, a variable already set in the environment wins over the file.
 */
export async function loadEnv(envFile: string | undefined, environment: Env): Promise<LoadedEnv> {
  if (envFile === undefined) return { env: { ...environment }, source: 'the environment', overridden: [] };
  let text: string;
  try {
    text = await readFile(envFile, 'utf8');
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? String(error.code) : 'unreadable';
    throw new UsageError(`cannot read --env-file ${envFile} (${code})`);
  }
  const fromFile = parseEnv(text);
  const overridden = Object.keys(fromFile).filter((name) => (environment[name] ?? '') !== '');
  const env: Env = { ...fromFile };
  for (const [name, value] of Object.entries(environment)) if (value !== undefined && value !== '') env[name] = value;
  return { env, source: envFile, overridden };
}

/** The first line of a command's output: where its configuration came from (names only). */
export function describeSource(loaded: LoadedEnv): string {
  const also = loaded.overridden.length > 0 ? ` (set in the environment, which wins: ${loaded.overridden.join(', ')})` : '';
  return `configuration from ${loaded.source}${also}`;
}
