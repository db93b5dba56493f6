import { createHash, createHmac, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { checkImageParts, type ImageVerdict } from './runway-image-check.js';
import { MultipartError, MultipartParser, multipartBoundary, type MultipartPart } from './runway-multipart.js';
import { MARKER_SCAN_BYTES } from './runway-prompt-image.js';

/** Ephemeral uploads stay usable as promptImage for 24 h (contract §2.2). */
export const UPLOAD_URI_TTL_MS = 24 * 60 * 60 * 1000;
/** The signed POST policy behind an uploadUrl lapses much sooner than the runway:// URI. */
export const UPLOAD_POLICY_TTL_MS = 60 * 60 * 1000;
export const UPLOAD_MAX_BYTES = 200 * 1024 * 1024;
const FIELD_MAX_BYTES = 64 * 1024;
/**
 * Files up to this size are held while the upload is read, so their pixels can be
 * checked (app photos are at most 20 MB); a larger one is checked by its headers only,
 * so a 200 MB upload is never held whole.
 */
export const UPLOAD_DECODE_MAX_BYTES = 64 * 1024 * 1024;

export interface ReceivedUpload {
  readonly bytes: number;
  /** Undefined when the file is not a JPEG, PNG or WebP. */
  readonly verdict: ImageVerdict | undefined;
  /** The file itself, only when the sandbox keeps prompt images. */
  readonly kept: Buffer | undefined;
}

export interface UploadSlot {
  readonly id: string;
  readonly filename: string;
  readonly runwayUri: string;
  readonly fields: Readonly<Record<string, string>>;
  readonly createdAtMs: number;
  received: ReceivedUpload | undefined;
}

export function createUploadSlot(filename: string, secret: Buffer, nowMs: number): UploadSlot {
  const id = randomUUID();
  const key = `ephemeral/${id}/${filename}`;
  const policy = Buffer.from(
    JSON.stringify({
      expiration: new Date(nowMs + UPLOAD_POLICY_TTL_MS).toISOString(),
      conditions: [{ key }, ['content-length-range', 1, UPLOAD_MAX_BYTES]],
    }),
    'utf8',
  ).toString('base64');
  const date = new Date(nowMs).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  return {
    id,
    filename,
    runwayUri: `runway://ephemeral/${id}`,
    fields: {
      key,
      policy,
      'x-amz-algorithm': 'AWS4-HMAC-SHA256',
      'x-amz-credential': `SANDBOX/${date.slice(0, 8)}/us-east-1/s3/aws4_request`,
      'x-amz-date': date,
      'x-amz-signature': createHmac('sha256', secret).update(policy).digest('hex'),
    },
    createdAtMs: nowMs,
    received: undefined,
  };
}

export type UploadOutcome =
  | { readonly kind: 'stored'; readonly requestBytes: number; readonly upload: ReceivedUpload }
  | {
      readonly kind: 'rejected';
      readonly requestBytes: number;
      readonly status: number;
      readonly code: string;
      readonly message: string;
    };

/**
 * Takes a presigned-POST style upload: every field of the slot, unchanged and before the
 * file, then `file`. Parts after the file are ignored, as S3 does. The request is always
 * read to its end (so the client sees the answer rather than a reset); the file is
 * checked as a prompt image once it has arrived, then let go unless `keepBytes`.
 */
export async function receiveUpload(
  slot: UploadSlot,
  req: IncomingMessage,
  nowMs: number,
  options: { readonly keepBytes: boolean },
): Promise<UploadOutcome> {
  let requestBytes = 0;
  let rejection: { status: number; code: string; message: string } | undefined;
  const reject = (status: number, code: string, message: string): void => {
    rejection ??= { status, code, message };
  };
  if (nowMs > slot.createdAtMs + UPLOAD_POLICY_TTL_MS) reject(403, 'AccessDenied', 'Invalid according to Policy: Policy expired.');

  const boundary = multipartBoundary(req.headers['content-type']);
  if (boundary === undefined) {
    reject(412, 'PreconditionFailed', 'Bucket POST must be of the enclosure-type multipart/form-data');
  }

  const seenFields = new Map<string, string>();
  let current: { part: MultipartPart; role: 'field' | 'file' | 'ignored'; chunks: Buffer[]; bytes: number } | undefined;
  let fileSeen = false;
  let fileBytes = 0;
  const head: Buffer[] = [];
  let headBytes = 0;
  let whole: Buffer[] | undefined = [];
  const hash = createHash('sha256');

  const parser =
    boundary === undefined
      ? undefined
      : new MultipartParser(boundary, {
          onPartStart(part) {
            if (fileSeen) {
              current = { part, role: 'ignored', chunks: [], bytes: 0 };
              return;
            }
            if (part.name === 'file') {
              fileSeen = true;
              for (const name of Object.keys(slot.fields)) {
                if (!seenFields.has(name)) reject(400, 'InvalidArgument', `Bucket POST must contain a field named '${name}'.`);
              }
              current = { part, role: 'file', chunks: [], bytes: 0 };
              return;
            }
            if (!(part.name in slot.fields)) {
              reject(403, 'AccessDenied', `Invalid according to Policy: Extra input fields: ${part.name}`);
            } else if (seenFields.has(part.name)) {
              reject(400, 'InvalidArgument', `Field '${part.name}' appears more than once.`);
            }
            current = { part, role: 'field', chunks: [], bytes: 0 };
          },
          onPartData(chunk) {
            if (current === undefined) return;
            current.bytes += chunk.length;
            if (current.role === 'field') {
              if (current.bytes > FIELD_MAX_BYTES) reject(400, 'InvalidArgument', `Field '${current.part.name}' is too large.`);
              else current.chunks.push(Buffer.from(chunk));
            } else if (current.role === 'file') {
              fileBytes += chunk.length;
              hash.update(chunk);
              if (fileBytes <= UPLOAD_DECODE_MAX_BYTES) whole?.push(Buffer.from(chunk));
              else whole = undefined;
              if (headBytes < MARKER_SCAN_BYTES) {
                const kept = chunk.subarray(0, MARKER_SCAN_BYTES - headBytes);
                head.push(Buffer.from(kept));
                headBytes += kept.length;
              }
            }
          },
          onPartEnd() {
            if (current?.role === 'field') {
              const name = current.part.name;
              const value = Buffer.concat(current.chunks).toString('utf8');
              seenFields.set(name, value);
              const expected = slot.fields[name];
              if (expected !== undefined && value !== expected) {
                reject(403, 'AccessDenied', `Invalid according to Policy: Policy Condition failed: ["eq", "$${name}", "${expected}"]`);
              }
            }
            current = undefined;
          },
        });

  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    requestBytes += buffer.length;
    if (parser === undefined || rejection !== undefined) continue;
    try {
      parser.write(buffer);
    } catch (error) {
      if (!(error instanceof MultipartError)) throw error;
      reject(400, 'MalformedPOSTRequest', 'The body of your POST request is not well-formed multipart/form-data.');
    }
  }
  if (parser !== undefined && rejection === undefined) {
    try {
      parser.end();
    } catch (error) {
      if (!(error instanceof MultipartError)) throw error;
      reject(400, 'MalformedPOSTRequest', 'The body of your POST request is not well-formed multipart/form-data.');
    }
  }
  if (rejection === undefined && !fileSeen) reject(400, 'InvalidArgument', 'POST requires exactly one file upload per request.');
  if (rejection === undefined && fileBytes > UPLOAD_MAX_BYTES) {
    reject(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size');
  }
  if (rejection === undefined && fileBytes === 0) {
    reject(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed size');
  }
  if (rejection !== undefined) return { kind: 'rejected', requestBytes, ...rejection };

  const wholeBuffer = whole === undefined ? undefined : Buffer.concat(whole);
  const verdict = await checkImageParts({
    head: wholeBuffer ?? Buffer.concat(head),
    bytes: fileBytes,
    sha256: hash.digest('hex'),
    whole: wholeBuffer,
  });
  return {
    kind: 'stored',
    requestBytes,
    upload: { bytes: fileBytes, verdict, kept: options.keepBytes ? wholeBuffer : undefined },
  };
}
