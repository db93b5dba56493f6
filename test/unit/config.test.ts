import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, type Env } from '../../lib/config.js';

const complete: Env = {
  NEXT_API_URL: 'https://life-is-short.example/api',
  WORKER_API_KEY: 'worker-key',
  RUNWAY_API_KEY: 'runway-key',
  QSTASH_TOKEN: 'qstash-token',
  QSTASH_CURRENT_SIGNING_KEY: 'sig_current',
  QSTASH_NEXT_SIGNING_KEY: 'sig_next',
  WORKER_BASE_URL: 'https://worker.example',
};

function problemsOf(env: Env): readonly string[] {
  try {
    parseConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('configuration with nothing set', () => {
  it('reports every missing variable in one error', () => {
    const problems = problemsOf({});
    for (const name of [
      'NEXT_API_URL',
      'WORKER_API_KEY',
      'RUNWAY_API_KEY',
      'QSTASH_TOKEN',
      'QSTASH_CURRENT_SIGNING_KEY',
      'QSTASH_NEXT_SIGNING_KEY',
      'WORKER_BASE_URL',
    ]) {
      expect(problems.some((p) => p.startsWith(`${name} is missing`))).toBe(true);
    }
    expect(problems).toHaveLength(7);
  });

  it('names the variables in the error message', () => {
    expect(() => parseConfig({})).toThrow(/NEXT_API_URL is missing[\s\S]*QSTASH_NEXT_SIGNING_KEY is missing/);
  });

  it('treats empty strings as missing', () => {
    expect(problemsOf({ ...complete, WORKER_API_KEY: '', RUNWAY_API_KEY: '   ' })).toEqual([
      'WORKER_API_KEY is missing',
      'RUNWAY_API_KEY is missing',
    ]);
  });
});

describe('configuration with the required variables set', () => {
  it('applies the documented defaults', () => {
    const config = parseConfig(complete);
    expect(config).toMatchObject({
      workerId: 'runway-worker',
      workerType: 'runway',
      runwayApiUrl: 'https://api.dev.runwayml.com',
      runwayModel: 'gen4_turbo',
      runwayAudio: false,
      runwayTimeoutSeconds: 600,
      runwayPollMinSeconds: 5,
      runwayPollMaxSeconds: 60,
      leaseDurationSeconds: 600,
      heartbeatIntervalSeconds: 120,
      maxTasksPerRun: 10,
      qstashUrl: 'https://qstash.upstash.io',
      ledgerDir: '.data/ledger',
      port: 3000,
      localCronSeconds: 5,
      logLevel: 'info',
      cronSecret: undefined,
      blobToken: undefined,
    });
  });

  it('is frozen', () => {
    expect(Object.isFrozen(parseConfig(complete))).toBe(true);
  });

  it('falls back to the Vercel production URL for callbacks', () => {
    const { WORKER_BASE_URL: _unused, ...rest } = complete;
    const config = parseConfig({ ...rest, VERCEL_PROJECT_PRODUCTION_URL: 'worker.vercel.app' });
    expect(config.workerBaseUrl).toBe('https://worker.vercel.app');
  });

  it('drops a trailing slash from base URLs', () => {
    const config = parseConfig({ ...complete, NEXT_API_URL: 'https://app.example/api/', WORKER_BASE_URL: 'https://w.example/' });
    expect(config.nextApiUrl).toBe('https://app.example/api');
    expect(config.workerBaseUrl).toBe('https://w.example');
  });

  it('parses booleans and numbers', () => {
    const config = parseConfig({ ...complete, RUNWAY_AUDIO: 'true', MAX_TASKS_PER_RUN: '3', RUNWAY_MODEL: 'veo3.1' });
    expect(config).toMatchObject({ runwayAudio: true, maxTasksPerRun: 3, runwayModel: 'veo3.1' });
  });
});

describe('configuration with bad values', () => {
  it('reports each bad value with its name, all at once', () => {
    const problems = problemsOf({
      ...complete,
      RUNWAY_MODEL: 'gen4.5_turbo',
      RUNWAY_AUDIO: 'maybe',
      MAX_TASKS_PER_RUN: 'ten',
      NEXT_API_URL: 'not a url',
    });
    expect(problems.map((p) => p.split(':')[0])).toEqual(['NEXT_API_URL', 'RUNWAY_MODEL', 'RUNWAY_AUDIO', 'MAX_TASKS_PER_RUN']);
  });

  it('refuses poll bounds that cross or go under Runway’s 5 s', () => {
    expect(problemsOf({ ...complete, RUNWAY_POLL_MIN_SECONDS: '30', RUNWAY_POLL_MAX_SECONDS: '10' })).toEqual([
      'RUNWAY_POLL_MAX_SECONDS: must be at least RUNWAY_POLL_MIN_SECONDS',
    ]);
    expect(problemsOf({ ...complete, RUNWAY_POLL_MIN_SECONDS: '2' })[0]).toMatch(/^RUNWAY_POLL_MIN_SECONDS: /);
  });

  it.each([
    ['RUNWAY_POLL_MAX_SECONDS', '', { runwayPollMinSeconds: 5, runwayPollMaxSeconds: 60 }],
    ['RUNWAY_POLL_MAX_SECONDS', '  ', { runwayPollMinSeconds: 5, runwayPollMaxSeconds: 60 }],
    ['RUNWAY_POLL_MIN_SECONDS', '', { runwayPollMinSeconds: 5, runwayPollMaxSeconds: 60 }],
  ])('counts an empty %s as missing in the cross checks too', (name, raw, expected) => {
    expect(problemsOf({ ...complete, [name]: raw })).toEqual([]);
    expect(parseConfig({ ...complete, [name]: raw })).toMatchObject(expected);
  });

  it('checks an empty RUNWAY_POLL_MAX_SECONDS against a set minimum as its default of 60', () => {
    expect(parseConfig({ ...complete, RUNWAY_POLL_MIN_SECONDS: '30', RUNWAY_POLL_MAX_SECONDS: '' })).toMatchObject({
      runwayPollMinSeconds: 30,
      runwayPollMaxSeconds: 60,
    });
    expect(problemsOf({ ...complete, RUNWAY_POLL_MIN_SECONDS: '90', RUNWAY_POLL_MAX_SECONDS: '' })).toEqual([
      'RUNWAY_POLL_MAX_SECONDS: must be at least RUNWAY_POLL_MIN_SECONDS',
    ]);
  });

  it('requires a Blob token on Vercel, where the ledger lives in Vercel Blob', () => {
    expect(problemsOf({ ...complete, VERCEL: '1' })).toEqual([
      'BLOB_READ_WRITE_TOKEN is missing (required on Vercel: the job ledger lives in Vercel Blob)',
    ]);
    expect(problemsOf({ ...complete, VERCEL: '1', BLOB_READ_WRITE_TOKEN: 'vercel_blob_rw_x_y' })).toEqual([]);
  });

  it('never puts a secret value into the message', () => {
    const env = { ...complete, WORKER_API_KEY: 'super-secret-key', NEXT_API_URL: 'nope', RUNWAY_API_KEY: 'super-secret-key' };
    let thrown: unknown;
    try {
      parseConfig(env);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).problems).toEqual(['NEXT_API_URL: Invalid URL']);
    expect(String(thrown)).not.toContain('super-secret-key');
    expect(JSON.stringify((thrown as ConfigError).problems)).not.toContain('super-secret-key');
  });
});

describe('RUNWAY_REGENERATIONS', () => {
  it('defaults to one new generation after a transient Runway failure, also when empty', () => {
    expect(parseConfig(complete).runwayRegenerations).toBe(1);
    expect(parseConfig({ ...complete, RUNWAY_REGENERATIONS: '' }).runwayRegenerations).toBe(1);
  });

  it.each([
    ['0', 0],
    ['3', 3],
  ])('takes %s', (raw, value) => {
    expect(parseConfig({ ...complete, RUNWAY_REGENERATIONS: raw }).runwayRegenerations).toBe(value);
  });

  it.each(['4', '-1', '1.5', 'once'])('refuses %s, each new generation being billed', (raw) => {
    expect(problemsOf({ ...complete, RUNWAY_REGENERATIONS: raw })).toEqual([expect.stringMatching(/^RUNWAY_REGENERATIONS: /)]);
  });
});
