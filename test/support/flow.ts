import { pollMessageSchema, uploadMessageSchema, type Job, type UploadMessage } from '../../lib/steps/messages.js';
import type { RecordedRequest } from '../../sandbox/http-util.js';
import { seedItem, startHarness, until, type Harness, type HarnessOptions, type Mark } from './harness.js';

/**
 * Moves an item along the real pipeline the way QStash would, one signed delivery at a
 * time, so a test can start from any step with a genuine Runway task behind it.
 */

/** The poll messages published for one item, oldest first, parsed with the worker's own schema. */
export function pollJobs(harness: Harness, itemId: string): Job[] {
  return harness
    .messages('/api/runway-callback')
    .map((message) => pollMessageSchema.parse(JSON.parse(message.body)).job)
    .filter((job) => job.item_id === itemId);
}

export function uploadMessages(harness: Harness, itemId: string): UploadMessage[] {
  return harness
    .messages('/api/step-upload')
    .map((message) => uploadMessageSchema.parse(JSON.parse(message.body)))
    .filter((message) => message.job.item_id === itemId);
}

/** Runs cron-poll and returns the first poll job published for `itemId`. */
export async function submit(harness: Harness, itemId: string): Promise<Job> {
  const answer = await harness.cron();
  if (answer.status !== 200) throw new Error(`cron-poll answered ${answer.status}: ${JSON.stringify(answer.json)}`);
  const [job] = pollJobs(harness, itemId);
  if (!job) throw new Error(`cron-poll published no poll for ${itemId}: ${JSON.stringify(answer.json)}`);
  return job;
}

export async function waitForTaskStatus(harness: Harness, taskId: string, status: string): Promise<void> {
  await until(() => harness.sandbox.runway.task(taskId)?.status === status, `Runway task ${taskId} to be ${status}`);
}

/** Submits the item, lets its Runway task finish, delivers one poll, and returns the upload message it published. */
export async function finishedUpload(harness: Harness, itemId: string): Promise<UploadMessage> {
  const job = await submit(harness, itemId);
  await waitForTaskStatus(harness, job.runway_task_id, 'SUCCEEDED');
  const answer = await harness.deliver('/api/runway-callback', { job });
  if (answer.status !== 200) throw new Error(`runway-callback answered ${answer.status}: ${JSON.stringify(answer.json)}`);
  const [message] = uploadMessages(harness, itemId);
  if (!message) throw new Error(`no upload message for ${itemId}`);
  return message;
}

/** One item whose Runway task has succeeded, with its upload message ready to deliver. */
export interface ReadyToUpload {
  readonly harness: Harness;
  readonly message: UploadMessage;
  readonly itemId: string;
  readonly taskId: string;
  readonly videoPath: string;
  /** Taken once the upload message was published. */
  readonly mark: Mark;
}

export async function readyToUpload(options: HarnessOptions = {}): Promise<ReadyToUpload> {
  const item = seedItem('landscape.jpg');
  const harness = await startHarness({ ...options, items: [item] });
  const message = await finishedUpload(harness, item.item_id);
  return {
    harness,
    message,
    itemId: item.item_id,
    taskId: message.job.runway_task_id,
    videoPath: `videos/${item.item_id}.mp4`,
    mark: harness.mark(),
  };
}

/** `service METHOD path`, the query string left out: how tests list what the services received. */
export const describeRequest = (request: Pick<RecordedRequest, 'service' | 'method' | 'path'>): string =>
  `${request.service} ${request.method} ${request.path.split('?')[0] ?? ''}`;
