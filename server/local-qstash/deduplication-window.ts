/** contract.md §3: a duplicate publish within 10 minutes is accepted and dropped. */
export const DEDUPLICATION_WINDOW_MS = 10 * 60 * 1000;

interface Remembered {
  readonly messageId: string;
  readonly expiresAt: number;
}

/** Deduplication keys seen recently, each with the message it produced. */
export class DeduplicationWindow {
  private readonly seen = new Map<string, Remembered>();

  constructor(private readonly windowMs: number = DEDUPLICATION_WINDOW_MS) {}

  /** The message id first published under `key`, while the window lasts. */
  find(key: string, nowMs: number): string | undefined {
    this.forgetExpired(nowMs);
    return this.seen.get(key)?.messageId;
  }

  remember(key: string, messageId: string, nowMs: number): void {
    this.seen.set(key, { messageId, expiresAt: nowMs + this.windowMs });
  }

  /** Keys are only added when absent, so insertion order is expiry order. */
  private forgetExpired(nowMs: number): void {
    for (const [key, entry] of this.seen) {
      if (entry.expiresAt > nowMs) return;
      this.seen.delete(key);
    }
  }
}
