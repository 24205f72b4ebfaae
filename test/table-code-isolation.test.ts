import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND_KINDS } from './support/backend-per-kind.js';
import { startIsolationServer } from './support/isolation-snapshot.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';

/*
 * The escape suite's VACUUM side: an agent attacks through the MCP tools only. VACUUM cannot run
 * in a transaction, so `execute` runs it outside the SQL sandbox (as the workspace's role), and
 * VACUUM (ANALYZE) evaluates the table's index expressions: the agent's code, unchecked by the
 * sandbox's end-of-call checks (the sandbox now refuses such an index; one made before it
 * remains). Armed after the index was made, it granted the table and a
 * large object to PUBLIC and set a role setting: workspace beta then read alpha's values in
 * pg_stats and the large object's text. The server now undoes those after the VACUUM and says so.
 */

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 60_000);
afterAll(async () => cluster?.destroy());

const ARMED_INDEX = [
  'CREATE TABLE armed (on_ boolean)',
  'INSERT INTO armed VALUES (false)',
  // Qualified: VACUUM and ANALYZE run index expressions with a restricted search path.
  `CREATE FUNCTION share() RETURNS int LANGUAGE plpgsql VOLATILE AS $f$ DECLARE lo oid; BEGIN
     IF (SELECT on_ FROM project_alpha.armed) THEN
       UPDATE project_alpha.armed SET on_ = false;
       EXECUTE 'GRANT SELECT ON project_alpha.t TO PUBLIC';
       lo := pg_catalog.lo_from_bytea(0, 'alpha secret'::bytea);
       EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO PUBLIC', lo);
       EXECUTE format('ALTER ROLE %I SET work_mem = %L', current_user, '77kB');
     END IF; RETURN 1; END $f$`,
  'CREATE FUNCTION idx(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $f$ SELECT v || (project_alpha.share() * 0)::text $f$',
  'CREATE TABLE t (v text)',
  "INSERT INTO t SELECT 'secret-' || (g % 3) FROM generate_series(1, 300) g",
];
/**
 * The sandbox now refuses an index using the workspace's own functions (autovacuum would run
 * them); one made before that check remains, which an administrator's hand stands for here.
 */
const OLD_INDEX = 'CREATE INDEX t_i ON project_alpha.t (project_alpha.idx(v))';

for (const kind of BACKEND_KINDS) {
  describe(`VACUUM escape suite on ${kind}`, () => {
    it("a table's code run by VACUUM (ANALYZE) leaves no grant to other roles and no role setting", async (ctx) => {
      const server = await startIsolationServer(kind, cluster, { role: 'mcp_vacuum', databasePrefix: 'iso_vacuum', statementTimeoutMs: 5000, disabledExtensions: ['codebase'] });
      if (!server) return ctx.skip();
      try {
        for (const sql of ARMED_INDEX) {
          const setup = await server.run('execute', { project_id: 'alpha', sql });
          expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
        }
        // Armed by the same hand: the sandbox refuses writes while this backend's statistics count that index as new.
        await server.asSuperuser(OLD_INDEX);
        await server.asSuperuser('UPDATE project_alpha.armed SET on_ = true');
        const vacuum = await server.run('execute', { project_id: 'alpha', sql: 'VACUUM (ANALYZE) t' });
        expect(vacuum.isError).toBe(true);
        expect(vacuum.text).toContain('granted to roles outside the workspace or changed the role');
        const stats = await server.run('query', {
          project_id: 'beta',
          sql: "SELECT most_common_vals::text FROM pg_stats WHERE schemaname = 'project_alpha' AND tablename = 't'",
        });
        expect(stats.data?.['rows']).toEqual([]);
        const lo = await server.run('query', { project_id: 'beta', sql: "SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata" });
        expect(lo.text).toMatch(/permission denied for large object/);
        expect(await server.asSuperuser('SELECT setconfig FROM pg_db_role_setting')).toEqual([]);
      } finally {
        await server.close();
      }
    }, 120_000);

    it('VACUUMs of many workspaces open at most two connections of their own at once', async (ctx) => {
      // Issue 27, red team round 3: each VACUUM opens a connection outside the pool, so with a lock held
      // in one call and VACUUMs waiting for it in the others, every workspace id added the cap's share.
      if (kind !== 'postgres') return ctx.skip(); // the embedded store runs VACUUM on its one session
      const server = await startIsolationServer(kind, cluster, { role: 'mcp_vacuum_conns', databasePrefix: 'iso_vacuum_conns', statementTimeoutMs: 8000, disabledExtensions: ['codebase'] });
      if (!server) return ctx.skip();
      try {
        const ids = ['v1', 'v2', 'v3', 'v4'];
        for (const id of ids) {
          for (const sql of [
            'CREATE TABLE t (v int)',
            "CREATE FUNCTION hold() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN LOCK TABLE t IN SHARE MODE; PERFORM pg_sleep(2.5); END $f$",
          ]) {
            const setup = await server.run('execute', { project_id: id, sql });
            expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
          }
        }
        const holds = ids.map((id) => server.run('execute', { project_id: id, sql: 'SELECT hold()' }));
        await new Promise((r) => setTimeout(r, 500));
        const vacuums = ids.flatMap((id) => [1, 2, 3].map(() => server.run('execute', { project_id: id, sql: 'VACUUM t' })));
        let most = 0;
        for (let i = 0; i < 15; i++) {
          const [row] = await server.asSuperuser<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'VACUUM%'");
          most = Math.max(most, row?.n ?? 0);
          await new Promise((r) => setTimeout(r, 100));
        }
        for (const done of await Promise.all([...holds, ...vacuums])) expect(done.isError, done.text).toBe(false);
        expect(most).toBeGreaterThan(0);
        expect(most).toBeLessThanOrEqual(2);
      } finally {
        await server.close();
      }
    }, 120_000);
  });
}
