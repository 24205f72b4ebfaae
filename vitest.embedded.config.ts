import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * The middle test layer: the engine on PGlite in process, no PostgreSQL binaries and no built
 * server. Suites that run per backend run their PGlite half; real-server halves are left out.
 */
export default defineConfig({
  test: {
    ...base.test,
    include: [
      'test/unit/**/*.test.ts',
      'test/catalog-tools.test.ts',
      'test/embedding-providers.test.ts',
      'test/embedding-spaces.test.ts',
      'test/hostile-input.test.ts',
      'test/index-directory.test.ts',
      'test/installer.test.ts',
      'test/mcp-server.test.ts',
      'test/operations.test.ts',
      'test/reembed.test.ts',
      'test/search-isolation.test.ts',
      'test/search-recall.test.ts',
      'test/search.test.ts',
      'test/shared-store.test.ts',
      'test/sql-isolation.test.ts',
      'test/sql-tools.test.ts',
      'test/store-maintenance.test.ts',
      'test/workspaces.test.ts',
    ],
    env: { ...base.test?.env, PGW_TEST_LAYER: 'embedded' },
  },
});
