// The database fixtures are shared with bench/, so they live in harness/.
export * from '../../harness/fixtures.js';
