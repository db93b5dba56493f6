import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Loopback stand-ins for the outside services, for the cases the sandbox cannot produce
 * on its own: a JSON API in front of a sandbox service that forwards every request
 * unchanged unless told to answer it or bend the answer, and a socket trap that accepts
 * connections, counts them and never answers.
 */

export interface StandInRequest {
  readonly method: string;
  /** Path relative to the stand-in's base URL, query string kept (`/worker/next-task`). */
  readonly path: string;
  /** Parsed JSON body, or undefined when there was none or it was not JSON. */
  readonly json: unknown;
}

export interface StandInReply {
  readonly status: number;
  /** JSON body; undefined sends an empty body. */
  readonly json?: unknown;
}

export interface StandInOptions {
  /** Base URL of the service behind, e.g. `sandbox.nextApiUrl`; the stand-in mirrors its path. */
  readonly target: string;
  /** Answers a request itself (the service behind never sees it); undefined forwards it. */
  readonly answer?: (request: StandInRequest) => StandInReply | undefined;
  /** Changes the service's answer on its way back to the worker. */
  readonly rewrite?: (request: StandInRequest, reply: StandInReply) => StandInReply | Promise<StandInReply>;
}

export interface StandIn {
  /** Base URL to configure the worker with: same path as the target's, another port. */
  readonly url: string;
  /** Every request the stand-in received, oldest first. */
  requests(): readonly StandInRequest[];
}

export interface SocketTrap {
  readonly port: number;
  /** Connections accepted so far, from any address family. */
  connections(): number;
}

const closers = new Set<() => Promise<void>>();

/** Closes every stand-in and trap still open; call from `afterEach`. */
export async function closeStandIns(): Promise<void> {
  const pending = [...closers];
  closers.clear();
  await Promise.all(pending.map((close) => close()));
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

async function readText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function listen(server: Server, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

function register(server: Server): void {
  closers.add(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
}

const FORWARDED_HEADERS = ['authorization', 'content-type', 'x-runway-version'] as const;

export async function startStandIn(options: StandInOptions): Promise<StandIn> {
  const target = new URL(options.target);
  const mount = target.pathname.replace(/\/+$/, '');
  const seen: StandInRequest[] = [];

  const server = createServer((req, res) => {
    const respond = async (): Promise<void> => {
      const raw = await readText(req);
      const full = req.url ?? '/';
      const request: StandInRequest = {
        method: req.method ?? 'GET',
        path: full.startsWith(mount) ? full.slice(mount.length) || '/' : full,
        json: parseJson(raw),
      };
      seen.push(request);
      let reply = options.answer?.(request);
      if (reply === undefined) {
        const headers: Record<string, string> = {};
        for (const name of FORWARDED_HEADERS) {
          const value = req.headers[name];
          if (typeof value === 'string') headers[name] = value;
        }
        const forwarded = await fetch(`${target.origin}${mount}${request.path}`, {
          method: request.method,
          headers,
          ...(raw === '' || request.method === 'GET' ? {} : { body: raw }),
        });
        const text = await forwarded.text();
        reply = { status: forwarded.status, json: parseJson(text) };
        if (options.rewrite) reply = await options.rewrite(request, reply);
      }
      const body = reply.json === undefined ? '' : JSON.stringify(reply.json);
      res.writeHead(reply.status, body === '' ? {} : { 'content-type': 'application/json' });
      res.end(body);
    };
    respond().catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: `stand-in failed: ${String(error)}` }));
    });
  });
  const port = await listen(server, '127.0.0.1');
  register(server);
  return { url: `http://127.0.0.1:${port}${mount}`, requests: () => [...seen] };
}

export interface SocketTrapOptions {
  /** Answer every request with these bytes; without it requests are held unanswered. */
  readonly reply?: { readonly contentType: string; readonly body: Uint8Array };
}

/**
 * Accepts TCP connections on every local address (`::` also takes IPv4) and counts them:
 * a photo URL that hangs (it never answers), or a witness that no socket was opened at all.
 */
export async function startSocketTrap(options: SocketTrapOptions = {}): Promise<SocketTrap> {
  let accepted = 0;
  const server = createServer((req, res) => {
    const reply = options.reply;
    // Without a reply the request is held open: the client's own timeout ends the exchange.
    if (!reply) return;
    req.resume();
    res.writeHead(200, { 'content-type': reply.contentType, 'content-length': String(reply.body.byteLength) });
    res.end(reply.body);
  });
  server.on('connection', () => {
    accepted += 1;
  });
  const port = await listen(server, '::');
  register(server);
  return { port, connections: () => accepted };
}
