import type { ReportRecord, WorkItem } from '../../sandbox/app-api.js';
import type { SandboxRunwayTask } from '../../sandbox/runway.js';
import type { StoredObject } from '../../sandbox/storage.js';
import type { LeaseSample } from './lease-watch.js';
import type { Leak } from './leaks.js';
import type { TaskRequest } from './runway-phases.js';

/**
 * What a chaos run observed: the sandbox services' records at the end, the leases sampled
 * while it ran, and the settings they are judged by. Plain data, so figures can be computed
 * from a hand-made one.
 */

/** The worker and sandbox settings the figures are judged by. */
export interface ChaosSettings {
  /** RUNWAY_REGENERATIONS: new generations allowed per lease attempt. */
  readonly regenerations: number;
  /** The sandbox Runway's per-model concurrency limit; undefined when unlimited. */
  readonly concurrencyLimit: number | undefined;
  /** LEASE_DURATION_SECONDS in ms: what a lease and a heartbeat set `leased_until` to from now. */
  readonly leaseMs: number;
  /** The sandbox Runway's generation time, which its task phases follow. */
  readonly generationMs: number;
  /** RUNWAY_TIMEOUT_SECONDS in ms: a task not finished by then is cancelled and reported. */
  readonly runwayTimeoutMs: number;
  /** The longest a held item may go without progress, in real ms (`stallThresholdMs`). */
  readonly stallThresholdMs: number;
}

/** A request about one item, at epoch ms `at`. */
export interface ItemRequest {
  readonly item_id: string;
  readonly at: number;
}

export interface ChaosObservation {
  readonly seed: number;
  /** The item ids that were seeded. */
  readonly itemIds: readonly string[];
  /** `sandbox.app.items()` at the end. */
  readonly workItems: readonly WorkItem[];
  /** Every report that reached the app's report logic, oldest first. */
  readonly reports: readonly ReportRecord[];
  /** Leases given back (`extend_seconds: 0`) as the app received them. */
  readonly releases: readonly ItemRequest[];
  /** Every new `leased_until` of a processing item, sampled during the run. */
  readonly leaseSamples: readonly LeaseSample[];
  /** When the run stopped sampling: an item unfinished by then was quiet until then. */
  readonly watchedUntilMs: number;
  readonly tasks: readonly SandboxRunwayTask[];
  /** GET `/v1/tasks/{id}` requests the sandbox Runway received. */
  readonly taskPolls: readonly TaskRequest[];
  /** DELETE `/v1/tasks/{id}` requests the sandbox Runway received. */
  readonly taskDeletes: readonly TaskRequest[];
  /** `sandbox.runway.maxThrottledAtOnce()`. */
  readonly throttledAtOnceMax: number;
  /** Objects in the `generated-videos` bucket. */
  readonly videos: readonly StoredObject[];
  /** Upload attempts storage saw for `videos/<item>.mp4`. */
  readonly uploadAttempts: (itemId: string) => number;
  /** sha256 of the bytes the sandbox Runway serves as a task's output. */
  readonly outputSha256: (taskId: string) => string;
  /** sha256 of the HTML page the sandbox Runway serves in place of an output. */
  readonly htmlPageSha256: string;
  readonly settings: ChaosSettings;
  readonly qstash: { readonly published: number; readonly deliveries: number; readonly duplicatesInjected: number };
  readonly logLines: number;
  readonly leaks: readonly Leak[];
  readonly wallMs: number;
  readonly logFile?: string;
}
