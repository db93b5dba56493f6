import { BlockList, isIP } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import type { Config } from '../config.js';
import type { Deps } from '../deps.js';
import { PermanentError, UpstreamError } from '../errors.js';
import { describeError } from '../log.js';
import { isLoopbackHost } from '../url-policy.js';

/**
 * `GET /api/cron-poll?check=1` and `npm run check`: is everything wired up? One row per
 * thing the worker depends on; a failing row says why and how to fix it. Leases nothing.
 * The report is also what `npm run check --url` reads back, so its schema lives here.
 */

/**
 * A failed check's detail, for a person: the worker's own errors already say which service
 * and what happened (`runway: organization answered 401 ...`); anything else keeps its class.
 */
function checkDetailOf(error: unknown): string {
  return error instanceof UpstreamError || error instanceof PermanentError ? error.message : describeError(error);
}

const checkSchema = z.object({
  ok: z.boolean(),
  detail: z.string(),
  /** What to do about a failing row, in the operator's words. */
  fix: z.string().optional(),
  /** Not checked, because the configuration it needs is incomplete. */
  skipped: z.boolean().optional(),
});

const modelLimitsSchema = z.looseObject({ maxConcurrentGenerations: z.number(), maxDailyGenerations: z.number() });

/** One configuration variable as the worker uses it: secrets only say whether they are set. */
const settingSchema = z.object({ name: z.string(), value: z.string() });

export const preflightReportSchema = z.object({
  ok: z.boolean(),
  config: checkSchema.extend({
    /** What is missing or invalid, variable names first (never values). */
    problems: z.array(z.string()).optional(),
    /** Every setting in effect, defaults applied. */
    settings: z.array(settingSchema).optional(),
  }),
  next_api: checkSchema.extend({ url: z.string().optional() }),
  runway: checkSchema.extend({
    url: z.string().optional(),
    credit_balance: z.number().optional(),
    /** Runway's per-model limits (`tier.models`). */
    models: z.record(z.string(), modelLimitsSchema).optional(),
    /** Generations per model today, as Runway counts them. */
    usage: z.record(z.string(), z.number()).optional(),
  }),
  qstash: checkSchema.extend({ url: z.string().optional() }),
  ledger: checkSchema.extend({ store: z.string().optional() }),
  /** Whether QStash can call the callback base URL. */
  callback: checkSchema.optional(),
  callback_base_url: z.string().optional(),
});

export type PreflightCheck = z.infer<typeof checkSchema>;
export type PreflightReport = z.infer<typeof preflightReportSchema>;
export type Setting = z.infer<typeof settingSchema>;

const RUNWAY_DEFAULT_URL = 'https://api.dev.runwayml.com';
const QSTASH_DEFAULT_URL = 'https://qstash.upstash.io';
/** An item id no real item has: reading it proves the ledger can be read without touching real facts. */
const LEDGER_PROBE_ITEM = 'preflight-read-probe';

/** Where an operator finds each value the configuration can lack. */
const VARIABLE_SOURCES: Readonly<Record<string, string>> = {
  NEXT_API_URL: "the app's base URL, ending in /api",
  WORKER_API_KEY: "copy it from the app's worker settings",
  RUNWAY_API_KEY: 'create one at dev.runwayml.com (API Keys)',
  QSTASH_TOKEN: 'Upstash console, QStash → Request builder',
  QSTASH_CURRENT_SIGNING_KEY: 'Upstash console, QStash → Signing keys',
  QSTASH_NEXT_SIGNING_KEY: 'Upstash console, QStash → Signing keys',
  WORKER_BASE_URL: "the deployment's public https URL (on Vercel, VERCEL_PROJECT_PRODUCTION_URL is set for you)",
  CRON_SECRET: 'any long random string: openssl rand -base64 32',
  BLOB_READ_WRITE_TOKEN: 'connect a private Blob store to the project (Vercel → Storage → Blob)',
};

/** The variable a configuration problem is about: `parseConfig` starts every problem with its name. */
function variableOf(problem: string): string | undefined {
  return /^[A-Z][A-Z0-9_]*/.exec(problem)?.[0];
}

function configFix(problems: readonly string[]): string {
  const names = problems.map(variableOf);
  const known = (name: string | undefined): name is string => name !== undefined && VARIABLE_SOURCES[name] !== undefined;
  const where = [...new Set(names.filter(known))].map((name) => `${name}: ${VARIABLE_SOURCES[name] ?? ''}`);
  const unsourced = !names.every(known);
  const allowed = unsourced ? ['for allowed values and defaults see .env.example and the README (Configuration)'] : [];
  return [
    ...where,
    ...allowed,
    'set them where the worker reads its environment (on Vercel: Settings → Environment Variables, then redeploy)',
  ].join('; ');
}

/** The report when the configuration cannot be parsed: nothing else can be checked. */
export function preflightOfConfigProblems(problems: readonly string[]): PreflightReport {
  const skipped: PreflightCheck = { ok: false, skipped: true, detail: 'not checked: the configuration is incomplete' };
  return {
    ok: false,
    config: { ok: false, detail: `invalid: ${problems.join('; ')}`, problems: [...problems], fix: configFix(problems) },
    next_api: skipped,
    runway: skipped,
    qstash: skipped,
    ledger: skipped,
    callback: skipped,
  };
}

const shown = (secret: string | undefined): string => (secret ? 'set (secret)' : 'not set');

/** A URL as given, but a `user:password@` in it is never shown. */
function urlShown(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return value;
  }
  if (url.username === '' && url.password === '') return value;
  url.username = '';
  url.password = '';
  return `${url.href} (credentials in the URL hidden)`;
}

/** The configuration in effect, in the variables' own names; secrets are never shown. */
export function settingsOf(config: Config): Setting[] {
  const entries: [string, string | number | boolean][] = [
    ['NEXT_API_URL', urlShown(config.nextApiUrl)],
    ['WORKER_API_KEY', shown(config.workerApiKey)],
    ['WORKER_ID', config.workerId],
    ['WORKER_TYPE', config.workerType],
    ['RUNWAY_API_KEY', shown(config.runwayApiKey)],
    ['RUNWAY_API_URL', urlShown(config.runwayApiUrl)],
    ['RUNWAY_MODEL', config.runwayModel],
    ['RUNWAY_AUDIO', config.runwayAudio],
    ['RUNWAY_TIMEOUT_SECONDS', config.runwayTimeoutSeconds],
    ['RUNWAY_POLL_MIN_SECONDS', config.runwayPollMinSeconds],
    ['RUNWAY_POLL_MAX_SECONDS', config.runwayPollMaxSeconds],
    ['RUNWAY_REGENERATIONS', config.runwayRegenerations],
    ['LEASE_DURATION_SECONDS', config.leaseDurationSeconds],
    ['HEARTBEAT_INTERVAL_SECONDS', config.heartbeatIntervalSeconds],
    ['MAX_TASKS_PER_RUN', config.maxTasksPerRun],
    ['QSTASH_URL', urlShown(config.qstashUrl)],
    ['QSTASH_TOKEN', shown(config.qstashToken)],
    ['QSTASH_CURRENT_SIGNING_KEY', shown(config.qstashCurrentSigningKey)],
    ['QSTASH_NEXT_SIGNING_KEY', shown(config.qstashNextSigningKey)],
    ['WORKER_BASE_URL', urlShown(config.workerBaseUrl)],
    ['CRON_SECRET', shown(config.cronSecret)],
    ['BLOB_READ_WRITE_TOKEN', shown(config.blobToken)],
    ['LEDGER_DIR', config.blobToken ? 'unused (the ledger is in Vercel Blob)' : config.ledgerDir],
    ['VERCEL_AUTOMATION_BYPASS_SECRET', shown(config.protectionBypassSecret)],
    ['LOG_LEVEL', config.logLevel],
    ['PORT', `${config.port} (self-hosted server only)`],
    ['LOCAL_CRON_SECONDS', `${config.localCronSeconds} (self-hosted server only)`],
  ];
  return entries.map(([name, value]) => ({ name, value: String(value) }));
}

/** What `parseConfig` lets through but a deployment cannot run without. */
export function deploymentProblems(cronSecret: string | undefined): string[] {
  return cronSecret?.trim() ? [] : ['CRON_SECRET is missing (cron-poll refuses every call without it)'];
}

function checkConfig(config: Config): PreflightReport['config'] {
  const settings = settingsOf(config);
  const problems = deploymentProblems(config.cronSecret);
  if (problems.length === 0) return { ok: true, detail: 'valid', settings };
  return { ok: false, detail: `invalid: ${problems.join('; ')}`, problems, settings, fix: configFix(problems) };
}

async function checkApp(deps: Deps): Promise<PreflightReport['next_api']> {
  const url = deps.config.nextApiUrl;
  try {
    const answer = await deps.app.checkKey();
    if (answer.ok) return { ok: true, detail: answer.detail, url };
    return { ok: false, detail: answer.detail, url, fix: appFix(answer.status, url) };
  } catch (error) {
    const fix = `the app did not answer at NEXT_API_URL (${url}): check the URL (the app's base URL, ending in /api) and that the app is up`;
    return { ok: false, detail: checkDetailOf(error), url, fix };
  }
}

function appFix(status: number | undefined, url: string): string {
  if (status === 401) return "WORKER_API_KEY rejected by the app (401): copy the key from the app's worker settings";
  if (status === 404 || status === 405) {
    return `NEXT_API_URL (${url}) serves no worker API (${status}): use the app's base URL, ending in /api`;
  }
  return `the app answered ${String(status)} to an empty heartbeat (400 expected) at ${url}/worker/heartbeat: check NEXT_API_URL and the app's logs`;
}

async function checkRunway(deps: Deps): Promise<PreflightReport['runway']> {
  const url = deps.config.runwayApiUrl;
  try {
    const org = await deps.runway.organization();
    const usage = org.usage
      ? Object.fromEntries(Object.entries(org.usage.models).map(([model, used]) => [model, used.dailyGenerations]))
      : undefined;
    const facts = { url, credit_balance: org.creditBalance, models: org.tier.models, ...(usage ? { usage } : {}) };
    if (org.creditBalance > 0) return { ok: true, detail: 'key accepted', ...facts };
    const fix = 'buy credits at dev.runwayml.com (Billing): Runway refuses new generations without them';
    return { ok: false, detail: `key accepted, but no credits left (balance ${org.creditBalance})`, ...facts, fix };
  } catch (error) {
    return { ok: false, detail: checkDetailOf(error), url, fix: runwayFix(error, url) };
  }
}

function runwayFix(error: unknown, url: string): string {
  const status = error instanceof UpstreamError ? error.status : undefined;
  if (status === 401 || status === 403) {
    return `RUNWAY_API_KEY rejected by Runway (${status}): create a key at dev.runwayml.com (API Keys) in the organization that holds the credits`;
  }
  const answered = status === undefined ? 'did not answer as Runway does' : `answered ${status}`;
  const theirs = status !== undefined && status >= 500 ? "; a 5xx is on Runway's side, try again shortly" : '';
  return `Runway ${answered} at RUNWAY_API_URL (${url}): check the URL (default ${RUNWAY_DEFAULT_URL})${theirs}`;
}

async function checkQStash(deps: Deps): Promise<PreflightReport['qstash']> {
  const url = deps.config.qstashUrl;
  const answer = await deps.queue.checkToken();
  if (answer.ok) return { ok: true, detail: answer.detail, url };
  return { ok: false, detail: answer.detail, url, fix: qstashFix(answer.status, url) };
}

function qstashFix(status: number | undefined, url: string): string {
  if (status === 401 || status === 403) {
    return 'QStash token rejected: use the QSTASH_TOKEN from the Upstash console (QStash → Request builder), with the QSTASH_URL shown there';
  }
  if (status === 429) return 'QStash is refusing this token for now (429): its daily message quota may be used up (Upstash console → QStash → Usage)';
  const answered = status === undefined ? 'did not answer' : `answered ${status}`;
  return `QStash ${answered} at QSTASH_URL (${url}): check the URL (default ${QSTASH_DEFAULT_URL})`;
}

async function checkLedger(deps: Deps): Promise<PreflightReport['ledger']> {
  const { blobToken, ledgerDir } = deps.config;
  const store = blobToken ? 'Vercel Blob' : `directory ${path.resolve(ledgerDir)}`;
  try {
    await deps.ledger.check();
    await deps.ledger.latest(LEDGER_PROBE_ITEM);
    return { ok: true, detail: 'writable and readable', store };
  } catch (error) {
    const fix = blobToken
      ? "the ledger's Vercel Blob store refused: connect a private Blob store to the project (Storage → Blob), which sets BLOB_READ_WRITE_TOKEN, then redeploy"
      : `LEDGER_DIR (${path.resolve(ledgerDir)}) cannot be used: point LEDGER_DIR at a directory this process can write (it is created when missing)`;
    return { ok: false, detail: checkDetailOf(error), store, fix };
  }
}

/**
 * Addresses no service on the internet can call: loopback, "this network", private
 * (RFC 1918), carrier-grade NAT, link-local, and IPv6 loopback, unique-local and link-local.
 */
const UNREACHABLE_SUBNETS = (() => {
  const list = new BlockList();
  for (const [network, prefix] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.168.0.0', 16]] as const) {
    list.addSubnet(network, prefix, 'ipv4');
  }
  list.addAddress('::', 'ipv6');
  list.addAddress('::1', 'ipv6');
  for (const [network, prefix] of [['fc00::', 7], ['fe80::', 10]] as const) list.addSubnet(network, prefix, 'ipv6');
  return list;
})();

/** Names only a local network resolves: a bare host name (a container's), or a local-only suffix. */
const LOCAL_NAME = /(^[^.]+$)|\.(local|localhost|internal|lan|home\.arpa)$/i;

/** QStash, a service on the internet, cannot call a loopback, private or local-only address. */
function isUnreachableFromInternet(hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, '$1');
  const family = isIP(host);
  if (family === 4) return UNREACHABLE_SUBNETS.check(host, 'ipv4');
  if (family === 6) return UNREACHABLE_SUBNETS.check(host, 'ipv6');
  return isLoopbackHost(host) || LOCAL_NAME.test(host);
}

export function checkCallback(config: Pick<Config, 'workerBaseUrl' | 'qstashUrl'>): PreflightCheck {
  const base = config.workerBaseUrl;
  const qstashHost = new URL(config.qstashUrl).hostname;
  const callbackHost = new URL(base).hostname;
  if (isLoopbackHost(qstashHost) || !isUnreachableFromInternet(callbackHost)) {
    return { ok: true, detail: `QStash calls back ${base}` };
  }
  return {
    ok: false,
    detail: `QStash at ${config.qstashUrl} cannot call ${base}`,
    fix: "set WORKER_BASE_URL to the deployment's public https URL (on Vercel, leave it unset: https://$VERCEL_PROJECT_PRODUCTION_URL is used)",
  };
}

export async function runPreflight(deps: Deps): Promise<PreflightReport> {
  const [nextApi, runway, qstash, ledger] = await Promise.all([
    checkApp(deps),
    checkRunway(deps),
    checkQStash(deps),
    checkLedger(deps),
  ]);
  const config = checkConfig(deps.config);
  const callback = checkCallback(deps.config);
  return {
    ok: [config, nextApi, runway, qstash, ledger, callback].every((check) => check.ok),
    config,
    next_api: nextApi,
    runway,
    qstash,
    ledger,
    callback,
    callback_base_url: deps.config.workerBaseUrl,
  };
}
