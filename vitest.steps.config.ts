import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * The test set that mutation testing runs against `lib/steps/` (docs/mutation.md): the main
 * configuration, narrowed to the handler and end-to-end tests that drive the steps, and the command-line
 * tools' tests (the preflight, item lookup and generation steps are what they run).
 */
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ['test/api/**/*.test.ts', 'test/e2e/**/*.test.ts', 'test/tools/**/*.test.ts'],
  },
});
