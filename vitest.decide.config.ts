import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * The test set that mutation testing runs against `lib/decide/` (docs/mutation.md): the main
 * configuration, narrowed to the unit tests of the decide functions, and the tests that
 * exercise the two decisions only the handlers reach: credits (the cost of a video) and the
 * item lookup's view.
 */
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: [
      'test/unit/{capacity,credits,duration,failure-message,item-view,models,photo-fit,poll-schedule,prompt,ratio}.test.ts',
      'test/api/{cost,item-lookup}.test.ts',
      'test/tools/item.test.ts',
    ],
  },
});
