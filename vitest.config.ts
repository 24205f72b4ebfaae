import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Files run in parallel worker processes; each starts at most one PostgreSQL cluster.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 90_000,
  },
});
