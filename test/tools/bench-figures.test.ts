import { describe, expect, it } from 'vitest';
import { filesPerPackage, packageOf } from '../../tools/bench/cold-start.js';
import { labelRuns } from '../../tools/bench/pickup.js';
import { median, percentile } from '../../tools/bench/stats.js';

describe('the package a loaded file belongs to', () => {
  it('is the directory after the last node_modules, with its scope', () => {
    expect(packageOf('/f/node_modules/zod/v4/core/index.js')).toBe('zod');
    expect(packageOf('/f/node_modules/@vercel/blob/dist/index.js')).toBe('@vercel/blob');
    expect(packageOf('/f/node_modules/@vercel/oidc/node_modules/jose/dist/index.js')).toBe('jose');
  });

  it('is undefined for the function\'s own files and for a bare scope', () => {
    expect(packageOf('/f/lib/handlers/cron-poll.js')).toBeUndefined();
    expect(packageOf('/f/node_modules/@vercel')).toBeUndefined();
  });

  it('counts files per package, most first', () => {
    const files = ['/f/node_modules/pino/a.js', '/f/node_modules/zod/a.js', '/f/node_modules/zod/b.js', '/f/api/x.js'];
    expect(filesPerPackage(files)).toEqual([
      ['zod', 2],
      ['pino', 1],
    ]);
  });
});

describe('figures over rounds', () => {
  it('takes the middle value, or the mean of the two middle ones', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('takes percentiles by nearest rank', () => {
    const values = Array.from({ length: 50 }, (_, i) => i + 1);
    expect(percentile(values, 0.5)).toBe(25);
    expect(percentile(values, 0.95)).toBe(48);
    expect(percentile(values, 1)).toBe(50);
    expect(percentile([], 0.95)).toBeNaN();
  });
});

describe('which call started each cron-poll run', () => {
  it('is the latest trigger at or before the run\'s start, each used once', () => {
    const triggers = [
      { kind: 'cron', atMs: 1000 },
      { kind: 'drain', atMs: 6000 },
      { kind: 'drain', atMs: 11_000 },
    ] as const;
    expect(labelRuns([1005, 6010, 6500, 11_002], triggers)).toEqual(['cron', 'drain', 'unknown', 'drain']);
  });
});
