import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Removes the temp dirs each test file made (harness/temp-dirs.ts), also when it failed.
    setupFiles: ['test/support/setup.ts'],
    // Files run in parallel worker processes; each starts at most one PostgreSQL cluster.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 90_000,
  },
});
