/**
 * An in-process stand-in for QStash on 127.0.0.1 (contract.md §3). The real `Client`
 * publishes to it (`new Client({ token, baseUrl: localQStash.url, devMode: false })`) and
 * the real `Receiver` accepts its deliveries. It also keeps schedules (`client.schedules`),
 * which fire on their cron at the same time scale as every delay. The official dev server
 * cannot be used: it downloads a binary at install.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { DEDUPLICATION_WINDOW_MS } from './local-qstash/deduplication-window.js';
import { DeliveryEngine } from './local-qstash/delivery-engine.js';
import { defaultRetryDelayMs } from './local-qstash/delivery-policy.js';
import { PayloadTooLargeError, readBody, recordedHeaders, sendJson } from './local-qstash/http.js';
import { MAX_MESSAGE_BYTES, PUBLISH_PATH_PREFIX, parsePublishRequest } from './local-qstash/publish-request.js';
import { SCHEDULES_PATH, handleScheduleRequest } from './local-qstash/schedule-api.js';
import { ScheduleBook } from './local-qstash/schedules.js';
import type { LocalQStash, LocalQStashEvent, LocalQStashOptions } from './local-qstash/types.js';

export type {
  DeliveryAttempt,
  LocalMessage,
  LocalQStash,
  LocalQStashEvent,
  LocalQStashFaults,
  LocalQStashOptions,
  LocalQStashStats,
  LocalSchedule,
  MessageState,
} from './local-qstash/types.js';

/** Above a Vercel function's 300 s limit, so the function times out first. */
const DEFAULT_DELIVERY_TIMEOUT_MS = 310_000;

export async function startLocalQStash(options: LocalQStashOptions): Promise<LocalQStash> {
  assertValidOptions(options);
  const engine = new DeliveryEngine({
    signingKey: options.currentSigningKey,
    timeScale: options.timeScale ?? 1,
    retryDelayMs: options.retryDelayMs ?? defaultRetryDelayMs,
    deliveryTimeoutMs: options.deliveryTimeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS,
    deduplicationWindowMs: options.deduplicationWindowMs ?? DEDUPLICATION_WINDOW_MS,
    faults: options.faults,
    emit: createEmitter(options.onEvent),
  });
  const schedules = new ScheduleBook({ timeScale: options.timeScale ?? 1, publish: (input) => engine.publish(input) });

  const server = createServer((req, res) => {
    handleRequest(req, res, engine, schedules, options.token).catch((error: unknown) => {
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { error: `local QStash failed: ${String(error)}` });
    });
  });
  const port = await listen(server, options.port ?? 0);

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      closing ??= closeAll(server, engine, schedules);
      return closing;
    },
    idle: () => engine.idle(),
    stats: () => engine.stats(),
    messages: () => engine.messages(),
    schedules: () => schedules.list(),
  };
}

async function handleRequest(
  req: IncomingMessage,
  res: ServerResponse,
  engine: DeliveryEngine,
  schedules: ScheduleBook,
  token: string,
): Promise<void> {
  const path = req.url ?? '/';
  if (path === SCHEDULES_PATH || path.startsWith(`${SCHEDULES_PATH}/`)) {
    if (req.headers.authorization !== `Bearer ${token}`) sendJson(res, 401, { error: 'Unauthorized' });
    else await handleScheduleRequest(req, res, schedules);
    return;
  }
  if (!path.startsWith(PUBLISH_PATH_PREFIX)) {
    sendJson(res, 404, { error: `local QStash serves only ${PUBLISH_PATH_PREFIX}<destination> and ${SCHEDULES_PATH}` });
    return;
  }
  if (req.method !== 'POST') {
    sendJson(res, 405, { error: `method ${String(req.method)} not allowed` }, { allow: 'POST' });
    return;
  }
  if (req.headers.authorization !== `Bearer ${token}`) {
    sendJson(res, 401, { error: 'Unauthorized' });
    return;
  }

  let body: Buffer;
  try {
    body = await readBody(req, MAX_MESSAGE_BYTES);
  } catch (error) {
    if (!(error instanceof PayloadTooLargeError)) throw error;
    sendJson(res, 413, { error: error.message }, { connection: 'close' });
    return;
  }

  const headers = recordedHeaders(req);
  const parsed = parsePublishRequest(path, headers, Date.now());
  if (!parsed.ok) {
    sendJson(res, parsed.status, { error: parsed.error });
    return;
  }
  const url = parsed.spec.destination;
  const result = engine.publish({ spec: parsed.spec, body, headers });
  switch (result.kind) {
    case 'accepted':
      sendJson(res, 201, { messageId: result.messageId, url });
      return;
    case 'deduplicated':
      sendJson(res, 202, { messageId: result.messageId, url, deduplicated: true });
      return;
    case 'closed':
      sendJson(res, 503, { error: 'local QStash is closing' });
      return;
  }
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error(`unexpected listen address ${String(address)}`));
      else resolve(address.port);
    });
  });
}

async function closeAll(server: Server, engine: DeliveryEngine, schedules: ScheduleBook): Promise<void> {
  schedules.close();
  const serverClosed = new Promise<void>((resolve, reject) => {
    server.close((error) => {
      if (error) reject(error);
      else resolve();
    });
  });
  server.closeIdleConnections();
  await engine.close();
  server.closeAllConnections();
  await serverClosed;
}

function createEmitter(onEvent: LocalQStashOptions['onEvent']): (event: LocalQStashEvent) => void {
  if (onEvent === undefined) return () => undefined;
  return (event) => {
    try {
      onEvent(event);
    } catch (error) {
      process.emitWarning(`local QStash onEvent listener threw on "${event.type}": ${String(error)}`);
    }
  };
}

function assertValidOptions(options: LocalQStashOptions): void {
  const problems: string[] = [];
  if (options.token === '') problems.push('token is empty');
  if (options.currentSigningKey === '') problems.push('currentSigningKey is empty');
  if (options.nextSigningKey === '') problems.push('nextSigningKey is empty');
  const { timeScale, deliveryTimeoutMs, deduplicationWindowMs, faults } = options;
  if (timeScale !== undefined && !(Number.isFinite(timeScale) && timeScale > 0)) {
    problems.push(`timeScale must be a positive number, got ${timeScale}`);
  }
  if (deliveryTimeoutMs !== undefined && !(Number.isFinite(deliveryTimeoutMs) && deliveryTimeoutMs > 0)) {
    problems.push(`deliveryTimeoutMs must be a positive number, got ${deliveryTimeoutMs}`);
  }
  if (deduplicationWindowMs !== undefined && !(Number.isFinite(deduplicationWindowMs) && deduplicationWindowMs >= 0)) {
    problems.push(`deduplicationWindowMs must be zero or more, got ${deduplicationWindowMs}`);
  }
  for (const name of ['duplicateRate', 'lateDuplicateRate'] as const) {
    const rate = faults?.[name];
    if (rate !== undefined && !(rate >= 0 && rate <= 1)) problems.push(`faults.${name} must be within 0..1, got ${rate}`);
  }
  const jitterMs = faults?.reorderJitterMs;
  if (jitterMs !== undefined && !(Number.isFinite(jitterMs) && jitterMs >= 0)) {
    problems.push(`faults.reorderJitterMs must be zero or more, got ${jitterMs}`);
  }
  if (problems.length > 0) throw new TypeError(`invalid local QStash options: ${problems.join('; ')}`);
}
