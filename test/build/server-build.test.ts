import { readdir, readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildServer, PRODUCTION_NODE_FLAGS, type ServerBuild } from '../support/server-build.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const packageSchema = z.object({ scripts: z.record(z.string(), z.string()), dependencies: z.record(z.string(), z.string()) });

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
}

/** The package a bare specifier names: `@scope/name/sub` → `@scope/name`. */
const packageOf = (specifier: string): string => specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/');

describe('npm run build: the self-hosted server as compiled JavaScript', () => {
  let build: ServerBuild;
  let outDir: string;

  beforeAll(async () => {
    build = await buildServer();
    outDir = path.dirname(path.dirname(build.main));
  }, 120_000);

  afterAll(async () => {
    await build.remove();
  });

  it('emits the server and the library it runs, and nothing of the sandbox, the tools or the tests', async () => {
    expect((await readdir(outDir)).sort()).toEqual(['lib', 'server']);
    expect(build.main.endsWith(path.join('server', 'main.js'))).toBe(true);
  });

  it('needs nothing at run time but Node and the production dependencies', async () => {
    const pkg = packageSchema.parse(JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')));
    const allowed = new Set(Object.keys(pkg.dependencies));
    const builtins = new Set(builtinModules);
    const outside: string[] = [];
    for (const file of (await filesUnder(outDir)).filter((name) => name.endsWith('.js'))) {
      const source = await readFile(file, 'utf8');
      for (const match of source.matchAll(/(?:from\s*|import\s*\(\s*)['"]([^'"]+)['"]/g)) {
        const specifier = match[1] ?? '';
        if (specifier.startsWith('.')) {
          const target = path.resolve(path.dirname(file), specifier);
          if (!target.startsWith(outDir + path.sep)) outside.push(`${path.relative(outDir, file)} → ${specifier}`);
        } else if (!specifier.startsWith('node:') && !builtins.has(specifier) && !allowed.has(packageOf(specifier))) {
          outside.push(`${path.relative(outDir, file)} → ${specifier}`);
        }
      }
    }
    expect(outside).toEqual([]);
  });

  it('is started the same way by the Docker image and npm run serve, with node directly', async () => {
    const dockerfile = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    const cmd = z.array(z.string()).parse(JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)?.[1] ?? 'null'));
    expect(cmd).toEqual(['node', ...PRODUCTION_NODE_FLAGS, 'dist/server/main.js']);
    const pkg = packageSchema.parse(JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')));
    expect(pkg.scripts.serve).toBe(['node', ...PRODUCTION_NODE_FLAGS, 'dist/server/main.js'].join(' '));
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json');
  });

  it('ships an image holding the compiled output and production dependencies only', async () => {
    const dockerfile = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    const stages = dockerfile.split(/^FROM /m).slice(1);
    expect(stages).toHaveLength(2);
    const runtime = stages[1] ?? '';
    const copies = [...runtime.matchAll(/^COPY (.*)$/gm)].map((match) => match[1]);
    expect(copies).toEqual(['package.json package-lock.json ./', '--from=build /src/dist ./dist']);
    expect(runtime).toMatch(/npm ci --omit=dev/);
    expect(runtime).toMatch(/^HEALTHCHECK .*\/healthz/ms);
  });
});
