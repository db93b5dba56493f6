import { randomUUID } from 'node:crypto';
import { link, mkdir, open, readFile, readdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { PermanentError, UpstreamError } from '../errors.js';
import {
  factPath,
  itemPrefix,
  parseAttempt,
  parseFact,
  parseGeneration,
  readRecord,
  slotPath,
  slotsViewOf,
  SLOTS_PREFIX,
  throttledPath,
  type FactName,
  type JobKey,
  type JobRecord,
  type Ledger,
} from './ledger.js';

export interface DirLedgerOptions {
  /** Root directory (`LEDGER_DIR`); created on first write. */
  readonly dir: string;
}

/**
 * The ledger as plain files under one directory, for local runs.
 *
 * A claim writes the JSON to a temp file in the fact's own directory and then `link()`s it
 * to the final name. `link` fails with EEXIST when the name is taken, so it is an atomic
 * create-if-absent, and the final name only ever points at a complete file: a reader can
 * never see a half-written fact, and a crash mid-write leaves a stray temp file instead of
 * an empty, forever-claimed fact. (`open(path, 'wx')` followed by a write would expose the
 * empty file between the two calls and keep it after a crash.)
 */
export function createDirLedger(options: DirLedgerOptions): Ledger {
  const root = path.resolve(options.dir);
  const toFile = (relative: string): string => path.join(root, ...relative.split('/'));

  async function readRaw(file: string): Promise<unknown> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw ledgerError(`read ${file}`, error);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return undefined;
    }
  }

  async function read(key: JobKey, facts?: readonly FactName[]): Promise<JobRecord> {
    return readRecord(key, (fact) => readRaw(toFile(factPath(key, fact))), facts);
  }

  return {
    async latest(itemId) {
      const itemDir = toFile(itemPrefix(itemId));
      let entries: string[];
      try {
        entries = await readdir(itemDir);
      } catch (error) {
        if (errorCode(error) === 'ENOENT') return undefined;
        throw ledgerError(`list ${itemDir}`, error);
      }
      const attempts = entries.map(parseAttempt).filter((n): n is number => n !== undefined);
      if (attempts.length === 0) return undefined;
      const attempt = Math.max(...attempts);
      const [record, generation] = await Promise.all([read({ itemId, attempt }), latestGeneration(itemDir, attempt)]);
      return generation > 1 ? { ...record, latestGeneration: generation } : record;
    },

    read,

    async claim(key, fact, value) {
      const file = toFile(factPath(key, fact));
      const json = serializeFact(fact, value);
      await mkdirOrThrow(path.dirname(file));
      const temp = `${file}.${process.pid}.${randomUUID()}.tmp`;
      try {
        await writeDurably(temp, json);
        await link(temp, file);
        return true;
      } catch (error) {
        if (errorCode(error) === 'EEXIST') return false;
        throw ledgerError(`claim ${file}`, error);
      } finally {
        await unlink(temp).catch(() => undefined);
      }
    },

    async markSlot(key, model) {
      await writeReplacing(toFile(slotPath(key, model)), '{}');
    },

    async releaseSlot(key, model) {
      await removeIfPresent(toFile(slotPath(key, model)));
    },

    async markThrottled(model) {
      await writeReplacing(toFile(throttledPath(model)), '{}');
    },

    async clearThrottled(model) {
      await removeIfPresent(toFile(throttledPath(model)));
    },

    async slots(sinceMs) {
      const root = toFile(SLOTS_PREFIX);
      const entries: { pathname: string; atMs: number }[] = [];
      for (const folder of await listOrEmpty(root)) {
        for (const name of await listOrEmpty(path.join(root, folder))) {
          if (name.endsWith('.tmp')) continue;
          const info = await stat(path.join(root, folder, name)).catch(() => undefined);
          if (info) entries.push({ pathname: `${SLOTS_PREFIX}${folder}/${name}`, atMs: info.mtimeMs });
        }
      }
      const { view, stale } = slotsViewOf(entries, sinceMs);
      await Promise.all(stale.map((pathname) => removeIfPresent(toFile(pathname))));
      return view;
    },

    async check() {
      await mkdirOrThrow(root);
      const probe = path.join(root, `.check.${process.pid}.${randomUUID()}.tmp`);
      try {
        await writeDurably(probe, '{}');
      } catch (error) {
        throw ledgerError(`write ${probe}`, error);
      } finally {
        await unlink(probe).catch(() => undefined);
      }
    },
  };
}

/** The highest generation folder (`gen-<n>`) of an attempt, 1 when there is none. */
async function latestGeneration(itemDir: string, attempt: number): Promise<number> {
  const entries = await listOrEmpty(path.join(itemDir, String(attempt)));
  return Math.max(1, ...entries.map(parseGeneration).filter((n): n is number => n !== undefined));
}

async function listOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return [];
    throw ledgerError(`list ${dir}`, error);
  }
}

/** Writes a small file in place of any older one (temp file, then rename: never half-written). */
async function writeReplacing(file: string, text: string): Promise<void> {
  await mkdirOrThrow(path.dirname(file));
  const temp = `${file}.${process.pid}.${randomUUID()}.tmp`;
  try {
    await writeDurably(temp, text);
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw ledgerError(`write ${file}`, error);
  }
}

async function removeIfPresent(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw ledgerError(`remove ${file}`, error);
  }
}

function serializeFact<N extends FactName>(fact: N, value: unknown): string {
  const parsed = parseFact(fact, value);
  if (parsed === undefined) throw new PermanentError('ledger', `invalid ${fact} fact`);
  return JSON.stringify(parsed);
}

async function writeDurably(file: string, text: string): Promise<void> {
  const handle = await open(file, 'wx');
  try {
    await handle.writeFile(text, 'utf8');
    // Flushed before the link so a machine crash cannot leave a linked but empty fact.
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function mkdirOrThrow(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw ledgerError(`mkdir ${dir}`, error);
  }
}

function errorCode(error: unknown): string | undefined {
  if (error instanceof Error && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

function ledgerError(action: string, cause: unknown): UpstreamError {
  const code = errorCode(cause);
  return new UpstreamError('ledger', `ledger directory: ${action} failed${code ? ` (${code})` : ''}`, {
    retryable: true,
    code,
    cause,
  });
}
