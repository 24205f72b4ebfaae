import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/results/', 'scratch/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // stdout belongs to JSON-RPC: the server and tools log through src/logger.ts (stderr) only.
    files: ['src/**/*.ts', 'tools/**/*.ts'],
    rules: { 'no-console': 'error' },
  },
  {
    // What bench and the tests share (clusters, fixtures, temp dirs) lives in harness/.
    files: ['bench/**/*.ts', 'harness/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/test/**'], message: 'Share it through harness/ instead.' }] }] },
  },
  {
    // The unit layer runs in seconds with no database: no drivers, clusters or database fixtures.
    files: ['test/unit/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['pg', '@electric-sql/pglite'],
          patterns: [
            {
              group: ['**/harness/pg-cluster*', '**/harness/fixtures*', '**/support/*', '**/src/db/*-database*'],
              message: 'Unit tests use no database: put this test beside the integration suites in test/.',
            },
          ],
        },
      ],
    },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
