import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { REFUSED_URL } from '../support/refused.js';

/** One request as a loopback server received it, body included. */
export interface ReceivedRequest {
  readonly method: string;
  /** Path and query. */
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  /** `Date.now()` when the request's headers arrived. */
  readonly atMs: number;
}

export interface Loopback {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string;
  /** Every request so far, in arrival order. */
  readonly received: ReceivedRequest[];
  close(): Promise<void>;
}

/**
 * The answer for one request, given what has arrived so far. `reply` answers JSON (or any
 * text) with the given status and headers; a handler that needs more (a dropped socket, a
 * slow body) uses `res` directly.
 */
export type Script = (request: ReceivedRequest, res: http.ServerResponse, index: number) => void;

const open: Loopback[] = [];

/** Starts a server on 127.0.0.1, port 0, that reads each whole request before `script` answers it. */
export async function serveScript(script: Script): Promise<Loopback> {
  const received: ReceivedRequest[] = [];
  const server = http.createServer((req, res) => {
    const atMs = Date.now();
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks), atMs };
      received.push(request);
      script(request, res, received.length - 1);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const loopback: Loopback = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  open.push(loopback);
  return loopback;
}

/** Answers in turn with each of `answers`, then keeps answering with the last one. */
export function inTurn(...answers: readonly Script[]): Script {
  return (request, res, index) => {
    const answer = answers[Math.min(index, answers.length - 1)];
    if (answer === undefined) throw new Error('inTurn needs at least one answer');
    answer(request, res, index);
  };
}

/** A JSON answer (a string body is sent as it is). */
export function reply(status: number, body?: unknown, headers: Record<string, string> = {}): Script {
  return (_request, res) => {
    const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
    const type = typeof body === 'string' ? 'text/plain' : 'application/json';
    res.writeHead(status, { ...(body === undefined ? {} : { 'content-type': type }), ...headers });
    res.end(text);
  };
}

/** Closes the connection without answering. */
export const dropConnection: Script = (_request, res) => {
  res.socket?.destroy();
};

/** Never answers (the client's timeout has to end the exchange). */
export const neverAnswer: Script = () => undefined;

/** The request body parsed as JSON. */
export function jsonOf(request: ReceivedRequest | undefined): unknown {
  if (request === undefined) throw new Error('no such request');
  return JSON.parse(request.body.toString('utf8')) as unknown;
}

/** Closes every server started since the last call (for afterEach). */
export async function closeLoopbacks(): Promise<void> {
  await Promise.all(open.splice(0).map((loopback) => loopback.close()));
}

/** The rejection of `promise`, failing the test when it resolves instead. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value: unknown) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );
}

/** An address where nothing listens (connections are refused). */
export async function refusedUrl(): Promise<string> {
  return Promise.resolve(REFUSED_URL);
}
