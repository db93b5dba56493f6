import { pino } from 'pino';
import { ConfigError, parseConfig, type Env } from '../../lib/config.js';
import { itemViewSchema, type ItemView } from '../../lib/decide/item-view.js';
import { createLedger } from '../../lib/ledger/index.js';
import { createDeps } from '../../lib/runtime.js';
import { lookupItem, lookupSourcesOf, type LookupResult, type LookupSources } from '../../lib/steps/item-lookup.js';
import { withEnvFile } from './env-file.js';
import { formatItem } from './format.js';

/**
 * `npm run item -- <item_id> [--url https://<deployment>] [--env-file path] [--json]`: what the
 * ledger knows of one item. Without `--url` it reads the ledger of this environment directly
 * (and asks Runway about the tasks still open); with it, it asks the deployment's
 * `/api/cron-poll?item=` with `CRON_SECRET`.
 */

export const USAGE = `usage: npm run item -- <item_id> [--url https://<deployment>] [--env-file <path>] [--json]

  <item_id>         the app's item id
  --url <url>       ask a deployment (GET /api/cron-poll?item=, with CRON_SECRET) instead of
                    reading the ledger of this environment (LEDGER_DIR or BLOB_READ_WRITE_TOKEN)
  --env-file <path> read the environment from this file too (variables already set win)
  --json            print the lookup as JSON
`;

export interface CliIo {
  readonly argv: readonly string[];
  readonly env: Env;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** Exit codes: 0 found, 1 unknown item or a failed lookup, 2 a usage error. */
const FOUND = 0;
const FAILED = 1;
const USAGE_ERROR = 2;

const LOOKUP_TIMEOUT_MS = 60_000;

interface Options {
  readonly itemId: string;
  readonly url: string | undefined;
  readonly envFile: string | undefined;
  readonly json: boolean;
}

type Parsed = { readonly kind: 'options'; readonly options: Options } | { readonly kind: 'help' } | { readonly kind: 'error'; readonly message: string };

function parseArgs(argv: readonly string[]): Parsed {
  const positional: string[] = [];
  const values: { url?: string; envFile?: string } = {};
  let json = false;
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index] ?? '';
    if (arg === '-h' || arg === '--help') return { kind: 'help' };
    if (arg === '--json') {
      json = true;
      continue;
    }
    const [name, inline] = arg.startsWith('--') ? splitOption(arg) : [undefined, undefined];
    if (name === '--url' || name === '--env-file') {
      const value = inline ?? argv[++index];
      if (value === undefined || value === '') return { kind: 'error', message: `${name} needs a value` };
      if (name === '--url') values.url = value;
      else values.envFile = value;
      continue;
    }
    if (arg.startsWith('-')) return { kind: 'error', message: `unknown option ${arg}` };
    positional.push(arg);
  }
  const [itemId, ...extra] = positional;
  if (itemId === undefined) return { kind: 'error', message: 'the item id is missing' };
  if (extra.length > 0) return { kind: 'error', message: `one item id at a time (also got ${extra.join(' ')})` };
  return { kind: 'options', options: { itemId, url: values.url, envFile: values.envFile, json } };
}

function splitOption(arg: string): [string, string | undefined] {
  const equals = arg.indexOf('=');
  return equals === -1 ? [arg, undefined] : [arg.slice(0, equals), arg.slice(equals + 1)];
}

const silent = pino({ level: 'silent' });

/**
 * Where the lookup reads from: this environment's full configuration, or, when it is
 * incomplete, just its ledger (Runway then goes unasked, and the answer says why).
 */
function localSources(env: Env): LookupSources | { readonly problem: string } {
  try {
    return lookupSourcesOf(createDeps(parseConfig(env), { log: silent }));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const ledgerDir = env.LEDGER_DIR?.trim();
    const blobToken = env.BLOB_READ_WRITE_TOKEN?.trim();
    if (!ledgerDir && !blobToken) {
      return { problem: `${error.message}\nSet LEDGER_DIR or BLOB_READ_WRITE_TOKEN to read a ledger without the rest.` };
    }
    return {
      ledger: createLedger({ ledgerDir: ledgerDir ?? '', ...(blobToken ? { blobToken } : {}) }),
      runway: undefined,
      runwayUnavailable: `the configuration is incomplete: ${error.problems.join('; ')}`,
      audio: env.RUNWAY_AUDIO === 'true' || env.RUNWAY_AUDIO === '1' || env.RUNWAY_AUDIO === 'yes',
    };
  }
}

/** The deployment's answer to `?item=`, as a lookup result (errors other than 404/400 thrown as text). */
async function remoteLookup(baseUrl: string, itemId: string, env: Env): Promise<LookupResult> {
  const secret = env.CRON_SECRET?.trim();
  if (!secret) throw new Error('CRON_SECRET is not set: --url needs it to ask the deployment');
  let target: URL;
  try {
    target = new URL(`${baseUrl.replace(/\/+$/, '')}/api/cron-poll`);
  } catch {
    throw new Error(`--url is not a URL: ${baseUrl}`);
  }
  if (target.protocol !== 'https:' && target.protocol !== 'http:') throw new Error(`--url must be http(s): ${baseUrl}`);
  target.searchParams.set('item', itemId);
  const response = await fetch(target, {
    headers: { authorization: `Bearer ${secret}` },
    signal: AbortSignal.timeout(LOOKUP_TIMEOUT_MS),
  });
  const text = await response.text();
  const body = parseJson(text);
  if (response.status === 200) {
    const item = itemViewSchema.safeParse(body);
    if (!item.success) throw new Error(`${target.origin} answered 200 with something other than an item lookup`);
    return { kind: 'found', item: item.data };
  }
  const detail = detailOf(body) ?? text.slice(0, 300);
  if (response.status === 404) return { kind: 'unknown', detail };
  if (response.status === 400) return { kind: 'invalid', detail };
  throw new Error(`${target.origin} answered ${response.status}: ${detail}`);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function detailOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || !('detail' in body)) return undefined;
  return typeof body.detail === 'string' ? body.detail : undefined;
}

function print(io: CliIo, item: ItemView, json: boolean): void {
  io.stdout(json ? `${JSON.stringify(item, null, 2)}\n` : formatItem(item));
}

export async function runItemCli(io: CliIo): Promise<number> {
  const parsed = parseArgs(io.argv);
  if (parsed.kind === 'help') {
    io.stdout(USAGE);
    return FOUND;
  }
  if (parsed.kind === 'error') {
    io.stderr(`${parsed.message}\n\n${USAGE}`);
    return USAGE_ERROR;
  }
  const { options } = parsed;
  let env = io.env;
  if (options.envFile !== undefined) {
    try {
      env = await withEnvFile(io.env, options.envFile);
    } catch (error) {
      io.stderr(`cannot read --env-file ${options.envFile}: ${error instanceof Error ? error.message : String(error)}\n`);
      return USAGE_ERROR;
    }
  }
  let result: LookupResult;
  try {
    if (options.url !== undefined) {
      result = await remoteLookup(options.url, options.itemId, env);
    } else {
      const sources = localSources(env);
      if ('problem' in sources) {
        io.stderr(`${sources.problem}\n`);
        return FAILED;
      }
      result = await lookupItem(sources, options.itemId);
    }
  } catch (error) {
    io.stderr(`lookup failed: ${error instanceof Error ? error.message : String(error)}\n`);
    return FAILED;
  }
  switch (result.kind) {
    case 'found':
      print(io, result.item, options.json);
      return FOUND;
    case 'unknown':
      io.stderr(`${result.detail}\n`);
      return FAILED;
    case 'invalid':
      io.stderr(`${result.detail}\n`);
      return USAGE_ERROR;
  }
}
