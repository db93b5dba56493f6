import { describe, expect, it } from 'vitest';
import { localModeOf } from '../../sandbox/demo/local-runtime.js';

describe('choosing the local runtime mode', () => {
  it('runs the demo when neither the app nor Runway is configured', () => {
    expect(localModeOf({})).toBe('demo');
    expect(localModeOf({ NEXT_API_URL: '', RUNWAY_API_KEY: '  ' })).toBe('demo');
  });

  it('runs self-hosted when both are configured', () => {
    expect(localModeOf({ NEXT_API_URL: 'https://app.example/api', RUNWAY_API_KEY: 'key' })).toBe('self-hosted');
  });

  it('refuses to mix a real service with sandbox ones when only one is set', () => {
    expect(() => localModeOf({ NEXT_API_URL: 'https://app.example/api' })).toThrow(/only NEXT_API_URL is set/);
    expect(() => localModeOf({ RUNWAY_API_KEY: 'key' })).toThrow(/only RUNWAY_API_KEY is set/);
  });
});
