import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDirLedger } from '../../lib/ledger/dir-ledger.js';
import { createLedger } from '../../lib/ledger/index.js';
import { ledgerContract } from './ledger-contract.js';

async function makeTempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'dir-ledger-'));
}

ledgerContract('directory', async () => {
  const dir = await makeTempDir();
  return {
    ledger: createDirLedger({ dir: path.join(dir, 'ledger') }),
    close: () => rm(dir, { recursive: true, force: true }),
    async writeRaw(pathname, text) {
      const file = path.join(dir, 'ledger', ...pathname.split('/'));
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, text);
    },
  };
});

describe('directory ledger on disk', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stores each fact as JSON at items/<segment>/<attempt>/<fact>.json', async () => {
    const ledger = createDirLedger({ dir });
    await ledger.claim({ itemId: 'a/b.c', attempt: 3 }, 'reported', { status: 'completed', at: 'now' });
    const file = path.join(dir, 'items', 'a%2Fb%2Ec', '3', 'reported.json');
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ status: 'completed', at: 'now' });
  });

  it('leaves no temp files behind after winning and losing claims', async () => {
    const ledger = createDirLedger({ dir });
    const key = { itemId: 'item', attempt: 1 };
    await Promise.all(Array.from({ length: 10 }, () => ledger.claim(key, 'submitting', { at: 'now' })));
    expect(await readdir(path.join(dir, 'items', 'item', '1'))).toEqual(['submitting.json']);
  });

  it('ignores stray entries that are not attempt numbers', async () => {
    const ledger = createDirLedger({ dir });
    await ledger.claim({ itemId: 'item', attempt: 2 }, 'submitting', { at: 'now' });
    await mkdir(path.join(dir, 'items', 'item', '07'));
    await writeFile(path.join(dir, 'items', 'item', '99.tmp'), '');
    expect((await ledger.latest('item'))?.attempt).toBe(2);
  });

  it('creates the ledger directory on check', async () => {
    const ledger = createDirLedger({ dir: path.join(dir, 'deep', 'er') });
    await ledger.check();
    expect(await readdir(path.join(dir, 'deep', 'er'))).toEqual([]);
  });
});

describe('createLedger without a Blob token', () => {
  it('keeps facts in the ledger directory', async () => {
    const dir = await makeTempDir();
    try {
      const ledger = createLedger({ blobToken: '  ', ledgerDir: dir });
      await ledger.claim({ itemId: 'x', attempt: 1 }, 'submitting', { at: 'now' });
      expect(await readdir(path.join(dir, 'items'))).toEqual(['x']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
