import { describe, expect, it } from 'vitest';
import { redactText } from '../../lib/log.js';
import { captureLog } from '../support/extra-log.js';

const WORKER_KEY = 'wk_live_9f2c4e7a1b3d5f60';
const RUNWAY_KEY = 'key_3f9a8c7e6d5b4a39281706f5e4d3c2b1a0f9e8d7';
const CRON_SECRET = 'cron-8Qz1vX3pL7';
const SIGNING_KEY = 'sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r';
const SECRETS = [WORKER_KEY, RUNWAY_KEY, CRON_SECRET, SIGNING_KEY];

const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1cmwiOiJncm91cC1waG90b3MvYS5qcGciLCJleHAiOjE3OTV9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg';
const SIGNED_DOWNLOAD = `https://abcd.supabase.co/storage/v1/object/sign/group-photos/g/p_original.jpg?token=${JWT}`;
const SIGNED_UPLOAD = 'https://abcd.supabase.co/storage/v1/object/upload/sign/generated-videos/videos/i.mp4?token=opaqueUploadToken123&x=1';

/** Every secret-bearing fragment that must never appear on a line. */
const FORBIDDEN = [...SECRETS, JWT, 'opaqueUploadToken123', 'sk_live_0123456789abcdef', 'bearerValue_0123456789'];

function logged(configure: { pretty?: boolean } = {}): ReturnType<typeof captureLog> {
  return captureLog({ secrets: SECRETS, ...configure });
}

function expectClean(lines: readonly string[]): void {
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) for (const fragment of FORBIDDEN) expect(line).not.toContain(fragment);
}

describe('the JSON logger given configured secrets', () => {
  it.each(SECRETS.map((secret) => [secret] as const))('replaces %s in the message with [redacted]', (secret) => {
    const log = logged();

    log.logger.info(`calling with ${secret} now`);

    const [record] = log.records();
    expect(record?.['msg']).toBe('calling with [redacted] now');
  });

  it('replaces secrets in nested fields, arrays and object keys, and keeps everything else', () => {
    const log = logged();

    log.logger.warn(
      {
        item_id: 'item-1',
        request: { headers: { 'x-api-key': RUNWAY_KEY, note: `key=${WORKER_KEY}` }, tried: [CRON_SECRET, 'plain'] },
        [SIGNING_KEY]: 'as a key',
      },
      'nested',
    );

    expectClean(log.lines());
    expect(log.records()[0]).toEqual({
      level: 'warn',
      time: expect.any(Number) as unknown,
      item_id: 'item-1',
      request: { headers: { 'x-api-key': '[redacted]', note: 'key=[redacted]' }, tried: ['[redacted]', 'plain'] },
      '[redacted]': 'as a key',
      msg: 'nested',
    });
  });

  it('redacts a secret that appears many times on one line', () => {
    const log = logged();

    log.logger.info({ a: WORKER_KEY, b: `${WORKER_KEY}${WORKER_KEY}` }, `${WORKER_KEY} ${WORKER_KEY}`);

    expectClean(log.lines());
    expect(log.records()[0]).toMatchObject({ a: '[redacted]', b: '[redacted][redacted]', msg: '[redacted] [redacted]' });
  });

  it('ignores configured values shorter than 4 characters, which would shred ordinary words', () => {
    const log = captureLog({ secrets: ['on'] });

    log.logger.info('the photo is on its way');

    expect(log.records()[0]?.['msg']).toBe('the photo is on its way');
  });
});

describe('the JSON logger given signed URLs, auth headers and JWTs it was not told about', () => {
  it('redacts the token= value of a signed download and upload URL, keeping the rest of the URL', () => {
    const log = logged();

    log.logger.info({ url: SIGNED_UPLOAD }, `fetching ${SIGNED_DOWNLOAD}`);

    expectClean(log.lines());
    const [record] = log.records();
    expect(record?.['msg']).toBe('fetching https://abcd.supabase.co/storage/v1/object/sign/group-photos/g/p_original.jpg?token=[redacted]');
    expect(record?.['url']).toBe('https://abcd.supabase.co/storage/v1/object/upload/sign/generated-videos/videos/i.mp4?token=[redacted]&x=1');
  });

  it.each([
    ['a Runway output URL signature', 'https://cdn.runway.test/out.mp4?exp=1795890255&sig=c2lnbmF0dXJl', 'https://cdn.runway.test/out.mp4?exp=1795890255&sig=[redacted]'],
    [
      'S3-style presigned parameters',
      'https://s3.test/b/k?X-Amz-Credential=AKIAEXAMPLE%2F20261128&X-Amz-Signature=deadbeef00',
      'https://s3.test/b/k?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]',
    ],
  ])('redacts %s', (_label, url, expected) => {
    const log = logged();

    log.logger.info({ url }, 'download');

    expect(log.records()[0]?.['url']).toBe(expected);
  });

  it.each([
    ['Bearer', 'Authorization: Bearer sk_live_0123456789abcdef', 'Authorization: Bearer [redacted]'],
    ['Worker', 'authorization: Worker bearerValue_0123456789', 'authorization: Worker [redacted]'],
  ])('redacts the value of an Authorization: %s header in a message', (_label, text, expected) => {
    const log = logged();

    log.logger.info(text);

    expect(log.records()[0]?.['msg']).toBe(expected);
  });

  it('redacts auth header values held in nested fields', () => {
    const log = logged();

    log.logger.info({ request: { headers: { authorization: 'Bearer sk_live_0123456789abcdef' } }, sent: ['Worker bearerValue_0123456789'] }, 'call');

    expectClean(log.lines());
    expect(log.records()[0]).toMatchObject({
      request: { headers: { authorization: 'Bearer [redacted]' } },
      sent: ['Worker [redacted]'],
    });
  });

  it('replaces a JWT anywhere, in the message and in fields', () => {
    const log = logged();

    log.logger.info({ signature: JWT, detail: { seen: `Upstash-Signature: ${JWT}` } }, `verifying ${JWT}`);

    expectClean(log.lines());
    expect(log.records()[0]).toMatchObject({
      signature: '[redacted-jwt]',
      detail: { seen: 'Upstash-Signature: [redacted-jwt]' },
      msg: 'verifying [redacted-jwt]',
    });
  });

  it('redacts an error whose message and stack carry a signed URL', () => {
    const log = logged();

    log.logger.error({ err: new Error(`GET ${SIGNED_DOWNLOAD} failed`) }, 'photo download failed');

    expectClean(log.lines());
    expect(log.lines()[0]).toContain('?token=[redacted]');
  });

  it('leaves ordinary prose and short words after Bearer alone', () => {
    const log = logged();

    log.logger.info('Bearer tokens are checked; the worker runs every minute');

    expect(log.records()[0]?.['msg']).toBe('Bearer tokens are checked; the worker runs every minute');
  });
});

describe('the logger in pretty mode', () => {
  it('prints one readable line per record with the same redactions', () => {
    const log = logged({ pretty: true });

    log.logger.warn(
      { item_id: 'item-1', url: SIGNED_DOWNLOAD, key: RUNWAY_KEY, headers: { authorization: 'Bearer sk_live_0123456789abcdef' } },
      `retrying with ${WORKER_KEY} and ${JWT}`,
    );

    const lines = log.lines();
    expectClean(lines);
    expect(lines).toHaveLength(1);
    const line = lines[0] ?? '';
    expect(line.endsWith('\n')).toBe(true);
    expect(line).toMatch(/^\d{2}:\d{2}:\d{2} WARN {2}retrying with \[redacted\] and \[redacted-jwt\] {2}/);
    expect(line).toContain('item_id=item-1');
    expect(line).toContain('url=https://abcd.supabase.co/storage/v1/object/sign/group-photos/g/p_original.jpg?token=[redacted]');
    expect(line).toContain('key=[redacted]');
    expect(line).toContain('headers={"authorization":"Bearer [redacted]"}');
    expect(line).not.toContain('{"level"');
  });
});

describe('redactText', () => {
  it('applies every rule to a plain string', () => {
    expect(redactText(`${CRON_SECRET} Worker ${WORKER_KEY} ?token=abc&sig=def ${JWT}`, SECRETS)).toBe(
      '[redacted] Worker [redacted] ?token=[redacted]&sig=[redacted] [redacted-jwt]',
    );
  });
});

describe('the logger with secrets that need care', () => {
  // pino writes `"` and `\` escaped (`\"`, `\\`), and redaction runs on the serialised line,
  // so a secret holding either character is looked for in a form the line never contains.
  it('redacts a secret that contains a double quote or a backslash', () => {
    const secret = 'pa"ss\\word-2026';
    const log = captureLog({ secrets: [secret] });

    log.logger.info({ password: secret }, `using ${secret}`);

    expect(log.records()[0]).toMatchObject({ password: '[redacted]', msg: 'using [redacted]' });
  });

  // Secrets are replaced in the order given: when one is the start of another, the shorter
  // one is cut out first and the rest of the longer one is printed.
  it('redacts the whole of a secret that begins with another configured secret', () => {
    const log = captureLog({ secrets: ['shared-prefix', 'shared-prefix-and-the-rest-9'] });

    log.logger.info('key shared-prefix-and-the-rest-9');

    expect(log.records()[0]?.['msg']).toBe('key [redacted]');
  });

  // Auth schemes are case-insensitive (RFC 9110 §11.1); only `Bearer`/`Worker` as written are caught.
  it('redacts an auth header value whatever the case of the scheme', () => {
    const log = captureLog({ secrets: [] });

    log.logger.info({ headers: { authorization: 'bearer sk_live_0123456789abcdef' } }, 'call');

    expect(log.lines()[0]).not.toContain('sk_live_0123456789abcdef');
  });
});
