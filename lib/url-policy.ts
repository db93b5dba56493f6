import { PermanentError } from './errors.js';

const LOOPBACK_HOSTS = new Set(['localhost', '[::1]', '::1']);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * The worker only fetches from and uploads to `https:` URLs, or `http:` on loopback
 * (local runs and tests) — design §5. Anything else is refused before a socket opens.
 */
export function assertAllowedUrl(raw: string, stage: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new PermanentError(stage, `${stage}: the service returned an invalid URL`);
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return url;
  throw new PermanentError(stage, `${stage}: refusing a ${url.protocol} URL (only https, or http on loopback)`);
}
