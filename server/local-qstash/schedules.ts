import { randomBytes } from 'node:crypto';
import type { Cron } from './cron.js';
import type { PublishInput, PublishResult } from './delivery-engine.js';
import type { PublishSpec } from './publish-request.js';
import type { LocalSchedule } from './types.js';

/** setTimeout fires at once for anything longer; longer waits are re-armed in steps. */
const MAX_TIMER_MS = 2_147_483_647;

/** What a create request asks for; a create with an existing id replaces it. */
export interface ScheduleDefinition {
  readonly cron: Cron;
  /** Destination, method, delay, retries, content type and forwarded headers of every message. */
  readonly spec: PublishSpec;
  readonly body: Buffer;
  /** The create request's headers, lower-case names, without credentials. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface ScheduleBookSettings {
  /** Multiplies the time between firings (1 = real time): the cron runs on a clock this much faster. */
  readonly timeScale: number;
  /** Hands a fired message to the delivery engine. */
  readonly publish: (input: PublishInput) => PublishResult;
}

interface ScheduleRecord {
  readonly scheduleId: string;
  definition: ScheduleDefinition;
  readonly createdAt: number;
  updatedAt: number;
  paused: boolean;
  timer: NodeJS.Timeout | undefined;
  nextFireAt: number | undefined;
  /** The scaled-clock minute fired last, so a timer waking early never fires one minute twice. */
  lastFiredVirtualMs: number;
  readonly firedMessageIds: string[];
}

/**
 * The schedules of the local QStash. Each fires on its cron (UTC) by publishing a message
 * through the delivery engine, like any other, with `Upstash-Schedule-Id` forwarded. The
 * cron runs on a clock that starts now and goes `1 / timeScale` times as fast as the wall
 * clock, so a ten-minute schedule fires every 6 s at a time scale of 0.01.
 */
export class ScheduleBook {
  private readonly records = new Map<string, ScheduleRecord>();
  private readonly originMs = Date.now();
  private closed = false;

  constructor(private readonly settings: ScheduleBookSettings) {}

  /** Creates the schedule, or replaces the one with the same id (QStash's upsert). */
  upsert(scheduleId: string | undefined, definition: ScheduleDefinition): { scheduleId: string; created: boolean } {
    const id = scheduleId ?? `scd_${randomBytes(12).toString('hex')}`;
    const now = Date.now();
    const existing = this.records.get(id);
    if (existing) {
      existing.definition = definition;
      existing.updatedAt = now;
      this.arm(existing);
      return { scheduleId: id, created: false };
    }
    const record: ScheduleRecord = {
      scheduleId: id,
      definition,
      createdAt: now,
      updatedAt: now,
      paused: false,
      timer: undefined,
      nextFireAt: undefined,
      lastFiredVirtualMs: Number.NEGATIVE_INFINITY,
      firedMessageIds: [],
    };
    this.records.set(id, record);
    this.arm(record);
    return { scheduleId: id, created: true };
  }

  get(scheduleId: string): LocalSchedule | undefined {
    const record = this.records.get(scheduleId);
    return record ? snapshot(record) : undefined;
  }

  list(): LocalSchedule[] {
    return [...this.records.values()].map(snapshot);
  }

  /** False when there was no such schedule. */
  remove(scheduleId: string): boolean {
    const record = this.records.get(scheduleId);
    if (!record) return false;
    this.disarm(record);
    this.records.delete(scheduleId);
    return true;
  }

  /** False when there is no such schedule. */
  setPaused(scheduleId: string, paused: boolean): boolean {
    const record = this.records.get(scheduleId);
    if (!record) return false;
    record.paused = paused;
    this.arm(record);
    return true;
  }

  close(): void {
    this.closed = true;
    for (const record of this.records.values()) this.disarm(record);
  }

  private virtualNowMs(): number {
    return this.originMs + (Date.now() - this.originMs) / this.settings.timeScale;
  }

  private arm(record: ScheduleRecord): void {
    this.disarm(record);
    if (this.closed || record.paused) return;
    const virtualNow = Math.max(this.virtualNowMs(), record.lastFiredVirtualMs);
    const dueVirtual = record.definition.cron.next(virtualNow);
    if (dueVirtual === undefined) return;
    const waitMs = (dueVirtual - virtualNow) * this.settings.timeScale;
    record.nextFireAt = Date.now() + waitMs;
    record.timer = setTimeout(() => {
      record.timer = undefined;
      if (waitMs > MAX_TIMER_MS) {
        this.arm(record);
        return;
      }
      record.lastFiredVirtualMs = dueVirtual;
      this.fire(record);
      this.arm(record);
    }, Math.min(waitMs, MAX_TIMER_MS));
  }

  private disarm(record: ScheduleRecord): void {
    if (record.timer !== undefined) clearTimeout(record.timer);
    record.timer = undefined;
    record.nextFireAt = undefined;
  }

  private fire(record: ScheduleRecord): void {
    const { spec, body, headers } = record.definition;
    const scheduleHeader = { 'upstash-schedule-id': record.scheduleId };
    const result = this.settings.publish({
      spec: { ...spec, forwardedHeaders: { ...spec.forwardedHeaders, ...scheduleHeader } },
      body,
      headers: { ...headers, ...scheduleHeader },
    });
    if (result.kind !== 'closed') record.firedMessageIds.push(result.messageId);
  }
}

function snapshot(record: ScheduleRecord): LocalSchedule {
  const { spec, body, headers, cron } = record.definition;
  return {
    scheduleId: record.scheduleId,
    cron: cron.expression,
    destination: spec.destination,
    method: spec.method,
    body: body.toString('utf8'),
    contentType: spec.contentType,
    headers,
    forwardedHeaders: spec.forwardedHeaders,
    retries: spec.retries,
    delayMs: spec.delayMs,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    isPaused: record.paused,
    nextFireAt: record.nextFireAt,
    firedMessageIds: [...record.firedMessageIds],
  };
}
