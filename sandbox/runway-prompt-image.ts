/** How a prompt image reached the API (contract §2.2). */
export type PromptImageKind = 'data' | 'runway' | 'https';
export type ImageFormat = 'jpeg' | 'png' | 'webp';

export const DATA_URI_MAX_CHARS = 5_242_880;
export const URL_MAX_CHARS = 2048;

export type PromptImageSyntaxProblem =
  | { readonly code: 'too_big'; readonly maximum: number }
  | { readonly code: 'custom'; readonly message: string };

/**
 * Runway validates promptImage as "URL of at most 2048 characters, or a data URI, or a
 * runway:// URI"; a data URI over its own limit falls through to the URL rule, so the
 * error a client sees names the wrong limit.
 */
const MISLEADING_TOO_LONG: PromptImageSyntaxProblem = { code: 'too_big', maximum: URL_MAX_CHARS };

const DATA_URI = /^data:image\/(jpeg|png|webp);base64,([A-Za-z0-9+/]*)(={0,2})$/;
const RUNWAY_URI = /^runway:\/\/ephemeral\/[0-9a-f-]{36}$/;

/** The syntax problem with a promptImage string, or undefined when it is acceptable. */
export function promptImageSyntaxProblem(value: string): PromptImageSyntaxProblem | undefined {
  if (value.startsWith('data:')) {
    if (value.length > DATA_URI_MAX_CHARS) return MISLEADING_TOO_LONG;
    const match = DATA_URI.exec(value);
    // Base64 text can never leave exactly one character over a 4-character group.
    if (match === null || ((match[2] ?? '').length + (match[3] ?? '').length) % 4 === 1) {
      return invalid('Invalid data URI: expected data:image/jpeg, image/png or image/webp with base64 content');
    }
    return undefined;
  }
  if (value.startsWith('runway://')) {
    return RUNWAY_URI.test(value) ? undefined : invalid('Invalid runway:// URI');
  }
  if (value.length > URL_MAX_CHARS) return MISLEADING_TOO_LONG;
  if (!URL.canParse(value)) return invalid('Invalid url');
  return new URL(value).protocol === 'https:' ? undefined : invalid('Only HTTPS URLs are supported');
}

function invalid(message: string): PromptImageSyntaxProblem {
  return { code: 'custom', message };
}

export function promptImageKind(value: string): PromptImageKind {
  if (value.startsWith('data:')) return 'data';
  if (value.startsWith('runway://')) return 'runway';
  return 'https';
}

/** Decodes a data URI that already passed {@link promptImageSyntaxProblem}. */
export function decodeDataUri(value: string): Buffer {
  const comma = value.indexOf(',');
  return Buffer.from(value.slice(comma + 1), 'base64');
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The image format by magic bytes: what Runway accepts is decided by content, not by the label. */
export function sniffImageFormat(head: Buffer): ImageFormat | undefined {
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'jpeg';
  if (head.length >= 8 && head.subarray(0, 8).equals(PNG_SIGNATURE)) return 'png';
  if (head.length >= 12 && head.toString('latin1', 0, 4) === 'RIFF' && head.toString('latin1', 8, 12) === 'WEBP') {
    return 'webp';
  }
  return undefined;
}

/**
 * Sample photos carry `runway-sandbox:<FAILURE CODE>` (for example in a JPEG comment
 * segment) to make the sandbox fail their task the way Runway would.
 */
const MARKER = Buffer.from('runway-sandbox:', 'latin1');
const MARKER_CODE_MAX_CHARS = 64;

/** Only this much of an image is scanned for the marker, so a 200 MB upload is never held whole. */
export const MARKER_SCAN_BYTES = 4 * 1024 * 1024;

export function findFailureMarker(bytes: Buffer | string): string | undefined {
  const haystack = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
  const start = haystack.indexOf(MARKER);
  if (start < 0) return undefined;
  let end = start + MARKER.length;
  const limit = Math.min(haystack.length, end + MARKER_CODE_MAX_CHARS);
  while (end < limit && isCodeByte(haystack[end] ?? 0)) end += 1;
  const code = haystack.toString('latin1', start + MARKER.length, end).replace(/\.+$/, '');
  return code.length > 0 ? code : undefined;
}

function isCodeByte(byte: number): boolean {
  return (
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    byte === 0x5f || // _
    byte === 0x2e // .
  );
}

/** Failure text in Runway's wording; Runway advises against showing it to end users verbatim. */
export function failureText(code: string): string {
  if (code.startsWith('SAFETY.OUTPUT.')) return 'Content moderation rejected the output video.';
  if (code.startsWith('SAFETY.')) return 'Content moderation rejected the input image.';
  if (code === 'INPUT_PREPROCESSING.SAFETY.TEXT') return 'Content moderation rejected the prompt text.';
  if (code.startsWith('INTERNAL.BAD_OUTPUT.')) {
    return 'The generated video did not pass quality checks. Try a different input image.';
  }
  if (code.startsWith('ASSET.')) return 'The input image could not be processed.';
  if (code === 'THIRD_PARTY.UNAVAILABLE') return 'A third-party service is temporarily unavailable. Please try again.';
  return 'An unexpected error occurred. Please try again.';
}
