import { createAppApi } from './clients/app-api.js';
import { createQueue } from './clients/queue.js';
import { createRunway } from './clients/runway.js';
import { createRunwayLimits } from './clients/runway-limits.js';
import { parseConfig, secretsOf, type Config, type Env } from './config.js';
import { DEFAULT_TIMEOUTS, type Deps, type Timeouts } from './deps.js';
import { createLedger } from './ledger/index.js';
import { createLogger, type Logger } from './log.js';

/** Builds every client from one config. Tests and the local runtime call this directly. */
export function createDeps(
  config: Config,
  overrides: { log?: Logger; now?: () => number; pretty?: boolean; timeouts?: Partial<Timeouts>; backpressure?: boolean } = {},
): Deps {
  const timeouts: Timeouts = { ...DEFAULT_TIMEOUTS, ...overrides.timeouts };
  const log = overrides.log ?? createLogger({ level: config.logLevel, secrets: secretsOf(config), pretty: overrides.pretty === true });
  const now = overrides.now ?? Date.now;
  const runway = createRunway({ baseUrl: config.runwayApiUrl, apiKey: config.runwayApiKey, timeoutMs: timeouts.runwayMs });
  return {
    config,
    log,
    now,
    timeouts,
    runway,
    runwayLimits: createRunwayLimits(runway, { now, log }),
    backpressure: overrides.backpressure ?? true,
    app: createAppApi({
      baseUrl: config.nextApiUrl,
      workerApiKey: config.workerApiKey,
      workerId: config.workerId,
      workerType: config.workerType,
      timeoutMs: timeouts.appMs,
    }),
    queue: createQueue({
      qstashUrl: config.qstashUrl,
      token: config.qstashToken,
      currentSigningKey: config.qstashCurrentSigningKey,
      nextSigningKey: config.qstashNextSigningKey,
      workerBaseUrl: config.workerBaseUrl,
      protectionBypassSecret: config.protectionBypassSecret,
    }),
    ledger: createLedger({ ledgerDir: config.ledgerDir, ...(config.blobToken ? { blobToken: config.blobToken } : {}) }),
  };
}

let cached: Deps | undefined;

/**
 * The deployed functions' deps, parsed once per process from the environment. The only
 * place that reads `process.env`; a ConfigError here lists every problem at once.
 */
export function runtimeDeps(env: Env = process.env): Deps {
  cached ??= createDeps(parseConfig(env));
  return cached;
}
