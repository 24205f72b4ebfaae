/**
 * `npm run test:embedded` (vitest.embedded.config.ts) sets PGW_TEST_LAYER=embedded: the engine on
 * PGlite in process, no PostgreSQL binaries. Its suites then run their PGlite half only, and
 * asking for a cluster gives none, without the loud warning (or CI failure) a missing binary gets.
 */
export const EMBEDDED_ONLY = process.env['PGW_TEST_LAYER'] === 'embedded';
