import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseCron } from './cron.js';
import { PayloadTooLargeError, readBody, recordedHeaders, sendJson } from './http.js';
import { MAX_MESSAGE_BYTES, PUBLISH_PATH_PREFIX, parsePublishRequest } from './publish-request.js';
import type { ScheduleBook } from './schedules.js';
import type { LocalSchedule } from './types.js';

export const SCHEDULES_PATH = '/v2/schedules';

/**
 * QStash's schedules API as `client.schedules` calls it: `POST /v2/schedules/<destination>`
 * with `Upstash-Cron` (and `Upstash-Schedule-Id` to create or replace a named one), `GET
 * /v2/schedules`, `GET` and `DELETE /v2/schedules/<id>`, `PATCH /v2/schedules/<id>/pause`
 * and `/resume`. The caller has checked the token.
 */
export async function handleScheduleRequest(req: IncomingMessage, res: ServerResponse, book: ScheduleBook): Promise<void> {
  const path = req.url ?? '/';
  const method = req.method ?? 'GET';
  if (path === SCHEDULES_PATH) {
    if (method === 'GET') sendJson(res, 200, book.list().map(toApiSchedule));
    else sendJson(res, 405, { error: `method ${method} not allowed` }, { allow: 'GET' });
    return;
  }
  const rest = path.slice(SCHEDULES_PATH.length + 1);
  if (method === 'POST') {
    await createSchedule(req, res, book, rest);
    return;
  }
  const pausing = /^([^/]+)\/(pause|resume)$/.exec(rest);
  if (method === 'PATCH' && pausing) {
    const [, id = '', action] = pausing;
    if (book.setPaused(decodeURIComponent(id), action === 'pause')) sendJson(res, 200, {});
    else sendJson(res, 404, { error: 'schedule not found' });
    return;
  }
  const id = decodeURIComponent(rest);
  if (rest === '' || rest.includes('/')) {
    sendJson(res, 404, { error: `no route for ${method} ${path}` });
  } else if (method === 'GET') {
    const schedule = book.get(id);
    if (schedule) sendJson(res, 200, toApiSchedule(schedule));
    else sendJson(res, 404, { error: 'schedule not found' });
  } else if (method === 'DELETE') {
    if (book.remove(id)) sendJson(res, 200, {});
    else sendJson(res, 404, { error: 'schedule not found' });
  } else {
    sendJson(res, 405, { error: `method ${method} not allowed` }, { allow: 'GET, DELETE' });
  }
}

async function createSchedule(req: IncomingMessage, res: ServerResponse, book: ScheduleBook, destination: string): Promise<void> {
  let body: Buffer;
  try {
    body = await readBody(req, MAX_MESSAGE_BYTES);
  } catch (error) {
    if (!(error instanceof PayloadTooLargeError)) throw error;
    sendJson(res, 413, { error: error.message }, { connection: 'close' });
    return;
  }
  const headers = recordedHeaders(req);
  const cronHeader = headers['upstash-cron'];
  if (cronHeader === undefined) {
    sendJson(res, 400, { error: 'missing Upstash-Cron header' });
    return;
  }
  const cron = parseCron(cronHeader);
  if (!cron.ok) {
    sendJson(res, 400, { error: `invalid Upstash-Cron: ${cron.error}` });
    return;
  }
  // The same headers as a publish steer every message the schedule sends.
  const parsed = parsePublishRequest(`${PUBLISH_PATH_PREFIX}${destination}`, headers, Date.now());
  if (!parsed.ok) {
    sendJson(res, parsed.status, { error: parsed.error });
    return;
  }
  const scheduleId = headers['upstash-schedule-id'];
  if (scheduleId !== undefined && !/^[A-Za-z0-9_.-]+$/.test(scheduleId)) {
    sendJson(res, 400, { error: `invalid Upstash-Schedule-Id: ${JSON.stringify(scheduleId)}` });
    return;
  }
  // Each firing is a new message: a publish-style deduplication id would drop all but the first.
  const spec = { ...parsed.spec, notBeforeMs: undefined, deduplicationId: undefined, contentBasedDeduplication: false };
  const created = book.upsert(scheduleId, { cron: cron.cron, spec, body, headers });
  sendJson(res, 200, { scheduleId: created.scheduleId });
}

/** The schedule in the shape QStash's REST API answers with. */
function toApiSchedule(schedule: LocalSchedule): Record<string, unknown> {
  const header: Record<string, string[]> = {};
  if (schedule.contentType !== undefined) header['Content-Type'] = [schedule.contentType];
  for (const [name, value] of Object.entries(schedule.forwardedHeaders)) header[name] = [value];
  return {
    scheduleId: schedule.scheduleId,
    cron: schedule.cron,
    createdAt: schedule.createdAt,
    destination: schedule.destination,
    method: schedule.method,
    header,
    body: schedule.body,
    retries: schedule.retries,
    ...(schedule.delayMs === undefined ? {} : { delay: Math.round(schedule.delayMs / 1000) }),
    isPaused: schedule.isPaused,
    ...(schedule.nextFireAt === undefined ? {} : { nextScheduleTime: schedule.nextFireAt }),
  };
}
