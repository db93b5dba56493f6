import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { describeError, prettyLine } from '../../lib/log.js';

const LOG_MODULE = fileURLToPath(new URL('../../lib/log.ts', import.meta.url));
const NOON = Date.UTC(2026, 10, 1, 12, 34, 56);

const clockNow = (): string => new Date().toISOString().slice(11, 19);

describe('the logger with no destination given, as deployed', () => {
  it('writes one redacted JSON line per record to standard output', async () => {
    const script = `
      import { createLogger } from ${JSON.stringify(LOG_MODULE)};
      const log = createLogger({ level: 'info', secrets: ['key_live_0123456789'] });
      log.debug('below the level');
      log.info({ item_id: 'item-1' }, 'calling with key_live_0123456789 and https://x.test/p.jpg?token=abc');
    `;

    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script], { timeout: 20_000 });

    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({
      level: 'info',
      item_id: 'item-1',
      msg: 'calling with [redacted] and https://x.test/p.jpg?token=[redacted]',
    });
  });
});

describe('a pretty log line', () => {
  it('is the line itself when it is not JSON', () => {
    expect(prettyLine('plain text, not a record\n')).toBe('plain text, not a record\n');
  });

  it('shows the time, level and message, and no fields when there are none', () => {
    expect(prettyLine(JSON.stringify({ level: 50, time: NOON, msg: 'upload failed', pid: 1, hostname: 'h' }))).toBe('12:34:56 ERROR upload failed\n');
  });

  it('shows INFO for a level it has no name for, and for a level that is not a number', () => {
    expect(prettyLine(JSON.stringify({ level: 35, time: NOON, msg: 'm' }))).toBe('12:34:56 INFO  m\n');
    expect(prettyLine(JSON.stringify({ level: 'warn', time: NOON, msg: 'm' }))).toBe('12:34:56 INFO  m\n');
  });

  it('shows no message when msg is not text', () => {
    expect(prettyLine(JSON.stringify({ level: 30, time: NOON, msg: 42, item_id: 'i' }))).toBe('12:34:56 INFO    item_id=i\n');
  });

  it('uses the current time when the record has none', () => {
    const before = clockNow();
    const line = prettyLine(JSON.stringify({ level: 40, msg: 'no time' }));
    const after = clockNow();

    expect([`${before} WARN  no time\n`, `${after} WARN  no time\n`]).toContain(line);
  });
});

describe('describing a thrown value for a log', () => {
  it('gives the name and message of an Error', () => {
    expect(describeError(new TypeError('fetch failed'))).toBe('TypeError: fetch failed');
  });

  it('gives the text of anything else', () => {
    expect(describeError('socket hang up')).toBe('socket hang up');
    expect(describeError(undefined)).toBe('undefined');
  });
});
