import type { Deps } from '../deps.js';
import { describeError } from '../log.js';

/** `GET /api/cron-poll?check=1`: is everything wired up? Leases nothing. */

export interface PreflightCheck {
  readonly ok: boolean;
  readonly detail: string;
}

export interface PreflightReport {
  readonly ok: boolean;
  readonly config: PreflightCheck;
  readonly next_api: PreflightCheck;
  readonly runway: PreflightCheck & { readonly credit_balance?: number; readonly models?: unknown };
  readonly qstash: PreflightCheck;
  readonly ledger: PreflightCheck;
  readonly callback_base_url: string;
}

async function guarded<T extends PreflightCheck>(check: () => Promise<T>): Promise<T | PreflightCheck> {
  try {
    return await check();
  } catch (error) {
    return { ok: false, detail: describeError(error) };
  }
}

export async function runPreflight(deps: Deps): Promise<PreflightReport> {
  const [nextApi, runway, qstash, ledger] = await Promise.all([
    guarded(() => deps.app.checkKey()),
    guarded(async () => {
      const org = await deps.runway.organization();
      return { ok: true, detail: 'key accepted', credit_balance: org.creditBalance, models: org.tier.models };
    }),
    guarded(() => deps.queue.checkToken()),
    guarded(async () => {
      await deps.ledger.check();
      return { ok: true, detail: 'writable' };
    }),
  ]);
  return {
    ok: nextApi.ok && runway.ok && qstash.ok && ledger.ok,
    config: { ok: true, detail: 'valid' },
    next_api: nextApi,
    runway,
    qstash,
    ledger,
    callback_base_url: deps.config.workerBaseUrl,
  };
}
