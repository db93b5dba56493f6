import { describe, expect, it } from 'vitest';
import { classifyFailure } from '../../tools/chaos/classify.js';
import { chaosItems, itemIdOfPrompt } from '../../tools/chaos/items.js';
import { createLeakScanner, urlCredentials } from '../../tools/chaos/leaks.js';
import { createRng } from '../../sandbox/random.js';

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJ1cmwiOiJ2aWRlb3MvYS5tcDQifQ.c2lnbmF0dXJlLXZhbHVl';

describe('the leak scanner', () => {
  it('finds a known secret and counts it once even where a pattern matches it too', () => {
    const scanner = createLeakScanner([JWT, 'demo-worker-key']);
    expect(scanner.scan(`PUT http://h/upload?token=${JWT} failed`, 'line 1')).toBe(1);
    expect(scanner.scan('auth Worker demo-worker-key', 'line 2')).toBe(1);
    expect(scanner.leaks().map((leak) => leak.where)).toEqual(['line 1', 'line 2']);
  });

  it('finds signed-URL tokens, signatures and JWTs it was not told about', () => {
    const scanner = createLeakScanner([]);
    expect(scanner.scan('GET /o.mp4?exp=1&sig=AbCdEfGhIjKlMnOp', 'a')).toBe(1);
    expect(scanner.scan('token=abcdefgh12345678', 'b')).toBe(1);
    expect(scanner.scan(`header ${JWT.split('.')[0] ?? ''}`, 'c')).toBe(1);
  });

  it('accepts what the logger and the sanitizer leave behind', () => {
    const scanner = createLeakScanner(['demo-runway-key']);
    const clean = '{"msg":"x","url":"http://h/upload?token=[redacted]&sig=[redacted]","auth":"Bearer [redacted]","jwt":"[redacted-jwt]"}';
    expect(scanner.scan(clean, 'line')).toBe(0);
    expect(scanner.leaks()).toEqual([]);
  });

  it('never prints the secret it found', () => {
    const scanner = createLeakScanner([JWT]);
    scanner.scan(JWT, 'line');
    expect(scanner.leaks()[0]?.excerpt).not.toContain(JWT.slice(10, 30));
  });

  it('reads the credentials out of a signed URL path', () => {
    expect(urlCredentials(`/object/upload/sign/b/videos/a.mp4?token=${JWT}`)).toEqual([JWT]);
    expect(urlCredentials('/outputs/t.mp4?exp=123&sig=AbCdEfGhIjKl')).toEqual(['AbCdEfGhIjKl']);
    expect(urlCredentials('/v1/tasks/abc')).toEqual([]);
  });
});

describe('the failure classification', () => {
  it.each([
    ["runway: SAFETY.INPUT.IMAGE — the photo was rejected by Runway's content moderation", 'moderation'],
    ["runway: SAFETY.OUTPUT.VIDEO — the generated video was blocked by Runway's content moderation", 'moderation'],
    ['runway: timed out after 12 s (last status RUNNING)', 'timed-out'],
    ['runway: daily generation limit reached', 'daily-cap'],
    ['runway: INTERNAL — a temporary internal failure at Runway (after 2 generations)', 'regenerated-transient'],
    ["runway: THIRD_PARTY.UNAVAILABLE — a temporary failure of Runway's model provider (after 2 generations)", 'regenerated-transient'],
    ['runway: INTERNAL — a temporary internal failure at Runway', 'unexpected'],
    [
      'runway: INPUT_PREPROCESSING.INTERNAL — a temporary failure at Runway while preparing the input (a new generation was refused: runway: create answered 502 (Bad gateway))',
      'unexpected',
    ],
    ["output: Runway's output is not a video (text/html, 1.2 KB)", 'not-a-video'],
    ['runway: create answered 502 (Bad gateway)', 'transient-exhausted'],
    ['storage: upload was cut off after 0.0 MB', 'transient-exhausted'],
    ['storage: upload token expired twice', 'transient-exhausted'],
    ['photo: download token expired', 'transient-exhausted'],
    ['app: POST /api/worker/presign timed out', 'transient-exhausted'],
    ['photo: not found in storage', 'unexpected'],
    ['photo: not found (the app could not sign a download URL)', 'unexpected'],
    ['worker: unexpected error (TypeError: x)', 'unexpected'],
    [null, 'unexpected'],
  ] as const)('classifies %j as %s', (message, kind) => {
    expect(classifyFailure(message)).toBe(kind);
  });
});

describe('the chaos queue', () => {
  it('replays from its seed and names each item in its prompt', () => {
    const first = chaosItems(50, createRng(3));
    expect(chaosItems(50, createRng(3))).toEqual(first);
    expect(new Set(first.map((item) => item.item_id)).size).toBe(50);
    for (const item of first) expect(itemIdOfPrompt(item.prompt)).toBe(item.item_id);
  });

  it('gives exactly the asked share of items the photo Runway refuses', () => {
    const items = chaosItems(200, createRng(5), 0.03);
    expect(items.filter((item) => item.photo === 'refused.jpg')).toHaveLength(6);
  });
});
