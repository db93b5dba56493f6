/** Small request/response helpers shared by the sandbox Runway routes. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from './http-util.js';
import { describeIssues, type RunwayIssue } from './runway-models.js';

export interface BodyRead {
  /** Undefined when the body was larger than the limit (it was still read to the end). */
  readonly buffer: Buffer | undefined;
  readonly bytes: number;
}

/** Reads a request to its end, keeping it only while it fits: oversized bodies are counted, not held. */
export async function readBodyUpTo(req: IncomingMessage, limitBytes: number): Promise<BodyRead> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    bytes += buffer.length;
    if (bytes <= limitBytes) chunks.push(buffer);
    else chunks.length = 0;
  }
  return { buffer: bytes <= limitBytes ? Buffer.concat(chunks) : undefined, bytes };
}

export function isJsonRequest(req: IncomingMessage): boolean {
  return /^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '');
}

export function sendValidationError(res: ServerResponse, issues: readonly RunwayIssue[]): void {
  sendJson(res, 400, { error: describeIssues(issues), issues });
}

export function sendMethodNotAllowed(res: ServerResponse, allow: string): void {
  sendJson(res, 405, { error: 'Method not allowed' }, { allow });
}

/** Upload targets and output URLs answer like a storage bucket would: XML errors. */
export function sendS3Error(res: ServerResponse, status: number, code: string, message: string): void {
  const body = s3ErrorXml(code, message);
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** S3-style XML error body, as a presigned POST target answers. */
function s3ErrorXml(code: string, message: string): string {
  const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${escape(code)}</Code><Message>${escape(message)}</Message></Error>`;
}
