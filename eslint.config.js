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
    // The engine (src/ outside src/mcp/) knows nothing of MCP: src/mcp/ and tools/ sit on top of
    // it, so another front end (a CLI command, another protocol) can use it as it is.
    files: ['src/**/*.ts'],
    ignores: ['src/mcp/**', 'src/main.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@modelcontextprotocol/*'], message: 'The engine never imports the MCP SDK: MCP code belongs in src/mcp/ or tools/.' },
            { group: ['**/tools/*', '**/mcp/*'], message: 'The engine never imports the MCP layer (tools/, src/mcp/): pass what it needs in.' },
          ],
        },
      ],
      // no-restricted-imports does not look at import(), which the engine uses for lazy loading.
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ImportExpression[source.value=/^@modelcontextprotocol\\u002F|(^|\\u002F)(tools|mcp)\\u002F/]',
          message: 'The engine never imports the MCP SDK or the MCP layer (tools/, src/mcp/), lazily or not.',
        },
      ],
    },
  },
  {
    // src/mcp/ registers the tools; a tool importing it back would make a cycle.
    files: ['tools/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/src/mcp/*'], message: 'Tools do not import the MCP layer: src/mcp/ imports them.' }] }],
    },
  },
  {
    // The entry point picks a front end (src/mcp/serve-*) or a command; it speaks no MCP itself.
    files: ['src/main.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@modelcontextprotocol/*'], message: 'MCP code belongs in src/mcp/.' },
            { group: ['**/tools/*'], message: 'Tools are registered in src/mcp/tool-registry.ts.' },
          ],
        },
      ],
    },
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
