import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Deps } from '../lib/deps.js';
import { handleCronGet, handleCronPost } from '../lib/handlers/cron-poll.js';
import { handleRunwayCallback } from '../lib/handlers/runway-callback.js';
import { handleStepUpload } from '../lib/handlers/step-upload.js';

/**
 * Serves the three `api/` handlers at their Vercel paths from one Node process, turning
 * each Node request into the Web `Request` the handlers take (raw body kept for
 * signature checks).
 */

type Handler = (request: Request, getDeps: () => Deps) => Promise<Response>;

const ROUTES: Record<string, Partial<Record<string, Handler>>> = {
  '/api/cron-poll': { GET: handleCronGet, POST: handleCronPost },
  '/api/runway-callback': { POST: handleRunwayCallback },
  '/api/step-upload': { POST: handleStepUpload },
};

/** Messages are small; anything bigger than this is not ours (Vercel caps bodies at 4.5 MB). */
const MAX_BODY_BYTES = 4.5 * 1024 * 1024;

async function toRequest(req: http.IncomingMessage, origin: string): Promise<Request> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new Error('body too large');
    chunks.push(buf);
  }
  const headers = new Headers();
  for (const [key, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(key, v);
  }
  const method = req.method ?? 'GET';
  return new Request(new URL(req.url ?? '/', origin), {
    method,
    headers,
    ...(method === 'GET' || method === 'HEAD' ? {} : { body: Buffer.concat(chunks) }),
  });
}

async function send(res: http.ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, key) => {
    headers[key] = value;
  });
  res.writeHead(response.status, headers);
  res.end(Buffer.from(await response.arrayBuffer()));
}

export interface WorkerServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** What `GET /healthz` answers: 200 while `ok`, 503 otherwise (a container HEALTHCHECK). */
export interface Health {
  readonly ok: boolean;
  readonly [detail: string]: unknown;
}

export async function startWorkerServer(getDeps: () => Deps, port = 0, health?: () => Health): Promise<WorkerServer> {
  let origin = 'http://127.0.0.1';
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', origin).pathname;
    if (path === '/healthz' && health && (req.method === 'GET' || req.method === 'HEAD')) {
      const state = health();
      void send(res, Response.json(state, { status: state.ok ? 200 : 503 }));
      return;
    }
    const handler = ROUTES[path]?.[req.method ?? 'GET'];
    const answer = async (): Promise<void> => {
      if (!ROUTES[path]) return send(res, Response.json({ error: 'not found' }, { status: 404 }));
      if (!handler) return send(res, Response.json({ error: 'method not allowed' }, { status: 405 }));
      // Like Vercel, the request URL carries the Host the caller used.
      const host = req.headers.host ? `http://${req.headers.host}` : origin;
      return send(res, await handler(await toRequest(req, host), getDeps));
    };
    answer().catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: error instanceof Error ? error.message : 'internal error' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${actual}`;
  return {
    url: origin,
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
