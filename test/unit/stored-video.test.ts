import { describe, expect, it } from 'vitest';
import { storedVideoOf, type JobRecord } from '../../lib/ledger/ledger.js';

const AT = '2026-12-02T10:00:00.000Z';
const base: JobRecord = { itemId: 'item-1', attempt: 1, submitting: { at: AT } };

describe('where the ledger says an attempt\'s video is stored', () => {
  it('knows none before the upload', () => {
    expect(storedVideoOf(base)).toBeUndefined();
  });

  it('reads the claim of a completed report, written right after the upload', () => {
    const record: JobRecord = { ...base, reported: { status: 'completed', at: AT, video_storage_path: 'videos/item-1.mp4', video_bytes: 2_000_000 } };
    expect(storedVideoOf(record)).toEqual({ storage_path: 'videos/item-1.mp4', bytes: 2_000_000, at: AT });
  });

  it('counts an unknown size as 0 (a video found stored by an earlier delivery)', () => {
    const record: JobRecord = { ...base, reported: { status: 'completed', at: AT, video_storage_path: 'videos/item-1.mp4' } };
    expect(storedVideoOf(record)).toEqual({ storage_path: 'videos/item-1.mp4', bytes: 0, at: AT });
  });

  it('knows none from a failed report, or a completed one without a path', () => {
    expect(storedVideoOf({ ...base, reported: { status: 'failed', at: AT, error_message: 'runway: timed out after 600 s' } })).toBeUndefined();
    expect(storedVideoOf({ ...base, reported: { status: 'completed', at: AT } })).toBeUndefined();
  });

  it('reads the uploaded fact of a ledger written by an earlier version first', () => {
    const uploaded = { storage_path: 'videos/item-1.mp4', bytes: 7, at: AT };
    expect(storedVideoOf({ ...base, uploaded, reported: { status: 'completed', at: '2026-12-02T10:00:01.000Z', video_storage_path: 'videos/item-1.mp4' } })).toEqual(uploaded);
  });
});
