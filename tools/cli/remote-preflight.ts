import { z } from 'zod';
import type { Env } from '../../lib/config.js';
import { preflightOfConfigProblems, preflightReportSchema, type PreflightReport } from '../../lib/steps/preflight.js';
import { CliError, UsageError } from './errors.js';

/** The preflight can wait on the app, Runway and QStash in turn, each bounded by its own timeout. */
const REMOTE_TIMEOUT_MS = 120_000;

/** The worker's own refusals: `{ outcome, detail }`, and the missing variables when its config is incomplete. */
const refusalSchema = z.looseObject({ outcome: z.string(), detail: z.string(), problems: z.array(z.string()).optional() });

function jsonOf(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function reasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause: unknown = error.cause;
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
}

/** A deployment's own preflight: `GET <base>/api/cron-poll?check=1` with its cron secret. */
export async function preflightOf(baseUrl: string, env: Env): Promise<PreflightReport> {
  const secret = env.CRON_SECRET?.trim();
  if (!secret) throw new UsageError("--url needs CRON_SECRET, the deployment's cron secret, in the environment or --env-file");
  const target = `${baseUrl}/api/cron-poll?check=1`;
  const headers: Record<string, string> = { authorization: `Bearer ${secret}`, 'user-agent': 'runway-worker-check' };
  const bypass = env.VERCEL_AUTOMATION_BYPASS_SECRET?.trim();
  if (bypass) headers['x-vercel-protection-bypass'] = bypass;

  let response: Response;
  try {
    response = await fetch(target, { headers, redirect: 'manual', signal: AbortSignal.timeout(REMOTE_TIMEOUT_MS) });
  } catch (error) {
    throw new CliError(`could not reach ${target}: ${reasonOf(error)}`);
  }
  const json = jsonOf(await response.text());
  const { status } = response;
  if (status === 200) {
    const report = preflightReportSchema.safeParse(json);
    if (report.success) return report.data;
    throw new CliError(`${target} answered 200 without a preflight report: is ${baseUrl} a deployment of this worker?`);
  }
  const refusal = refusalSchema.safeParse(json);
  if (refusal.success && refusal.data.problems) return preflightOfConfigProblems(refusal.data.problems);
  if (status === 401 && refusal.success) {
    throw new CliError(
      `${target} answered 401: ${refusal.data.detail}\n` +
        "fix: use the CRON_SECRET set on the deployment (Vercel → Settings → Environment Variables; if it has none, set one and redeploy)",
    );
  }
  if ((status >= 300 && status < 400) || status === 401 || status === 403) {
    throw new CliError(
      `${target} answered ${status} before reaching the worker\n` +
        'fix: the deployment is protected (Vercel Authentication): turn on Protection Bypass for Automation ' +
        '(Settings → Deployment Protection) and set VERCEL_AUTOMATION_BYPASS_SECRET to its value',
    );
  }
  throw new CliError(`${target} answered ${status}${refusal.success ? `: ${refusal.data.detail}` : ''}`);
}
