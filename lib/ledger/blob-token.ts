import { PermanentError } from '../errors.js';

/**
 * Refuses a `BLOB_READ_WRITE_TOKEN` that is not a read-write token, at start rather than on
 * the first Blob call: the SDK derives the store host for reads from its fourth `_` field.
 */
export function assertReadWriteToken(token: string): void {
  if (!/^vercel_blob_rw_[^_]+_./.test(token)) {
    throw new PermanentError('ledger', 'BLOB_READ_WRITE_TOKEN is not a read-write token (vercel_blob_rw_<store>_<secret>)');
  }
}
