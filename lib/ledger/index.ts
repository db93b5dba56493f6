import { createBlobLedger } from './blob-ledger.js';
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
  return token ? createBlobLedger({ token }) : createDirLedger({ dir: options.ledgerDir });
}

export { BLOB_ADVANCED_OPS_PER_VIDEO, SLOT_LISTS_PER_CRON_RUN, createBlobLedger, type BlobLedgerOptions } from './blob-ledger.js';
export { createDirLedger, type DirLedgerOptions } from './dir-ledger.js';
export * from './ledger.js';
