import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UpstreamError } from '../../lib/errors.js';
import { createDirLedger } from '../../lib/ledger/dir-ledger.js';
import type { JobKey, Ledger } from '../../lib/ledger/ledger.js';

const AT = '2026-11-01T00:00:00.000Z';
const KEY: JobKey = { itemId: 'x', attempt: 1 };

/** Linux refuses paths of 4096 bytes or more (PATH_MAX) with ENAMETOOLONG. */
const PATH_MAX = 4096;

let base: string;
beforeEach(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'dir-ledger-edges-'));
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

/**
 * A ledger root whose path is `length` bytes long: folders can still be made there, but a
 * file name as long as a temp file's pushes the full path past PATH_MAX.
 */
async function rootOfLength(length: number): Promise<string> {
  let root = base;
  for (let left = length - root.length; left > 0; left = length - root.length) {
    if (left < 2) throw new Error(`cannot grow ${root} by a single byte`);
    // Folder names stay under NAME_MAX (255); the last two share what is left.
    const name = left > 300 ? 200 : left > 150 ? Math.ceil(left / 2) - 1 : left - 1;
    root = path.join(root, 'd'.repeat(name));
  }
  await mkdir(root, { recursive: true });
  return root;
}

async function ledgerErrorOf(promise: Promise<unknown>): Promise<UpstreamError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(UpstreamError);
  expect(error).toMatchObject({ service: 'ledger', retryable: true });
  return error as UpstreamError;
}

describe('a directory ledger whose files are not what it wrote', () => {
  let ledger: Ledger;
  beforeEach(() => {
    ledger = createDirLedger({ dir: base });
  });

  it('fails, retryable, to find the latest attempt when the item folder is a file', async () => {
    await mkdir(path.join(base, 'items'));
    await writeFile(path.join(base, 'items', 'x'), 'not a folder');

    const error = await ledgerErrorOf(ledger.latest('x'));

    expect(error.message).toBe(`ledger directory: list ${path.join(base, 'items', 'x')} failed (ENOTDIR)`);
    expect(error.code).toBe('ENOTDIR');
  });

  it('has no latest attempt when the item folder holds only stray entries', async () => {
    await mkdir(path.join(base, 'items', 'x', '01'), { recursive: true });
    await writeFile(path.join(base, 'items', 'x', 'notes.txt'), '');

    expect(await ledger.latest('x')).toBeUndefined();
  });

  it('ignores an attempt folder whose number is too large to count exactly', async () => {
    await ledger.claim({ itemId: 'x', attempt: 2 }, 'submitting', { at: AT });
    await mkdir(path.join(base, 'items', 'x', '99999999999999999999'));

    expect(await ledger.latest('x')).toEqual({ itemId: 'x', attempt: 2, submitting: { at: AT } });
  });

  it('fails, retryable, to read a fact it cannot open (a folder in its place)', async () => {
    await mkdir(path.join(base, 'items', 'x', '1', 'task.json'), { recursive: true });

    const error = await ledgerErrorOf(ledger.read(KEY));

    expect(error.message).toBe(`ledger directory: read ${path.join(base, 'items', 'x', '1', 'task.json')} failed (EISDIR)`);
  });

  it('fails, retryable, to claim a fact when the ledger folder is a file', async () => {
    const file = path.join(base, 'ledger');
    await writeFile(file, 'not a folder');

    const error = await ledgerErrorOf(createDirLedger({ dir: file }).claim(KEY, 'submitting', { at: AT }));

    expect(error.message).toBe(`ledger directory: mkdir ${path.join(file, 'items', 'x', '1')} failed (ENOTDIR)`);
  });
});

describe('a directory ledger that cannot write its files', () => {
  it('fails a claim as retryable, naming the OS error, and leaves the fact unclaimed', async () => {
    // The fact's path fits; its temp file's (about 45 bytes longer) does not.
    const root = await rootOfLength(PATH_MAX - 56);
    const ledger = createDirLedger({ dir: root });

    const error = await ledgerErrorOf(ledger.claim(KEY, 'submitting', { at: AT }));

    expect(error.message).toBe(`ledger directory: claim ${path.join(root, 'items', 'x', '1', 'submitting.json')} failed (ENAMETOOLONG)`);
    expect(error.code).toBe('ENAMETOOLONG');
    expect(await readdir(path.join(root, 'items', 'x', '1'))).toEqual([]);
  });

  it('fails to mark a slot as retryable, naming the OS error, and leaves no marker', async () => {
    const root = await rootOfLength(PATH_MAX - 56);
    const ledger = createDirLedger({ dir: root });

    const error = await ledgerErrorOf(ledger.markSlot(KEY, 'gen4_turbo'));

    expect(error.message).toBe(`ledger directory: write ${path.join(root, 'slots', 'gen4_turbo', 'x~1.json')} failed (ENAMETOOLONG)`);
    expect(await readdir(path.join(root, 'slots', 'gen4_turbo'))).toEqual([]);
  });

  it('fails the reachability check as retryable when its probe cannot be written', async () => {
    const root = await rootOfLength(PATH_MAX - 36);

    const error = await ledgerErrorOf(createDirLedger({ dir: root }).check());

    expect(error.message).toMatch(/^ledger directory: write .*\/\.check\.\d+\.[0-9a-f-]{36}\.tmp failed \(ENAMETOOLONG\)$/);
    expect(await readdir(root)).toEqual([]);
  });
});

describe('slot markers in a directory ledger', () => {
  let ledger: Ledger;
  const slots = (...parts: string[]): string => path.join(base, 'slots', ...parts);
  beforeEach(() => {
    ledger = createDirLedger({ dir: base });
  });

  it('fail to be marked when a folder holds the marker’s place, leaving no temp file', async () => {
    await mkdir(slots('gen4_turbo', 'x~1.json'), { recursive: true });

    const error = await ledgerErrorOf(ledger.markSlot(KEY, 'gen4_turbo'));

    expect(error.message).toBe(`ledger directory: write ${slots('gen4_turbo', 'x~1.json')} failed (EISDIR)`);
    expect(await readdir(slots('gen4_turbo'))).toEqual(['x~1.json']);
  });

  it('fail to be released when a folder holds the marker’s place', async () => {
    await mkdir(slots('gen4_turbo', 'x~1.json'), { recursive: true });

    const error = await ledgerErrorOf(ledger.releaseSlot(KEY, 'gen4_turbo'));

    expect(error.message).toBe(`ledger directory: remove ${slots('gen4_turbo', 'x~1.json')} failed (EISDIR)`);
  });

  it('leave out temp files a crash left behind', async () => {
    await ledger.markSlot(KEY, 'gen4_turbo');
    await writeFile(slots('gen4_turbo', 'y~1.json.123.abc.tmp'), '{}');

    expect((await ledger.slots(0)).inFlight.map((marker) => marker.model)).toEqual(['gen4_turbo']);
  });

  it('leave out stray files next to the model folders', async () => {
    await ledger.markSlot(KEY, 'veo3.1');
    await writeFile(slots('README'), 'not a model folder');

    expect((await ledger.slots(0)).inFlight.map((marker) => marker.model)).toEqual(['veo3.1']);
  });

  it('leave out a marker that is gone by the time it is looked at', async () => {
    await ledger.markSlot(KEY, 'gen4_turbo');
    await symlink(path.join(base, 'released-meanwhile'), slots('gen4_turbo', 'y~1.json'));

    expect((await ledger.slots(0)).inFlight).toHaveLength(1);
  });

  it('fail to be listed, retryable, when a model folder cannot be read', async () => {
    await mkdir(slots(), { recursive: true });
    await symlink(slots('loop'), slots('loop'));

    const error = await ledgerErrorOf(ledger.slots(0));

    expect(error.message).toBe(`ledger directory: list ${slots('loop')} failed (ELOOP)`);
  });
});
