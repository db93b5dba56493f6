import { describe, expect, it } from 'vitest';
import { PermanentError, UpstreamError } from '../../lib/errors.js';
import {
  classifyFailureCode,
  failureMessageOf,
  humanSize,
  MAX_ERROR_MESSAGE_LENGTH,
  notVideoMessage,
  RUNWAY_CANCELLED_MESSAGE,
  runwayFailureMessage,
  sanitizeMessage,
  timeoutMessage,
  type FailureClass,
} from '../../lib/decide/failure-message.js';

const SIGNED_URL =
  'https://abc.supabase.co/storage/v1/object/upload/sign/generated-videos/videos/42.mp4?token=eyJhbGciOiJIUzI1NiJ9.eyJ1cmwiOiJ2aWRlb3MvNDIubXA0In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';

const assertSafe = (message: string): void => {
  expect(message.length).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_LENGTH);
  expect(message).not.toMatch(/:\/\//);
  expect(message).not.toMatch(/eyJ[\w-]+\.[\w-]+/);
  expect(message).not.toMatch(/token=(?!\[redacted\])/i);
};

describe('classifying Runway failure codes', () => {
  it.each([
    ['SAFETY.INPUT.IMAGE', 'moderation'],
    ['SAFETY.INPUT.TEXT', 'moderation'],
    ['SAFETY.INPUT.SOMETHING_NEW', 'moderation'],
    ['SAFETY.OUTPUT.VIDEO', 'moderation'],
    ['SAFETY.OUTPUT', 'moderation'],
    ['SAFETY.NEW_FAMILY', 'moderation'],
    ['INPUT_PREPROCESSING.SAFETY.TEXT', 'moderation'],
    ['INPUT_PREPROCESSING.SAFETY.IMAGE', 'moderation'],
    ['INTERNAL.BAD_OUTPUT.CODE01', 'bad-output'],
    ['INTERNAL.BAD_OUTPUT', 'bad-output'],
    ['INTERNAL', 'transient'],
    ['INTERNAL.OTHER', 'transient'],
    ['INPUT_PREPROCESSING.INTERNAL', 'transient'],
    ['THIRD_PARTY.UNAVAILABLE', 'transient'],
    ['ASSET.INVALID', 'input'],
    ['ASSET.INVALID.FORMAT', 'input'],
    ['internal.bad_output.code01', 'bad-output'],
    ['  SAFETY.INPUT.IMAGE  ', 'moderation'],
    ['SAFETYNET', 'unknown'],
    ['INTERNALS', 'unknown'],
    ['ASSET', 'unknown'],
    ['QUOTA.EXCEEDED', 'unknown'],
    ['', 'unknown'],
    [null, 'unknown'],
    [undefined, 'unknown'],
  ] as const satisfies readonly (readonly [string | null | undefined, FailureClass])[])('classifies %j as %s', (code, kind) => {
    expect(classifyFailureCode(code)).toBe(kind);
  });
});

describe('the error message for a failed Runway task', () => {
  it.each([
    ['SAFETY.INPUT.IMAGE', "runway: SAFETY.INPUT.IMAGE — the photo was rejected by Runway's content moderation"],
    ['SAFETY.INPUT.TEXT', "runway: SAFETY.INPUT.TEXT — the prompt was rejected by Runway's content moderation"],
    ['SAFETY.INPUT.OTHER', "runway: SAFETY.INPUT.OTHER — the input was rejected by Runway's content moderation"],
    ['SAFETY.OUTPUT.VIDEO', "runway: SAFETY.OUTPUT.VIDEO — the generated video was blocked by Runway's content moderation"],
    ['INPUT_PREPROCESSING.SAFETY.TEXT', "runway: INPUT_PREPROCESSING.SAFETY.TEXT — the prompt was rejected by Runway's content moderation"],
    ['INTERNAL.BAD_OUTPUT.CODE01', 'runway: INTERNAL.BAD_OUTPUT.CODE01 — Runway produced an unusable video (often text over the photo)'],
    ['INTERNAL', 'runway: INTERNAL — a temporary internal failure at Runway'],
    ['INPUT_PREPROCESSING.INTERNAL', 'runway: INPUT_PREPROCESSING.INTERNAL — a temporary failure at Runway while preparing the input'],
    ['THIRD_PARTY.UNAVAILABLE', "runway: THIRD_PARTY.UNAVAILABLE — a temporary failure of Runway's model provider"],
    ['ASSET.INVALID', 'runway: ASSET.INVALID — the photo could not be used'],
  ])('for %s explains the code in plain words', (code, message) => {
    expect(runwayFailureMessage(code, 'An error occurred.')).toBe(message);
  });

  it("does not repeat Runway's failure text for codes it can explain", () => {
    expect(runwayFailureMessage('SAFETY.INPUT.IMAGE', 'Our moderation flagged: details at https://help.runwayml.com/x')).toBe(
      "runway: SAFETY.INPUT.IMAGE — the photo was rejected by Runway's content moderation",
    );
  });

  it('shows the code in upper case, as Runway spells it', () => {
    expect(runwayFailureMessage('safety.input.image')).toMatch(/^runway: SAFETY\.INPUT\.IMAGE — /);
  });

  it("quotes Runway's failure text, sanitized, for an unknown code", () => {
    expect(runwayFailureMessage('QUOTA.EXCEEDED', `Quota exceeded, see ${SIGNED_URL}\n  retry later`)).toBe(
      'runway: QUOTA.EXCEEDED — Quota exceeded, see [url] retry later',
    );
  });

  it('says the task failed when an unknown code comes without text', () => {
    expect(runwayFailureMessage('QUOTA.EXCEEDED')).toBe('runway: QUOTA.EXCEEDED — task failed');
    expect(runwayFailureMessage('QUOTA.EXCEEDED', '   ')).toBe('runway: QUOTA.EXCEEDED — task failed');
  });

  it('quotes the failure text when there is no code', () => {
    expect(runwayFailureMessage(undefined, 'Something went wrong.')).toBe('runway: task failed — Something went wrong.');
    expect(runwayFailureMessage(null, 'Something went wrong.')).toBe('runway: task failed — Something went wrong.');
  });

  it('still says something useful when Runway gives neither code nor text', () => {
    expect(runwayFailureMessage()).toBe('runway: task failed (no reason given)');
    expect(runwayFailureMessage('', '')).toBe('runway: task failed (no reason given)');
  });

  it('keeps only code characters from a strange code', () => {
    expect(runwayFailureMessage('NEW CODE <b>x</b>; https://evil.example/?token=abc', 'x')).toMatch(/^runway: NEWCODEBXBHTTPSEVIL\.EXAMPLETOKENABC — x$/);
  });

  it('shows at most 80 characters of a long code', () => {
    expect(runwayFailureMessage('X'.repeat(100))).toBe(`runway: ${'X'.repeat(80)} — task failed`);
  });

  it('cuts a long failure text for an unknown code well below the message limit', () => {
    const message = runwayFailureMessage('NEW.CODE', 'word '.repeat(1000));
    expect(message.length).toBeLessThanOrEqual(230);
    expect(message.endsWith('…')).toBe(true);
  });

  it('stays within 500 characters even with an absurd code', () => {
    assertSafe(runwayFailureMessage('X'.repeat(5000), 'y'.repeat(5000)));
  });

  it('has a fixed message for a cancelled task', () => {
    expect(RUNWAY_CANCELLED_MESSAGE).toBe('runway: task was cancelled');
  });
});

describe('the error message for a timed-out task', () => {
  it('names the limit and the last status seen', () => {
    expect(timeoutMessage(600, 'THROTTLED')).toBe('runway: timed out after 600 s (last status THROTTLED)');
  });

  it('leaves the status out when it is not known', () => {
    expect(timeoutMessage(600)).toBe('runway: timed out after 600 s');
    expect(timeoutMessage(600, null)).toBe('runway: timed out after 600 s');
    expect(timeoutMessage(600, '')).toBe('runway: timed out after 600 s');
  });

  it('rounds the seconds', () => {
    expect(timeoutMessage(600.4, 'RUNNING')).toBe('runway: timed out after 600 s (last status RUNNING)');
  });

  it('says when a task that ran out of time had waited THROTTLED for a slot', () => {
    expect(timeoutMessage(600, 'RUNNING', true)).toBe("runway: timed out after 600 s (last status RUNNING; it waited THROTTLED for Runway's concurrency limit)");
    expect(timeoutMessage(600, 'THROTTLED', true)).toBe('runway: timed out after 600 s (last status THROTTLED)');
    expect(timeoutMessage(600, 'PENDING', false)).toBe('runway: timed out after 600 s (last status PENDING)');
  });

  it('keeps only status characters from a strange status', () => {
    expect(timeoutMessage(600, 'running https://x.example/?token=1')).toBe('runway: timed out after 600 s (last status RUNNINGHTTPSXEXAMPLETOKEN)');
  });

  it('shows at most 30 characters of a long status', () => {
    expect(timeoutMessage(600, 'S'.repeat(40))).toBe(`runway: timed out after 600 s (last status ${'S'.repeat(30)})`);
  });

  it('copes with a nonsensical duration', () => {
    expect(timeoutMessage(Number.NaN, 'PENDING')).toBe('runway: timed out after too long (last status PENDING)');
  });
});

describe('sanitizing text for an admin-facing message', () => {
  it.each([
    ['a signed upload URL', `upload failed: ${SIGNED_URL}`, 'upload failed: [url]'],
    ['a plain http URL', 'fetch http://127.0.0.1:3000/photo.jpg failed', 'fetch [url] failed'],
    ['a runway:// URI', 'bad asset runway://uploads/abc123', 'bad asset [url]'],
    ['a data URI', 'image data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ== was rejected', 'image [data] was rejected'],
    ['a token query parameter without a scheme', 'at storage.example.com/x.mp4?token=abc.def&x=1', 'at storage.example.com/x.mp4?token=[redacted]&x=1'],
    ['a signature parameter', 'sig=abcdef123 and X-Amz-Signature=deadbeef', 'sig=[redacted] and X-Amz-Signature=[redacted]'],
    ['a Bearer token', 'sent Authorization: Bearer key_1234567890abcdef', 'sent Authorization: Bearer [redacted]'],
    ['a Worker key', 'header Worker wk_live_9f8e7d6c5b4a', 'header Worker [redacted]'],
    ['a JWT', `token ${JWT} expired`, 'token [redacted] expired'],
    ['a QStash signing key', 'key sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r leaked', 'key [redacted] leaked'],
    ['a JWT glued to a word', `bad${JWT}`, 'bad[redacted]'],
    ['the whole word around a URL glued to other text', 'see (x_https://a.example/y?token=1) now', 'see [url] now'],
    ['a long opaque key', 'key 4f9a2c7e1b8d3f6a0c5e9b2d7f1a4c8e6b3d0f2a9c', 'key [redacted]'],
    ['a data URI without parameters', 'see data:text/plain,SGVsbG8= here', 'see [data] here'],
    ['a data URI with several parameters', 'see data:image/png;charset=utf-8;base64,iVBORw0KGgo= here', 'see [data] here'],
    ['a Bearer token after several spaces', 'sent Authorization: Bearer   key_1234567890abcdef', 'sent Authorization: Bearer [redacted]'],
    ['an apitoken parameter', 'at storage.example.com/x.mp4?apitoken=abc123', 'at storage.example.com/x.mp4?apitoken=[redacted]'],
    ['an AWS credential parameter', 'at bucket.example.com/v.mp4?X-Amz-Credential=AKIAEXAMPLE%2F20240101', 'at bucket.example.com/v.mp4?X-Amz-Credential=[redacted]'],
  ])('removes %s', (_label, input, output) => {
    expect(sanitizeMessage(input)).toBe(output);
  });

  it('changes nothing in a message it already sanitized, so applying it twice is safe', () => {
    for (const input of [`upload failed: ${SIGNED_URL}`, 'z'.repeat(900), `Bearer key_1234567890abcdef ${JWT}`, runwayFailureMessage('SAFETY.INPUT.IMAGE')]) {
      const once = sanitizeMessage(input);
      expect(sanitizeMessage(once)).toBe(once);
    }
  });

    it('keeps UUIDs such as Runway task ids readable', () => {
    expect(sanitizeMessage('task 0f8fad5b-d9cb-469f-a165-70867728950e failed')).toBe('task 0f8fad5b-d9cb-469f-a165-70867728950e failed');
  });

  it('keeps a long run of digits alone: a key mixes letters and digits', () => {
    const digits = '1234567890'.repeat(5);
    expect(sanitizeMessage(`offset ${digits} out of range`)).toBe(`offset ${digits} out of range`);
  });

  it('stays safe and bounded on megabytes of input', () => {
    const message = sanitizeMessage(`${'noise '.repeat(200_000)}${SIGNED_URL}`);
    expect(message).toHaveLength(500);
    assertSafe(message);
  });

    it('keeps ordinary words that follow "Bearer" or "Worker"', () => {
    expect(sanitizeMessage('Bearer token missing; Worker unavailable')).toBe('Bearer token missing; Worker unavailable');
  });

  it('collapses whitespace and control characters into single spaces', () => {
    expect(sanitizeMessage('  line one\n\n\tline\u0000two\r\n  ')).toBe('line one line two');
  });

  it('cuts long text to 500 characters ending in an ellipsis', () => {
    const message = sanitizeMessage('a'.repeat(2000));
    expect(message).toHaveLength(500);
    expect(message.endsWith('…')).toBe(true);
  });

  it('leaves text of exactly 500 characters alone', () => {
    expect(sanitizeMessage('b'.repeat(500))).toBe('b'.repeat(500));
  });

  it('does not split an emoji when cutting', () => {
    const message = sanitizeMessage(`${'a'.repeat(498)}😀${'c'.repeat(10)}`);
    expect(message).toBe(`${'a'.repeat(498)}…`);
  });

  it.each([
    ['U+10000', '\u{10000}'],
    ['U+10FFFF', '\u{10FFFF}'],
  ])('does not split the first or last character of the astral planes (%s) when cutting', (_label, character) => {
    expect(sanitizeMessage(`${'a'.repeat(498)}${character}${'c'.repeat(10)}`)).toBe(`${'a'.repeat(498)}…`);
  });

  it('cuts text of characters just above the surrogate range at the full length', () => {
    expect(sanitizeMessage('\uff21'.repeat(600))).toBe(`${'\uff21'.repeat(499)}…`);
  });

  it('does not leave a space before the ellipsis', () => {
    expect(sanitizeMessage('hello wonderful', 7)).toBe('hello…');
  });

  it('ignores what lies beyond four times the limit, even where collapsed whitespace would have made room', () => {
    expect(sanitizeMessage(`a${' '.repeat(2500)}b`)).toBe('a …');
  });

  it('reads text of exactly four times the limit to its end', () => {
    expect(sanitizeMessage(`a${' '.repeat(1998)}b`)).toBe('a b');
  });

  it('accepts a smaller limit', () => {
    expect(sanitizeMessage('hello wonderful world', 10)).toBe('hello won…');
  });

  it('never lets a URL or token through, over a mix of noisy inputs', () => {
    const pieces = [SIGNED_URL, JWT, 'Bearer abcdef1234567890', 'text', '\n', 'https://a.b/c?d=e', '?token=zzz', '😀', ' '.repeat(50)];
    for (let seed = 1; seed <= 300; seed += 1) {
      let text = '';
      for (let index = 0; index < 40; index += 1) text += pieces[(seed * 31 + index * index * 7) % pieces.length] ?? '';
      assertSafe(sanitizeMessage(text));
      assertSafe(runwayFailureMessage('NEW.CODE', text));
      assertSafe(runwayFailureMessage(undefined, text));
    }
  });
});

describe('the error message for a thrown error', () => {
  it('keeps the message of a permanent error, which already names its stage', () => {
    expect(failureMessageOf(new PermanentError('photo', 'photo: not a JPEG/PNG/WebP image (got text/html)'))).toBe(
      'photo: not a JPEG/PNG/WebP image (got text/html)',
    );
  });

  it('keeps the message of an upstream error, sanitized', () => {
    const error = new UpstreamError('storage', `storage: upload answered 500 for ${SIGNED_URL}`, { status: 500, retryable: true });
    expect(failureMessageOf(error)).toBe('storage: upload answered 500 for [url]');
  });

  it('calls any other error unexpected and names its kind', () => {
    expect(failureMessageOf(new TypeError('boom'))).toBe('worker: unexpected error (TypeError: boom)');
  });

  it('copes with a thrown value that is not an error', () => {
    expect(failureMessageOf('lost')).toBe('worker: unexpected error (lost)');
  });
});

describe('sizes as people read them', () => {
  it.each([
    [0, '0 bytes'],
    [512, '512 bytes'],
    [1024, '1.0 KB'],
    [1229, '1.2 KB'],
    [1024 ** 2, '1.0 MB'],
    [3.4 * 1024 ** 2, '3.4 MB'],
    [1.1 * 1024 ** 3, '1.1 GB'],
    [1024 ** 4, '1.0 TB'],
    [1024 ** 5, '1024.0 TB'],
  ])('shows %d bytes as %s', (bytes, text) => {
    expect(humanSize(bytes)).toBe(text);
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('calls %d an unknown size', (bytes) => {
    expect(humanSize(bytes)).toBe('unknown size');
  });
});

describe('the error message for an output that is not a video', () => {
  it('names the type and the size Runway declared', () => {
    expect(notVideoMessage('text/html', 1229)).toBe("output: Runway's output is not a video (text/html, 1.2 KB)");
  });

  it('says so when the type and size are missing', () => {
    expect(notVideoMessage(undefined, undefined)).toBe("output: Runway's output is not a video (no content type, unknown size)");
    expect(notVideoMessage('', undefined)).toBe("output: Runway's output is not a video (no content type, unknown size)");
  });

  it('keeps only media-type characters of a strange type', () => {
    expect(notVideoMessage('text/html; charset="<b>"', 0)).toBe("output: Runway's output is not a video (text/htmlcharsetb, 0 bytes)");
  });

  it('shows at most 60 characters of a long type', () => {
    expect(notVideoMessage(`x/${'y'.repeat(100)}`, 0)).toBe(`output: Runway's output is not a video (x/${'y'.repeat(58)}, 0 bytes)`);
  });
});
