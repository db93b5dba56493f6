import { z } from 'zod';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import type { ItemRequest } from './observation.js';
import { taskIdOfPath, type TaskRequest } from './runway-phases.js';

/**
 * The requests the sandbox services recorded, picked apart for the figures. A record is made
 * when a request arrives, before any fault decides its answer: a request here is one the
 * worker sent, not necessarily one that took effect.
 */

const releaseBody = z.object({ item_id: z.string(), extend_seconds: z.literal(0) });

/** Leases given back: heartbeats asking for `extend_seconds: 0` (contract §1.3). */
export function releasesIn(requests: readonly RecordedRequest[]): ItemRequest[] {
  return requests.flatMap((request) => {
    if (request.service !== 'app' || !request.path.startsWith('/worker/heartbeat')) return [];
    const body = releaseBody.safeParse(request.json);
    return body.success ? [{ item_id: body.data.item_id, at: request.at }] : [];
  });
}

/** `GET` (polls) or `DELETE` (cancels) of `/v1/tasks/{id}` at the sandbox Runway. */
export function taskRequestsIn(requests: readonly RecordedRequest[], method: 'GET' | 'DELETE'): TaskRequest[] {
  return requests.flatMap((request) => {
    if (request.service !== 'runway' || request.method !== method) return [];
    const taskId = taskIdOfPath(request.path);
    return taskId === undefined ? [] : [{ taskId, at: request.at }];
  });
}
