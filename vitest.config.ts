import { readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

/** Each file of these folders is held to the line threshold on its own. */
const PER_FILE_FOLDERS = ['lib/steps', 'lib/handlers'];
const PER_FILE_LINES = 90;

const perFileThresholds = Object.fromEntries(
  PER_FILE_FOLDERS.flatMap((folder) =>
    readdirSync(folder)
      .filter((name) => name.endsWith('.ts'))
      .map((name) => [`${folder}/${name}`, { lines: PER_FILE_LINES }]),
  ),
);

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    coverage: {
      provider: 'v8',
      include: ['lib/**/*.ts'],
      reporter: ['text', 'json-summary', 'json'],
      reportsDirectory: 'coverage',
      thresholds: {
        lines: 95,
        branches: 90,
        ...perFileThresholds,
      },
    },
  },
});
