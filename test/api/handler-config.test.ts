import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../lib/config.js';
import type { Deps } from '../../lib/deps.js';
import { handleCronGet, handleCronPost } from '../../lib/handlers/cron-poll.js';
import { handleRunwayCallback } from '../../lib/handlers/runway-callback.js';
import { handleStepUpload } from '../../lib/handlers/step-upload.js';

/**
 * Every handler builds its deps per request: an incomplete configuration is answered with
 * the names of what is missing (never a value), and anything else thrown is not hidden.
 */

type Handler = (request: Request, getDeps: () => Deps) => Promise<Response>;

const HANDLERS: readonly (readonly [string, Handler, string])[] = [
  ['cron-poll GET', handleCronGet, 'GET'],
  ['cron-poll POST', handleCronPost, 'POST'],
  ['runway-callback', handleRunwayCallback, 'POST'],
  ['step-upload', handleStepUpload, 'POST'],
];

function requestFor(method: string): Request {
  return new Request('http://127.0.0.1:1/api/x', {
    method,
    headers: { authorization: 'Bearer secret-value-123' },
    ...(method === 'POST' ? { body: '{}' } : {}),
  });
}

function incompleteConfig(): never {
  parseConfig({ WORKER_API_KEY: 'worker-secret-value', NEXT_API_URL: 'not a url' });
  throw new Error('unreachable: the configuration above is incomplete');
}

describe.each(HANDLERS)('%s with an incomplete configuration', (_name, handler, method) => {
  it('answers 500 naming each problem, with no secret value in the answer', async () => {
    const answer = await handler(requestFor(method), incompleteConfig);

    expect(answer.status).toBe(500);
    const json = (await answer.json()) as { outcome: string; problems: string[] };
    expect(json.outcome).toBe('error');
    expect(json.problems).toContain('RUNWAY_API_KEY is missing');
    expect(json.problems).toContain('NEXT_API_URL: Invalid URL');
    expect(JSON.stringify(json)).not.toContain('worker-secret-value');
  });
});

describe.each(HANDLERS)('%s whose deps fail for another reason', (_name, handler, method) => {
  it('lets the error go up instead of answering as if the configuration were at fault', async () => {
    const bug = new TypeError('deps exploded');

    await expect(
      handler(requestFor(method), () => {
        throw bug;
      }),
    ).rejects.toBe(bug);
  });
});

it('ConfigError is what an incomplete configuration throws', () => {
  expect(() => incompleteConfig()).toThrow(ConfigError);
});
