import { execFile } from 'node:child_process';
import { readFile, readdir, lstat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { z } from 'zod';
import { buildCopyOfProject } from '../../test/build/build-copy.js';
import { median, type Print } from './stats.js';

/**
 * Cold start of each function as `vercel build` bundles it: a fresh `node` process imports
 * the handler named in the function's `.vc-config.json`, nothing else, and reports how long
 * the import took and its resident memory after it. A second kind of child imports the same
 * handler with a resolve hook and lists every file it loaded, to show which heavy packages a
 * cold start pays for before it handles anything. Not the Vercel launcher: no helpers, no
 * source-map support, and the local Node rather than the runtime the bundle declares.
 */

const run = promisify(execFile);
const MB = 1024 * 1024;
const ROUNDS = 5;
const FUNCTIONS = ['cron-poll', 'runway-callback', 'step-upload'] as const;
type FunctionName = (typeof FUNCTIONS)[number];

/** Packages whose load time or memory shows in a cold start. */
export const HEAVY_PACKAGES = ['sharp', '@vercel/blob', '@upstash/qstash', 'undici', 'pino', 'zod', 'image-size', 'jose'] as const;
/** Imported on first use by the code that needs them, so importing a handler must not load them. */
export const LAZY_PACKAGES = ['sharp', '@vercel/blob', '@upstash/qstash'] as const;

/** An empty module: the baseline child pays for one import and nothing in it. */
const EMPTY_MODULE_URL = 'data:text/javascript,';

/** Plain JavaScript: runs in the child with no loader between it and the bundle. */
const TIMING_CHILD_SOURCE = String.raw`
const url = process.argv[1];
const started = performance.now();
await import(url);
const importMs = performance.now() - started;
const rssBytes = process.memoryUsage().rss;
process.stdout.write(JSON.stringify({ importMs, rssBytes }) + '\n', () => process.exit(0));
`;

/**
 * Records every URL the ESM loader resolves (on the hooks thread) and, after the import,
 * the CommonJS modules in the require cache: on Node 20 a CommonJS package's own
 * `require` calls bypass the ESM hooks, so the hook alone would miss pino's insides.
 */
const HOOKS_SOURCE = String.raw`
const resolved = [];
export function initialize({ port }) {
  port.on('message', () => port.postMessage(resolved));
  port.unref();
}
export async function resolve(specifier, context, nextResolve) {
  const result = await nextResolve(specifier, context);
  resolved.push(result.url);
  return result;
}
`;

const LOADED_CHILD_SOURCE = String.raw`
import { createRequire, register } from 'node:module';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { MessageChannel } from 'node:worker_threads';

const { port1, port2 } = new MessageChannel();
register('data:text/javascript,' + encodeURIComponent(process.argv[2]), { data: { port: port2 }, transferList: [port2] });
await import(process.argv[1]);
port1.postMessage('list');
const [resolved] = await once(port1, 'message');
port1.close();
const esm = resolved.filter((url) => url.startsWith('file:')).map((url) => fileURLToPath(url));
const cjs = Object.keys(createRequire(import.meta.url).cache);
process.stdout.write(JSON.stringify({ files: [...new Set([...esm, ...cjs])] }) + '\n', () => process.exit(0));
`;

const timingSchema = z.object({ importMs: z.number(), rssBytes: z.number() });
const loadedSchema = z.object({ files: z.array(z.string()) });
const vcConfigSchema = z.object({ handler: z.string(), runtime: z.string() });

/** The package a file belongs to (`@scope/name` or `name`), from its last `node_modules/`; undefined outside one. */
export function packageOf(file: string): string | undefined {
  const parts = file.split(/[\\/]/);
  const at = parts.lastIndexOf('node_modules');
  if (at === -1) return undefined;
  const first = parts[at + 1];
  if (first === undefined || first === '') return undefined;
  if (!first.startsWith('@')) return first;
  const second = parts[at + 2];
  return second === undefined || second === '' ? undefined : `${first}/${second}`;
}

/** Files loaded per package, largest count first, then by name. */
export function filesPerPackage(files: readonly string[]): [name: string, files: number][] {
  const counts = new Map<string, number>();
  for (const file of files) {
    const name = packageOf(file);
    if (name !== undefined) counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}


/** What a child needs: the function's own directory as its cwd, and no env beyond what Vercel sets for every function. */
const childEnv = { PATH: process.env.PATH ?? '', NODE_ENV: 'production' };

interface ChildTiming {
  readonly importMs: number;
  readonly rssBytes: number;
  /** Spawn to exit, as the parent saw it: Node's own start-up plus the import. */
  readonly processMs: number;
}

async function timeImport(url: string, cwd: string): Promise<ChildTiming> {
  const started = performance.now();
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', TIMING_CHILD_SOURCE, url], { cwd, env: childEnv, maxBuffer: MB });
  const processMs = performance.now() - started;
  return { ...timingSchema.parse(JSON.parse(stdout.trim().split('\n').pop() ?? '{}')), processMs };
}

async function filesLoadedByImport(url: string, cwd: string): Promise<string[]> {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', LOADED_CHILD_SOURCE, url, HOOKS_SOURCE], {
    cwd,
    env: childEnv,
    maxBuffer: 16 * MB,
  });
  return loadedSchema.parse(JSON.parse(stdout.trim().split('\n').pop() ?? '{}')).files;
}

/** Files (and symlinks) under a directory, and their bytes. */
async function filesUnder(dir: string): Promise<{ count: number; bytes: number }> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  let count = 0;
  let bytes = 0;
  for (const entry of entries) {
    if (entry.isDirectory()) continue;
    count += 1;
    bytes += (await lstat(path.join(entry.parentPath, entry.name))).size;
  }
  return { count, bytes };
}

interface BundledFunction {
  readonly name: FunctionName;
  readonly key: string;
  readonly dir: string;
  readonly handlerUrl: string;
  readonly runtime: string;
}

async function bundledFunction(output: string, name: FunctionName): Promise<BundledFunction> {
  const dir = path.join(output, `functions/api/${name}.func`);
  const config = vcConfigSchema.parse(JSON.parse(await readFile(path.join(dir, '.vc-config.json'), 'utf8')));
  return { name, key: name.replaceAll('-', '_'), dir, handlerUrl: pathToFileURL(path.join(dir, config.handler)).href, runtime: config.runtime };
}

export async function benchColdStart(print: Print): Promise<void> {
  const build = await buildCopyOfProject();
  try {
    const functions = await Promise.all(FUNCTIONS.map((name) => bundledFunction(build.output, name)));
    const runtimes = [...new Set(functions.map((fn) => fn.runtime))].join(', ');
    print('cold_node', `${process.version} here (the bundles declare ${runtimes}); ${ROUNDS} fresh processes each, median`);

    const baseline: ChildTiming[] = [];
    const timings = new Map<FunctionName, ChildTiming[]>(FUNCTIONS.map((name) => [name, []]));
    // Rounds interleave the functions, so a busy moment on the machine is shared out.
    for (let round = 0; round < ROUNDS; round++) {
      baseline.push(await timeImport(EMPTY_MODULE_URL, build.dir));
      for (const fn of functions) timings.get(fn.name)?.push(await timeImport(fn.handlerUrl, fn.dir));
    }
    print('cold_import_ms_baseline', median(baseline.map((t) => t.importMs)), 'ms');
    print('cold_import_rss_mb_baseline', median(baseline.map((t) => t.rssBytes)) / MB, 'MB');
    print('cold_process_ms_baseline', median(baseline.map((t) => t.processMs)), 'ms');

    for (const fn of functions) {
      const runs = timings.get(fn.name) ?? [];
      const bundle = await filesUnder(path.join(fn.dir, 'node_modules'));
      const loaded = filesPerPackage(await filesLoadedByImport(fn.handlerUrl, fn.dir));
      const loadedCount = new Map(loaded);
      print(`cold_import_ms_${fn.key}`, median(runs.map((t) => t.importMs)), 'ms');
      print(`cold_import_rss_mb_${fn.key}`, median(runs.map((t) => t.rssBytes)) / MB, 'MB');
      print(`cold_process_ms_${fn.key}`, median(runs.map((t) => t.processMs)), 'ms');
      print(`cold_bundle_files_${fn.key}`, bundle.count, 'files');
      print(`cold_bundle_node_modules_mb_${fn.key}`, bundle.bytes / MB, 'MB');
      print(`cold_import_loaded_files_${fn.key}`, loaded.reduce((sum, [, files]) => sum + files, 0), `files from ${loaded.length} packages`);
      const heavy = HEAVY_PACKAGES.filter((name) => loadedCount.has(name));
      for (const name of heavy) print(`cold_heavy_module_${fn.key}`, `${name} (${loadedCount.get(name) ?? 0} files)`);
      if (heavy.length === 0) print(`cold_heavy_module_${fn.key}`, 'none');
      const lazyLoaded = LAZY_PACKAGES.filter((name) => loadedCount.has(name));
      print(
        `cold_lazy_check_${fn.key}`,
        lazyLoaded.length === 0 ? `ok (${LAZY_PACKAGES.join(', ')} not loaded at import)` : `LOADED at import: ${lazyLoaded.join(', ')}`,
      );
    }
  } finally {
    await build.remove();
  }
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  await benchColdStart((name, value, unit = '') => {
    process.stdout.write(`${name}: ${typeof value === 'number' ? Number(value.toFixed(2)) : value}${unit ? ` ${unit}` : ''}\n`);
  });
}
