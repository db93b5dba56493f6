import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * The test set that mutation testing runs against `lib/decide/` (docs/mutation.md): the main
 * configuration, narrowed to the unit tests of the decide functions.
 */
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ['test/unit/{capacity,duration,failure-message,models,photo-fit,poll-schedule,prompt,ratio}.test.ts'],
  },
});
