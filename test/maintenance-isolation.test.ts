import { describe, expect, it } from 'vitest';
import { callTool, connectInProcess } from './support/mcp.js';

/*
 * The escape suite's embedded store maintenance side: an agent attacks through the MCP tools
 * only. PGlite has no autovacuum, so the server vacuums and analyzes tables when the store is
 * idle (store-maintenance.ts), on the one session every workspace shares; ANALYZE evaluates a
 * table's index expressions, as its owner. An agent's index expression that sleeps only once
 * armed held that ANALYZE, and with it every workspace's calls, for as long as it liked: the
 * maintenance statements ran with no statement timeout. They now run under the server's upgrade
 * timeout (PG_WORKSPACE_UPGRADE_TIMEOUT_MS), as other server work that runs agent code does.
 */

const TIMEOUT_MS = 1500;
/** How long the armed index expression sleeps: far beyond the statement timeout. */
const SLEEP_S = 120;

describe('embedded store maintenance escape suite on pglite', () => {
  it("an agent's index expression cannot hold the idle-time ANALYZE, and with it the shared session, past the statement timeout", async () => {
    const mcp = await connectInProcess({ statementTimeoutMs: TIMEOUT_MS, upgradeTimeoutMs: TIMEOUT_MS, maintenanceIdleMs: 50, disabledExtensions: ['codebase'] });
    const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
    try {
      for (const sql of [
        'CREATE TABLE armed (on_ boolean)',
        'INSERT INTO armed VALUES (false)',
        // Qualified: ANALYZE runs index expressions with a restricted search path.
        `CREATE FUNCTION slow(n int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$ BEGIN
           IF (SELECT on_ FROM project_alpha.armed) THEN PERFORM pg_catalog.pg_sleep(${SLEEP_S}); END IF; RETURN n; END $f$`,
        'CREATE TABLE t (n int)',
        'CREATE INDEX t_slow ON t (project_alpha.slow(n))',
        'INSERT INTO t SELECT generate_series(1, 500)',
        'UPDATE armed SET on_ = true',
      ]) {
        const setup = await run('execute', { project_id: 'alpha', sql });
        expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
      }
      // Idle now: the next pass analyzes t (500 rows changed) and evaluates slow() as alpha.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const started = performance.now();
      const other = await run('query', { project_id: 'beta', sql: 'SELECT 1 AS one' });
      const waitedS = (performance.now() - started) / 1000;
      expect(other.isError, other.text).toBe(false);
      // At most the timeout of the ANALYZE it waited for, and the store's reopening after it.
      expect(waitedS).toBeLessThan(SLEEP_S / 4);
    } finally {
      await mcp.close();
    }
  }, 3 * 60_000);
});
