import { ConfigError, parseConfig, type Config, type Env } from '../../lib/config.js';
import type { Deps } from '../../lib/deps.js';
import { PermanentError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { createDeps } from '../../lib/runtime.js';
import { deploymentProblems, preflightOfConfigProblems, runPreflight, type PreflightReport } from '../../lib/steps/preflight.js';

/** The preflight of `GET /api/cron-poll?check=1`, run in this process from an env. */
export async function preflightHere(env: Env): Promise<PreflightReport> {
  let config: Config;
  try {
    config = parseConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return preflightOfConfigProblems([...error.problems, ...deploymentProblems(env.CRON_SECRET)]);
    throw error;
  }
  let deps: Deps;
  try {
    deps = createDeps(config, { log: createLogger({ level: 'silent', secrets: [] }) });
  } catch (error) {
    // A client refused its settings (a Blob token of the wrong kind).
    if (error instanceof PermanentError) return preflightOfConfigProblems([error.message]);
    throw error;
  }
  return runPreflight(deps);
}
