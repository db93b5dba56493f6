import { assertReadWriteToken } from './blob-token.js';
import { createDirLedger } from './dir-ledger.js';
import type { Ledger } from './ledger.js';

export interface LedgerOptions {
  /** `BLOB_READ_WRITE_TOKEN`; when set, the ledger lives in Vercel Blob. */
  readonly blobToken?: string | undefined;
  /** `LEDGER_DIR`, used when there is no Blob token (local runs). */
  readonly ledgerDir: string;
}

/** Vercel Blob when a token is configured, else a local directory (design §4). */
export function createLedger(options: LedgerOptions): Ledger {
  const token = options.blobToken?.trim();
  return token ? loadOnFirstUse(token) : createDirLedger({ dir: options.ledgerDir });
}

/**
 * The Blob ledger, with Vercel Blob's SDK (and the undici it brings, ~15 MB resident)
 * imported on the first call rather than at start: a self-hosted server keeping its ledger
 * in a directory never loads it.
 */
function loadOnFirstUse(token: string): Ledger {
  assertReadWriteToken(token);
  let loading: Promise<Ledger> | undefined;
  const ledger = (): Promise<Ledger> => (loading ??= import('./blob-ledger.js').then(({ createBlobLedger }) => createBlobLedger({ token })));
  return {
    latest: async (itemId) => (await ledger()).latest(itemId),
    read: async (key, facts) => (await ledger()).read(key, facts),
    claim: async (key, fact, value) => (await ledger()).claim(key, fact, value),
    check: async () => (await ledger()).check(),
    markSlot: async (key, model) => (await ledger()).markSlot(key, model),
    releaseSlot: async (key, model) => (await ledger()).releaseSlot(key, model),
    markThrottled: async (model) => (await ledger()).markThrottled(model),
    clearThrottled: async (model) => (await ledger()).clearThrottled(model),
    slots: async (sinceMs) => (await ledger()).slots(sinceMs),
  };
}

export { createDirLedger, type DirLedgerOptions } from './dir-ledger.js';
export * from './ledger.js';
