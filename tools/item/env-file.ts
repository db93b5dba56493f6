import { readFile } from 'node:fs/promises';

/**
 * `KEY=value` lines of an env file (`export` allowed, `#` comments, values optionally in
 * single or double quotes, no `${}` expansion), as `.env` files for this worker are written.
 */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) continue;
    const [, key = '', value = ''] = match;
    env[key] = unquote(value);
  }
  return env;
}

function unquote(value: string): string {
  const quote = value[0];
  if ((quote === '"' || quote === "'") && value.length >= 2 && value.endsWith(quote)) return value.slice(1, -1);
  // An unquoted value ends at a comment.
  return value.replace(/\s+#.*$/, '');
}

/** The file's variables under the ones already set: what the shell says wins. */
export async function withEnvFile(env: Record<string, string | undefined>, file: string): Promise<Record<string, string | undefined>> {
  return { ...parseEnvFile(await readFile(file, 'utf8')), ...definedOnly(env) };
}

function definedOnly(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}
