import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isLoopbackHost } from '../../lib/url-policy.js';
import { UsageError } from './errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<T extends Options> = ReturnType<typeof parseArgs<{ options: T; strict: true; allowPositionals: false }>>['values'];

/** Reads `--name value` options (no positionals); anything unknown or malformed is a UsageError. */
export function readOptions<const T extends Options>(argv: readonly string[], options: T): Values<T> {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    // node:util words these well ("Unknown option '--evry'"); its first line is enough.
    const reason = error instanceof Error ? (error.message.split('\n')[0] ?? error.message) : String(error);
    throw new UsageError(reason);
  }
}

/**
 * A deployment's base URL: `https://host` (a trailing slash is fine), or `http:` on a
 * loopback host for local runs. Returned without the trailing slash.
 */
export function deploymentUrl(text: string, option = '--url'): string {
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (!url || !(url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname)))) {
    throw new UsageError(`${option} must be the deployment's https URL (https://<deployment>), got ${JSON.stringify(text)}`);
  }
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new UsageError(`${option} takes the deployment's base URL without a path (https://${url.host}), got ${JSON.stringify(text)}`);
  }
  return url.origin;
}
