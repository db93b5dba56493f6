import { randomBytes } from 'node:crypto';
import { DeduplicationWindow } from './deduplication-window.js';
import { deliverOnce, type DeliverableMessage, type DeliveryResult } from './deliver.js';
import { decideNextStep, isSuccess } from './delivery-policy.js';
import { deduplicationKey, firstDeliveryDelayMs, type PublishSpec } from './publish-request.js';
import type {
  DeliveryAttempt,
  LocalMessage,
  LocalQStashEvent,
  LocalQStashFaults,
  LocalQStashStats,
  MessageState,
} from './types.js';

/** setTimeout fires at once for anything longer; longer waits are re-armed in steps. */
const MAX_TIMER_MS = 2_147_483_647;
const LATE_DUPLICATE_MIN_MS = 1_000;
const LATE_DUPLICATE_SPREAD_MS = 19_000;

export interface DeliveryEngineSettings {
  readonly signingKey: string;
  readonly timeScale: number;
  readonly retryDelayMs: (retried: number) => number;
  readonly deliveryTimeoutMs: number;
  readonly deduplicationWindowMs: number;
  readonly faults: LocalQStashFaults | undefined;
  readonly emit: (event: LocalQStashEvent) => void;
}

export interface PublishInput {
  readonly spec: PublishSpec;
  readonly body: Buffer;
  /** Publish request headers to keep on record, without credentials. */
  readonly headers: Readonly<Record<string, string>>;
}

export type PublishResult =
  | { readonly kind: 'accepted'; readonly messageId: string }
  | { readonly kind: 'deduplicated'; readonly messageId: string }
  | { readonly kind: 'closed' };

interface MessageRecord extends DeliverableMessage {
  readonly body: Buffer;
  readonly headers: Readonly<Record<string, string>>;
  readonly retries: number;
  readonly deduplicationId: string | undefined;
  readonly publishedAt: number;
  readonly firstDeliveryAt: number;
  state: MessageState;
  readonly attempts: DeliveryAttempt[];
}

type Counters = { -readonly [K in keyof LocalQStashStats]: number };

/**
 * Holds accepted messages and drives their deliveries: timers, attempts, retries,
 * injected faults, and the bookkeeping `idle()` and `close()` rely on.
 */
export class DeliveryEngine {
  private readonly records: MessageRecord[] = [];
  private readonly deduplication: DeduplicationWindow;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly shutdown = new AbortController();
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  private readonly counters: Counters = {
    published: 0,
    deduplicated: 0,
    deliveries: 0,
    succeeded: 0,
    retried: 0,
    failed: 0,
    stoppedBy489: 0,
    duplicatesInjected: 0,
  };

  constructor(private readonly settings: DeliveryEngineSettings) {
    this.deduplication = new DeduplicationWindow(settings.deduplicationWindowMs);
  }

  publish(input: PublishInput): PublishResult {
    if (this.closed) return { kind: 'closed' };
    const { spec, body } = input;
    const now = Date.now();
    const key = deduplicationKey(spec, body);
    if (key !== undefined) {
      const original = this.deduplication.find(key, now);
      if (original !== undefined) {
        this.counters.deduplicated += 1;
        this.settings.emit({
          type: 'deduplicated',
          messageId: original,
          url: spec.destination,
          deduplicationId: spec.deduplicationId ?? key,
        });
        return { kind: 'deduplicated', messageId: original };
      }
    }

    const messageId = `msg_${randomBytes(16).toString('hex')}`;
    if (key !== undefined) this.deduplication.remember(key, messageId, now);
    const delayMs = this.scale(firstDeliveryDelayMs(spec, now)) + this.jitterMs();
    const record: MessageRecord = {
      messageId,
      url: spec.destination,
      method: spec.method,
      body,
      contentType: spec.contentType,
      forwardedHeaders: Object.freeze({ ...spec.forwardedHeaders }),
      headers: Object.freeze({ ...input.headers }),
      retries: spec.retries,
      deduplicationId: spec.deduplicationId,
      publishedAt: now,
      firstDeliveryAt: now + delayMs,
      state: 'scheduled',
      attempts: [],
    };
    this.records.push(record);
    this.counters.published += 1;
    this.settings.emit({ type: 'published', messageId, url: record.url, deliverAt: record.firstDeliveryAt });
    this.schedule(delayMs, () => this.runAttempt(record, 0));
    return { kind: 'accepted', messageId };
  }

  stats(): LocalQStashStats {
    return { ...this.counters };
  }

  messages(): readonly LocalMessage[] {
    return this.records.map((record) => ({
      messageId: record.messageId,
      url: record.url,
      method: record.method,
      body: record.body.toString('utf8'),
      headers: record.headers,
      forwardedHeaders: record.forwardedHeaders,
      retries: record.retries,
      deduplicationId: record.deduplicationId,
      publishedAt: record.publishedAt,
      firstDeliveryAt: record.firstDeliveryAt,
      state: record.state,
      attempts: [...record.attempts],
    }));
  }

  idle(): Promise<void> {
    if (this.closed || this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.shutdown.abort();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    for (const record of this.records) {
      if (record.state === 'scheduled' || record.state === 'delivering') record.state = 'cancelled';
    }
    this.releaseIdleWaiters();
  }

  private async runAttempt(record: MessageRecord, retried: number): Promise<void> {
    record.state = 'delivering';
    if (this.faultHappens(this.settings.faults?.duplicateRate)) {
      this.counters.duplicatesInjected += 1;
      this.track(this.runDuplicate(record, retried));
    }
    const result = await this.attempt(record, retried, false);
    if (this.closed) return;

    const { url, messageId } = record;
    const step = decideNextStep(result.outcome, retried, record.retries, this.settings.retryDelayMs);
    switch (step.kind) {
      case 'succeeded':
        record.state = 'succeeded';
        this.counters.succeeded += 1;
        this.settings.emit({ type: 'delivered', messageId, url, retried, status: result.status ?? 0, duplicate: false });
        this.maybeDeliverLate(record, retried);
        return;
      case 'stopped':
        record.state = 'stopped';
        this.counters.stoppedBy489 += 1;
        this.settings.emit({ type: 'stopped', messageId, url, retried });
        return;
      case 'failed':
        record.state = 'failed';
        this.counters.failed += 1;
        this.settings.emit({ type: 'failed', messageId, url, retried, status: result.status, error: result.error });
        return;
      case 'retry': {
        record.state = 'scheduled';
        this.counters.retried += 1;
        const delayMs = this.scale(step.delayMs) + this.jitterMs();
        this.settings.emit({
          type: 'retry',
          messageId,
          url,
          retried: step.retried,
          status: result.status,
          error: result.error,
          delayMs,
        });
        this.schedule(delayMs, () => this.runAttempt(record, step.retried));
        return;
      }
    }
  }

  /** An injected extra delivery: recorded and reported, but it never steers retries. */
  private async runDuplicate(record: MessageRecord, retried: number): Promise<void> {
    const result = await this.attempt(record, retried, true);
    if (this.closed || result.status === undefined) return;
    if (isSuccess(result.status)) {
      this.settings.emit({
        type: 'delivered',
        messageId: record.messageId,
        url: record.url,
        retried,
        status: result.status,
        duplicate: true,
      });
    }
  }

  private maybeDeliverLate(record: MessageRecord, retried: number): void {
    const faults = this.settings.faults;
    if (faults === undefined || !this.faultHappens(faults.lateDuplicateRate)) return;
    this.counters.duplicatesInjected += 1;
    const delayMs = this.scale(LATE_DUPLICATE_MIN_MS + faults.rng() * LATE_DUPLICATE_SPREAD_MS) + this.jitterMs();
    this.schedule(delayMs, () => this.runDuplicate(record, retried));
  }

  private async attempt(record: MessageRecord, retried: number, duplicate: boolean): Promise<DeliveryResult> {
    const at = Date.now();
    this.counters.deliveries += 1;
    const result = await deliverOnce({
      message: record,
      retried,
      signingKey: this.settings.signingKey,
      timeoutMs: this.settings.deliveryTimeoutMs,
      signal: this.shutdown.signal,
    });
    record.attempts.push({
      retried,
      at,
      durationMs: Date.now() - at,
      status: result.status,
      error: result.error,
      responseBody: result.responseBody,
      duplicate,
    });
    return result;
  }

  private schedule(delayMs: number, task: () => Promise<void>): void {
    if (this.closed) return;
    const dueAt = Date.now() + delayMs;
    const arm = (): void => {
      const remainingMs = Math.max(0, dueAt - Date.now());
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (remainingMs > MAX_TIMER_MS) arm();
        else this.track(task());
      }, Math.min(remainingMs, MAX_TIMER_MS));
      this.timers.add(timer);
    };
    arm();
  }

  /** Keeps a running task counted until it settles; tasks report through events, never by rejecting. */
  private track(task: Promise<void>): void {
    const tracked: Promise<void> = task
      .catch((error: unknown) => {
        process.emitWarning(`local QStash delivery task failed: ${String(error)}`);
      })
      .finally(() => {
        this.inFlight.delete(tracked);
        if (this.isIdle()) this.releaseIdleWaiters();
      });
    this.inFlight.add(tracked);
  }

  private isIdle(): boolean {
    return this.timers.size === 0 && this.inFlight.size === 0;
  }

  private releaseIdleWaiters(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private faultHappens(rate: number | undefined): boolean {
    const faults = this.settings.faults;
    return faults !== undefined && rate !== undefined && rate > 0 && faults.rng() < rate;
  }

  private jitterMs(): number {
    const faults = this.settings.faults;
    const maxMs = faults?.reorderJitterMs ?? 0;
    return faults !== undefined && maxMs > 0 ? this.scale(faults.rng() * maxMs) : 0;
  }

  private scale(ms: number): number {
    return ms * this.settings.timeScale;
  }
}
