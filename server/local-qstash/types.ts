export interface LocalQStashFaults {
  /** The only randomness the faults use, so a seeded run can be replayed. */
  readonly rng: () => number;
  /** Chance that a delivery attempt is sent twice at once (same message id and `Upstash-Retried`). */
  readonly duplicateRate?: number;
  /** Chance that a successfully delivered message is delivered once more, 1–20 s (scaled) later. */
  readonly lateDuplicateRate?: number;
  /** Up to this much extra delay (unscaled ms) on every scheduled delivery, so messages overtake each other. */
  readonly reorderJitterMs?: number;
}

export interface LocalQStashOptions {
  /** Bearer token the publisher must send; anything else gets 401. */
  readonly token: string;
  /** Deliveries are signed with this key (HS256, the literal `sig_...` string as the key). */
  readonly currentSigningKey: string;
  /** Kept for symmetry with the Receiver; deliveries are never signed with it. */
  readonly nextSigningKey: string;
  /** Default 0: the system picks a free port. */
  readonly port?: number;
  /** Multiplies every delay (Upstash-Delay, Not-Before, retry backoff, Retry-After, fault delays). 1 = real time. */
  readonly timeScale?: number;
  /** Backoff before redelivery number `retried` (1-based), in unscaled ms. Default: QStash's `min(1 day, e^(2.5 n)) s`. */
  readonly retryDelayMs?: (retried: number) => number;
  /** Per delivery attempt, in real (unscaled) ms. Default 310 000. */
  readonly deliveryTimeoutMs?: number;
  /** How long a deduplication id is remembered, in real (unscaled) ms. Default 10 minutes. */
  readonly deduplicationWindowMs?: number;
  readonly faults?: LocalQStashFaults;
  /** Called synchronously for every event; an exception thrown here is reported as a process warning. */
  readonly onEvent?: (event: LocalQStashEvent) => void;
}

export interface LocalQStashStats {
  /** Publishes accepted for delivery (duplicates by deduplication id not included). */
  readonly published: number;
  /** Publishes answered 202 and dropped as duplicates. */
  readonly deduplicated: number;
  /** HTTP delivery attempts made, injected duplicates included. */
  readonly deliveries: number;
  /** Messages whose delivery got a 2xx. */
  readonly succeeded: number;
  /** Redeliveries scheduled after a failed attempt. */
  readonly retried: number;
  /** Messages that used up their retries without a 2xx. */
  readonly failed: number;
  /** Messages stopped by 489 + `Upstash-NonRetryable-Error: true`. */
  readonly stoppedBy489: number;
  /** Extra deliveries injected by `faults` (concurrent and late). */
  readonly duplicatesInjected: number;
}

export type MessageState = 'scheduled' | 'delivering' | 'succeeded' | 'failed' | 'stopped' | 'cancelled';

export interface DeliveryAttempt {
  /** The `Upstash-Retried` value sent. */
  readonly retried: number;
  /** Epoch ms when the request started. */
  readonly at: number;
  readonly durationMs: number;
  /** HTTP status, or undefined when the attempt ended without an answer. */
  readonly status: number | undefined;
  /** Network error, timeout or abort, when there was no answer. */
  readonly error: string | undefined;
  /** First 1 KB of the answer body, for debugging. */
  readonly responseBody: string;
  /** Injected by `faults`; its outcome does not steer retries. */
  readonly duplicate: boolean;
}

export interface LocalMessage {
  readonly messageId: string;
  /** Destination URL exactly as published. */
  readonly url: string;
  readonly method: string;
  /** The published body as UTF-8 text; the delivery carries the exact bytes. */
  readonly body: string;
  /** Headers of the publish request, lower-case names, without `authorization`. */
  readonly headers: Readonly<Record<string, string>>;
  /** `Upstash-Forward-*` headers as delivered, without the prefix. */
  readonly forwardedHeaders: Readonly<Record<string, string>>;
  readonly retries: number;
  readonly deduplicationId: string | undefined;
  /** Epoch ms. */
  readonly publishedAt: number;
  /** Epoch ms of the first delivery as scheduled (after scaling and jitter). */
  readonly firstDeliveryAt: number;
  readonly state: MessageState;
  readonly attempts: readonly DeliveryAttempt[];
}

interface MessageEventBase {
  readonly messageId: string;
  readonly url: string;
}

export type LocalQStashEvent =
  | (MessageEventBase & { readonly type: 'published'; readonly deliverAt: number })
  | (MessageEventBase & { readonly type: 'deduplicated'; readonly deduplicationId: string })
  | (MessageEventBase & {
      readonly type: 'delivered';
      readonly retried: number;
      readonly status: number;
      readonly duplicate: boolean;
    })
  | (MessageEventBase & {
      readonly type: 'retry';
      /** The `Upstash-Retried` value of the coming redelivery. */
      readonly retried: number;
      readonly status: number | undefined;
      readonly error: string | undefined;
      /** Scaled ms until the redelivery. */
      readonly delayMs: number;
    })
  | (MessageEventBase & {
      readonly type: 'failed';
      readonly retried: number;
      readonly status: number | undefined;
      readonly error: string | undefined;
    })
  | (MessageEventBase & { readonly type: 'stopped'; readonly retried: number });

/** A schedule as the local QStash holds it (`POST /v2/schedules/<destination>`). */
export interface LocalSchedule {
  readonly scheduleId: string;
  readonly cron: string;
  /** Destination URL exactly as given. */
  readonly destination: string;
  readonly method: string;
  /** The body every fired message carries, as UTF-8 text. */
  readonly body: string;
  readonly contentType: string | undefined;
  /** Headers of the latest create request, lower-case names, without `authorization`. */
  readonly headers: Readonly<Record<string, string>>;
  /** `Upstash-Forward-*` headers every fired message is delivered with, without the prefix. */
  readonly forwardedHeaders: Readonly<Record<string, string>>;
  readonly retries: number;
  /** `Upstash-Delay` of every fired message, unscaled ms. */
  readonly delayMs: number | undefined;
  /** Epoch ms of the first create, and of the latest create with the same id. */
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly isPaused: boolean;
  /** Epoch ms (wall clock) of the next firing, when one is due. */
  readonly nextFireAt: number | undefined;
  /** Messages published by the schedule so far, oldest first (see `messages()`). */
  readonly firedMessageIds: readonly string[];
}

export interface LocalQStash {
  /** `http://127.0.0.1:PORT`, to pass as the Client's `baseUrl`. */
  readonly url: string;
  /** Clears every timer, aborts in-flight deliveries and closes the server. */
  close(): Promise<void>;
  /** Resolves when nothing is scheduled or in flight (at once if so already, and on close). */
  idle(): Promise<void>;
  stats(): LocalQStashStats;
  /** Every accepted message with its delivery attempts, as a snapshot. */
  messages(): readonly LocalMessage[];
  /** Every schedule, oldest first, as a snapshot. */
  schedules(): readonly LocalSchedule[];
}
