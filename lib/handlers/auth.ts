import { createHash, timingSafeEqual } from 'node:crypto';
import type { Deps } from '../deps.js';
import { QSTASH_RETRIES, type Delivery } from '../steps/messages.js';

/** Constant-time comparison (hashing first makes the lengths equal). */
export function secretsMatch(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** Vercel Cron and manual runs: `Authorization: Bearer $CRON_SECRET` (the caller refuses to run without one). */
export function cronAuthorized(request: Request, cronSecret: string): boolean {
  const header = request.headers.get('authorization') ?? '';
  return secretsMatch(header, `Bearer ${cronSecret}`);
}

/**
 * Reads the raw body and checks the QStash signature against it and against the URL it was
 * made for (the one we publish to, or the one the request arrived at), before anything is
 * parsed. Without our signing key no one can make a valid signature for either.
 */
export async function readSignedBody(request: Request, deps: Deps): Promise<{ ok: true; body: string } | { ok: false }> {
  const body = await request.text();
  const url = new URL(request.url);
  const valid = await deps.queue.verify(request.headers.get('upstash-signature'), body, url);
  return valid ? { ok: true, body } : { ok: false };
}

export function deliveryOf(request: Request): Delivery {
  const retried = Number(request.headers.get('upstash-retried') ?? '0');
  const safe = Number.isInteger(retried) && retried >= 0 ? retried : 0;
  return { retried: safe, last: safe >= QSTASH_RETRIES };
}

export function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: text.trim() === '' ? undefined : (JSON.parse(text) as unknown) };
  } catch {
    return { ok: false };
  }
}
