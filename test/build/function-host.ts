import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { z } from 'zod';
import { PROJECT_ROOT } from './build-copy.js';

/**
 * Serves the functions of a Build Output directory over HTTP from a plain Node process,
 * each wrapped the way Vercel's Node launcher wraps a function with web-standard exports:
 * the handler file named in its `.vc-config.json` is imported as it is (real ESM, its own
 * node_modules), `default` is unwrapped, each exported method (or `fetch` for all of them)
 * gets the request converted by `@edge-runtime/node-utils` with the CLI's Node builder's
 * own options, and a method the function does not export is answered 405.
 *
 * The functions run with the env given and nothing else. A deployment's functions are
 * pointed at the deployment's own URL; here that is the host's loopback address, known
 * once it listens, so it becomes `WORKER_BASE_URL` unless the env sets one.
 */

/** Plain JavaScript: runs in the child with no loader between it and the bundles. */
const HOST_SOURCE = String.raw`
import { readFile, readdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const { functionsDir, nodeUtils } = JSON.parse(process.argv[1]);
const { buildToNodeHandler } = (await import(pathToFileURL(nodeUtils).href)).default;

const HTTP_METHODS = ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'DELETE', 'PATCH'];

class LauncherRequest extends Request {
  constructor(input, init) {
    super(input, init === undefined || typeof init === 'object' ? { duplex: 'half', ...init } : init);
  }
}
class LauncherFetchEvent {
  waitUntil(promise) {
    promise.catch((error) => console.error('waitUntil promise rejected:', error));
  }
}
const toNodeHandler = buildToNodeHandler(
  { Headers, ReadableStream, Request: LauncherRequest, Uint8Array, FetchEvent: LauncherFetchEvent },
  { defaultOrigin: 'https://vercel.com' },
);

// An error thrown out of a function is Vercel's 500 FUNCTION_INVOCATION_FAILED.
const invocation = (route, handler) => async (request, event) => {
  try {
    return await handler(request, event);
  } catch (error) {
    console.error(route + ' threw:', error);
    return new Response('FUNCTION_INVOCATION_FAILED', { status: 500 });
  }
};

const methodNotAllowed = (_req, res) => {
  res.statusCode = 405;
  res.end();
};

async function loadFunction(route, dir) {
  const config = JSON.parse(await readFile(path.join(dir, '.vc-config.json'), 'utf8'));
  if (config.launcherType !== 'Nodejs') throw new Error(route + ': launcherType ' + config.launcherType + ', not Nodejs');
  Object.assign(process.env, config.environment ?? {});
  let listener = await import(pathToFileURL(path.join(dir, config.handler)).href);
  for (let i = 0; i < 5 && listener.default; i++) listener = listener.default;
  const methods = typeof listener.fetch === 'function'
    ? Object.fromEntries(HTTP_METHODS.map((method) => [method, listener.fetch]))
    : listener;
  const byMethod = new Map(
    HTTP_METHODS.filter((method) => typeof methods[method] === 'function')
      .map((method) => [method, toNodeHandler(invocation(route, methods[method]))]),
  );
  if (byMethod.size === 0) throw new Error(route + ': ' + config.handler + ' exports no web handler');
  return { handler: config.handler, methods: [...byMethod.keys()], serve: (req, res) => (byMethod.get(req.method) ?? methodNotAllowed)(req, res) };
}

async function findFunctions(dir, route) {
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    if (entry.name.endsWith('.func')) found.push([route + '/' + entry.name.slice(0, -'.func'.length), path.join(dir, entry.name)]);
    else found.push(...(await findFunctions(path.join(dir, entry.name), route + '/' + entry.name)));
  }
  return found;
}

const functions = new Map();
for (const [route, dir] of await findFunctions(functionsDir, '')) functions.set(route, await loadFunction(route, dir));

const server = createServer((req, res) => {
  const fn = functions.get(new URL(req.url ?? '/', 'http://function-host').pathname);
  if (fn) return fn.serve(req, res);
  res.statusCode = 404;
  res.end('NOT_FOUND');
});
server.listen(0, '127.0.0.1', () => {
  const url = 'http://127.0.0.1:' + server.address().port;
  process.env.WORKER_BASE_URL ??= url;
  const routes = Object.fromEntries([...functions].map(([route, fn]) => [route, { handler: fn.handler, methods: fn.methods }]));
  process.send({ url, routes });
});
// Gone with the process that started it.
process.on('disconnect', () => process.exit(0));
`;

const readySchema = z.object({
  url: z.string(),
  routes: z.record(z.string(), z.object({ handler: z.string(), methods: z.array(z.string()) })),
});

export interface FunctionHost {
  readonly url: string;
  /** Per route (`/api/cron-poll`): the handler file from `.vc-config.json` and the methods it serves. */
  readonly routes: z.infer<typeof readySchema>['routes'];
  readonly pid: number;
  /** What the functions wrote to stdout and stderr so far (their logs). */
  output(): string;
  close(): Promise<void>;
}

/** The request conversion the CLI's Node builder (`@vercel/node`) uses for web handlers. */
function nodeUtilsPath(): string {
  const fromProject = createRequire(path.join(PROJECT_ROOT, 'package.json'));
  const fromVercelCli = createRequire(fromProject.resolve('vercel/package.json'));
  const fromNodeBuilder = createRequire(fromVercelCli.resolve('@vercel/node'));
  return fromNodeBuilder.resolve('@edge-runtime/node-utils');
}

export async function startFunctionHost(options: {
  /** `.vercel/output/functions`. */
  readonly functionsDir: string;
  readonly env: Readonly<Record<string, string>>;
}): Promise<FunctionHost> {
  const config = JSON.stringify({ functionsDir: options.functionsDir, nodeUtils: nodeUtilsPath() });
  const child = spawn(process.execPath, ['--input-type=module', '-e', HOST_SOURCE, config], {
    cwd: options.functionsDir,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const ready = await new Promise<unknown>((resolve, reject) => {
    child.once('message', resolve);
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      reject(new Error(`the function host exited (${String(code ?? signal)}) before listening:\n${output}`)),
    );
  });
  const { url, routes } = readySchema.parse(ready);
  const pid = child.pid;
  if (pid === undefined) throw new Error('the function host has no pid');

  return {
    url,
    routes,
    pid,
    output: () => output,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
