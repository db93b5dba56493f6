/**
 * A streaming multipart/form-data parser: parts are reported as they arrive and file
 * content is handed over chunk by chunk, so a 200 MB upload is never held in memory.
 */

export interface MultipartPart {
  readonly name: string;
  readonly filename: string | undefined;
  readonly contentType: string | undefined;
}

export interface MultipartHandlers {
  onPartStart(part: MultipartPart): void;
  /** The chunk is only valid during the call; copy what must be kept. */
  onPartData(chunk: Buffer): void;
  onPartEnd(): void;
}

export class MultipartError extends Error {
  override readonly name = 'MultipartError';
}

const CRLF = Buffer.from('\r\n', 'latin1');
const HEADER_END = Buffer.from('\r\n\r\n', 'latin1');
const CLOSE = Buffer.from('--', 'latin1');
const HEADER_BLOCK_MAX_BYTES = 16 * 1024;

type State = 'preamble' | 'after-boundary' | 'headers' | 'body' | 'done';

export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (contentType === undefined || !/^multipart\/form-data\s*;/i.test(contentType)) return undefined;
  const match = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = match?.[1] ?? match?.[2];
  return boundary !== undefined && boundary.length <= 70 ? boundary : undefined;
}

export class MultipartParser {
  readonly #delimiter: Buffer;
  readonly #handlers: MultipartHandlers;
  /** Starts with CRLF so the first boundary matches the same delimiter as the others. */
  #buffer: Buffer = CRLF;
  #state: State = 'preamble';

  constructor(boundary: string, handlers: MultipartHandlers) {
    this.#delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    this.#handlers = handlers;
  }

  write(chunk: Buffer): void {
    if (this.#state === 'done') return;
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    this.#advance();
  }

  /** Throws when the body stopped before its closing boundary. */
  end(): void {
    if (this.#state !== 'done') throw new MultipartError('multipart body ended before its closing boundary');
  }

  #advance(): void {
    for (;;) {
      switch (this.#state) {
        case 'preamble':
        case 'body': {
          const index = this.#buffer.indexOf(this.#delimiter);
          if (index < 0) {
            const keep = this.#delimiter.length - 1;
            const safe = this.#buffer.length - keep;
            if (safe > 0) {
              if (this.#state === 'body') this.#handlers.onPartData(this.#buffer.subarray(0, safe));
              this.#buffer = Buffer.from(this.#buffer.subarray(safe));
            }
            return;
          }
          if (this.#state === 'body') {
            if (index > 0) this.#handlers.onPartData(this.#buffer.subarray(0, index));
            this.#handlers.onPartEnd();
          }
          this.#buffer = this.#buffer.subarray(index + this.#delimiter.length);
          this.#state = 'after-boundary';
          break;
        }
        case 'after-boundary': {
          if (this.#buffer.length < 2) return;
          if (this.#buffer.subarray(0, 2).equals(CLOSE)) {
            this.#state = 'done';
            this.#buffer = Buffer.alloc(0);
            return;
          }
          const lineEnd = this.#buffer.indexOf(CRLF);
          if (lineEnd < 0) {
            if (this.#buffer.length > HEADER_BLOCK_MAX_BYTES) throw new MultipartError('malformed boundary line');
            return;
          }
          // RFC 2046 allows linear whitespace after a boundary.
          if (!/^[ \t]*$/.test(this.#buffer.toString('latin1', 0, lineEnd))) {
            throw new MultipartError('malformed boundary line');
          }
          this.#buffer = this.#buffer.subarray(lineEnd + CRLF.length);
          this.#state = 'headers';
          break;
        }
        case 'headers': {
          const headerEnd = this.#buffer.indexOf(HEADER_END);
          if (headerEnd < 0) {
            if (this.#buffer.length > HEADER_BLOCK_MAX_BYTES) throw new MultipartError('part headers too large');
            return;
          }
          this.#handlers.onPartStart(parsePartHeaders(this.#buffer.toString('utf8', 0, headerEnd)));
          this.#buffer = this.#buffer.subarray(headerEnd + HEADER_END.length);
          this.#state = 'body';
          break;
        }
        case 'done':
          return;
      }
    }
  }
}

function parsePartHeaders(block: string): MultipartPart {
  let disposition: string | undefined;
  let contentType: string | undefined;
  for (const line of block.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MultipartError(`malformed part header: ${line}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-disposition') disposition = value;
    else if (name === 'content-type') contentType = value;
  }
  if (disposition === undefined || !/^form-data\s*(;|$)/i.test(disposition)) {
    throw new MultipartError('part without Content-Disposition: form-data');
  }
  const name = dispositionParameter(disposition, 'name');
  if (name === undefined) throw new MultipartError('part without a name');
  return { name, filename: dispositionParameter(disposition, 'filename'), contentType };
}

function dispositionParameter(disposition: string, parameter: string): string | undefined {
  const match = new RegExp(`;\\s*${parameter}=(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, 'i').exec(disposition);
  const quoted = match?.[1];
  if (quoted !== undefined) return quoted.replace(/\\(.)/g, '$1');
  return match?.[2];
}
