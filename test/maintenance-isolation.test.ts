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
        'INSERT INTO t SELECT generate_series(1, 500)',
      ]) {
        const setup = await run('execute', { project_id: 'alpha', sql });
        expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
      }
      // The sandbox now refuses an index using the workspace's own functions; one made before that check remains.
      // Armed by the same hand: the sandbox refuses writes while this backend's statistics count that index as new.
      await (await mcp.engine.ready(60_000)).db.exec('CREATE INDEX t_slow ON project_alpha.t (project_alpha.slow(n)); UPDATE project_alpha.armed SET on_ = true');
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

  it("what a table's code granted or set during the idle-time ANALYZE is undone", async () => {
    const mcp = await connectInProcess({ statementTimeoutMs: TIMEOUT_MS, maintenanceIdleMs: 50, disabledExtensions: ['codebase'] });
    const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
    try {
      for (const sql of [
        'CREATE TABLE armed (on_ boolean)',
        'INSERT INTO armed VALUES (false)',
        `CREATE FUNCTION share() RETURNS int LANGUAGE plpgsql VOLATILE AS $f$ BEGIN
           IF (SELECT on_ FROM project_alpha.armed) THEN
             UPDATE project_alpha.armed SET on_ = false;
             EXECUTE 'GRANT SELECT ON project_alpha.t TO PUBLIC';
             EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO PUBLIC', pg_catalog.lo_from_bytea(0, 'alpha secret'::bytea));
             EXECUTE format('ALTER ROLE %I SET work_mem = %L', current_user, '77kB');
           END IF; RETURN 1; END $f$`,
        'CREATE FUNCTION idx(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $f$ SELECT v || (project_alpha.share() * 0)::text $f$',
        'CREATE TABLE t (v text)',
        "INSERT INTO t SELECT 'secret-' || (g % 3) FROM generate_series(1, 300) g",
      ]) {
        const setup = await run('execute', { project_id: 'alpha', sql });
        expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
      }
      const db = (await mcp.engine.ready(60_000)).db;
      // The sandbox now refuses an index using the workspace's own functions; one made before that
      // check remains. Armed by the same hand: the sandbox refuses writes while this backend's
      // statistics count that index as new.
      await db.exec('CREATE INDEX t_i ON project_alpha.t (project_alpha.idx(v)); UPDATE project_alpha.armed SET on_ = true');
      // The store's session is a superuser's: it sees when the code ran (it disarms itself).
      const deadline = Date.now() + 30_000;
      while ((await db.query<{ on_: boolean }>('SELECT on_ FROM project_alpha.armed'))[0]?.on_) {
        if (Date.now() > deadline) throw new Error('the idle-time ANALYZE did not run the index expression within 30 s');
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const others = `SELECT count(*)::int AS n FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'project_alpha.t'::regclass AND a.grantee <> c.relowner
                      UNION ALL SELECT count(*)::int FROM pg_largeobject_metadata m, aclexplode(m.lomacl) a WHERE a.grantee <> m.lomowner`;
      expect(await db.query(others)).toEqual([{ n: 0 }, { n: 0 }]);
      expect(await db.query('SELECT setconfig FROM pg_db_role_setting')).toEqual([]);
    } finally {
      await mcp.close();
    }
  }, 60_000);
});
