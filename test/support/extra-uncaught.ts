import { until } from './wait.js';

/**
 * Runs `work` while keeping any uncaught exception for the test to inspect, instead of
 * letting it reach the test runner (or, in production, end the process). Exceptions that
 * surface a little after `work` settles (stream errors emitted on a later tick) are
 * collected until `settled` holds: the event that ends the exchange they belong to.
 */
export async function collectUncaught<T>(work: () => Promise<T>, settled: () => boolean, what: string): Promise<{ result: T; uncaught: unknown[] }> {
  const uncaught: unknown[] = [];
  const keep = (error: unknown): void => {
    uncaught.push(error);
  };
  const runnerListeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', keep);
  try {
    const result = await work();
    await until(settled, what);
    // Events of the closed exchange that were already queued run before this resumes.
    await new Promise((resolve) => setImmediate(resolve));
    return { result, uncaught };
  } finally {
    process.off('uncaughtException', keep);
    for (const listener of runnerListeners) process.on('uncaughtException', listener);
  }
}
