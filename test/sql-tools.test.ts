import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import { silentLogger } from '../src/logger.js';
import { WorkspaceFleet } from '../src/workspaces/workspace-fleet.js';
import { install, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { callTool, connectInProcess } from './support/mcp.js';
import { startPgBouncer } from './support/pgbouncer.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { BACKEND_KINDS, backendPerKind } from './support/backend-per-kind.js';

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 120_000);
afterAll(async () => cluster?.destroy());

const embedding = (seed: number) => Array.from({ length: 768 }, (_, i) => (i === seed ? 1 : 0));

/** What a postgres server needs for the default set-up: pgvector created by an admin, a CREATEROLE role. */
async function postgresUrl(c: PgCluster, role: string, createRole: boolean): Promise<{ url: string; vector: boolean }> {
  const url = await c.createDatabase('tools');
  const database = new URL(url).pathname.slice(1);
  await c.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} LOGIN ${createRole ? 'CREATEROLE' : ''}; END IF; END $$`);
  await c.sql(`GRANT CREATE ON DATABASE ${database} TO ${role}`);
  const [available] = await c.sql(`SELECT count(*)::int AS n FROM pg_available_extensions WHERE name = 'vector'`);
  const vector = available?.['n'] === 1;
  if (vector) {
    const pg = await import('pg');
    const admin = new pg.default.Client({ connectionString: url });
    await admin.connect();
    await admin.query('CREATE EXTENSION IF NOT EXISTS vector');
    await admin.end();
  }
  return { url: c.url(database, role), vector };
}

for (const kind of BACKEND_KINDS) {
  describe(`query and execute through an MCP client on ${kind}`, () => {
    let mcp: Awaited<ReturnType<typeof connectInProcess>> | undefined;
    let tools: Tool[];
    const run = (name: string, args: Record<string, unknown>) => callTool((mcp as NonNullable<typeof mcp>).client, tools, name, args);

    beforeAll(async () => {
      if (kind === 'pglite') {
        // The store's own maintenance stays out of the way of the counts the VACUUM test reads.
        mcp = await connectInProcess({ allowedProjects: ['agent-a', 'agent-b'], maintenanceIdleMs: 3_600_000 });
      } else {
        if (!cluster) return;
        const { url, vector } = await postgresUrl(cluster, 'mcp_tools', true);
        if (!vector) {
          process.stderr.write('\n!!! pgvector is not installed in this PostgreSQL: the embedding test on postgres is skipped\n\n');
          return;
        }
        mcp = await connectInProcess({ databaseUrl: url, allowedProjects: ['agent-a', 'agent-b'] });
      }
      tools = mcp.tools;
    }, 240_000);
    afterAll(async () => mcp?.close());

    it('an agent creates a workspace, inserts chunks with embeddings and reads the nearest back', async (ctx) => {
      if (!mcp) ctx.skip();
      expect((await run('ensure_workspace', { project_id: 'agent-a' })).isError).toBe(false);
      const repo = await run('execute', {
        project_id: 'agent-a',
        sql: 'WITH r AS (INSERT INTO repositories (path, name) VALUES ($1, $2) RETURNING id) ' +
          "INSERT INTO files (repository_id, path, content_hash, size_bytes) SELECT id, 'a.ts', 'h', 10 FROM r RETURNING id",
        params: ['/src/app', 'app'],
      });
      expect(repo.isError, repo.text).toBe(false);
      const fileId = (repo.data['rows'] as string[][])[0]?.[0];
      for (const [i, content] of ['alpha', 'beta', 'gamma'].entries()) {
        const inserted = await run('execute', {
          project_id: 'agent-a',
          sql: 'INSERT INTO chunks (file_id, content, start_line, end_line, embedding) VALUES ($1, $2, 1, 2, $3) RETURNING id, embedding',
          params: [fileId, content, embedding(i)],
        });
        expect(inserted.isError, inserted.text).toBe(false);
        expect(inserted.data).toMatchObject({ command: 'INSERT', row_count: 1 });
        expect((inserted.data['rows'] as unknown[][])[0]?.[1]).toEqual(embedding(i));
      }
      const nearest = await run('query', {
        project_id: 'agent-a',
        sql: 'SELECT content, embedding <=> $1 AS distance FROM chunks ORDER BY embedding <=> $1 LIMIT 2',
        // Mostly "beta", a little "alpha", nothing of "gamma".
        params: [embedding(1).map((x, i) => (i === 0 ? 0.5 : x))],
      });
      expect(nearest.isError, nearest.text).toBe(false);
      expect(nearest.data['columns']).toEqual([
        { name: 'content', type: 'text' },
        { name: 'distance', type: 'double precision' },
      ]);
      expect((nearest.data['rows'] as unknown[][]).map((r) => r[0])).toEqual(['beta', 'alpha']);
      const [first, second] = (nearest.data['rows'] as number[][]).map((r) => r[1] as number);
      expect(first).toBeLessThan(second as number);
    }, 120_000);

    it('keeps bigint and numeric exact, and reports columns of an empty result', async (ctx) => {
      if (!mcp) ctx.skip();
      const r = await run('query', {
        project_id: 'agent-b',
        sql: 'SELECT 9007199254740993::bigint AS big, 0.1::numeric(20,19) AS exact, 1.5::float8 AS f, 7 AS i, $1::text AS p WHERE $2',
        params: ['x', true],
      });
      expect(r.isError, r.text).toBe(false);
      expect(r.data['rows']).toEqual([['9007199254740993', '0.1000000000000000000', 1.5, 7, 'x']]);
      // Rows reach the server as to_json objects: repeated and numeric column names keep their
      // places, and json, arrays and booleans their JSON form.
      const shapes = await run('query', {
        project_id: 'agent-b',
        sql: `SELECT 1, 2, 'b' AS "2", 'a' AS "1", '{"k": [1, 2]}'::jsonb AS j, ARRAY[1.5, NULL] AS arr, true AS t, NULL::text AS n, '"]}{' AS s`,
      });
      expect(shapes.isError, shapes.text).toBe(false);
      expect(shapes.data['rows']).toEqual([[1, 2, 'b', 'a', { k: [1, 2] }, [1.5, null], true, null, '"]}{']]);
      const empty = await run('query', { project_id: 'agent-b', sql: 'SELECT 1::bigint AS n, now() AS t WHERE false' });
      expect(empty.data).toMatchObject({ rows: [], row_count: 0, truncated: false, columns: [{ name: 'n', type: 'bigint' }, { name: 't', type: 'timestamp with time zone' }] });
    });

    it('execute reports DDL and counts every affected row, returning at most 100', async (ctx) => {
      if (!mcp) ctx.skip();
      expect((await run('execute', { project_id: 'agent-b', sql: 'CREATE TABLE items (n int PRIMARY KEY)' })).data).toMatchObject({ command: 'CREATE TABLE' });
      const many = await run('execute', { project_id: 'agent-b', sql: 'INSERT INTO items SELECT g FROM generate_series(1, 250) g RETURNING n' });
      expect(many.data).toMatchObject({ command: 'INSERT', row_count: 250, truncated: true });
      expect((many.data['rows'] as unknown[]).length).toBe(100);
      const updated = await run('execute', { project_id: 'agent-b', sql: 'UPDATE items SET n = n + 1000 WHERE n <= $1', params: [10] });
      expect(updated.data).toMatchObject({ command: 'UPDATE', row_count: 10, rows: [] });
    });

    it("execute runs ANALYZE and VACUUM of the workspace's own tables, and of nobody else's", async (ctx) => {
      if (!mcp) ctx.skip();
      const ok = async (sql: string) => {
        const r = await run('execute', { project_id: 'agent-a', sql });
        expect(r.isError, r.text).toBe(false);
        return r.data;
      };
      const stats = async () =>
        (await run('query', {
          project_id: 'agent-a',
          sql: `SELECT s.vacuum_count::int AS vacuums, s.analyze_count::int AS analyzes, c.reltuples::int AS rows,
                       (SELECT count(*)::int FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'kept') AS columns
                  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
                 WHERE s.schemaname = current_schema() AND s.relname = 'kept'`,
        })).data['rows'];
      await ok('CREATE TABLE kept (n int PRIMARY KEY, note text)');
      await ok("INSERT INTO kept SELECT g, 'x' FROM generate_series(1, 500) g");
      await ok("UPDATE kept SET note = 'y'");
      expect(await ok('ANALYZE kept (n)')).toMatchObject({ command: 'ANALYZE' });
      expect(await stats()).toEqual([[0, 1, 500, 1]]);
      expect(await ok('VACUUM (ANALYZE, VERBOSE) kept')).toMatchObject({ command: 'VACUUM' });
      expect(await stats()).toEqual([[1, 2, 500, 2]]);
      // No table named: every table of the workspace.
      expect(await ok('VACUUM')).toMatchObject({ command: 'VACUUM' });
      expect(await stats()).toEqual([[2, 2, 500, 2]]);

      const refused = async (sql: string, message: RegExp) => {
        const r = await run('execute', { project_id: 'agent-a', sql });
        expect(r.isError, sql).toBe(true);
        expect(r.text).toMatch(message);
      };
      await run('execute', { project_id: 'agent-b', sql: 'CREATE TABLE IF NOT EXISTS theirs (n int)' });
      await refused('VACUUM project_agent_b.theirs', /permission denied for schema project_agent_b/);
      await refused('ANALYZE project_agent_b.theirs', /permission denied for schema project_agent_b/);
      await refused('VACUUM pg_catalog.pg_class', /own tables only, and pg_catalog\.pg_class is not one of workspace agent-a's/);
      await refused('ANALYZE missing', /no table "missing" in workspace agent-a/);
      await refused('VACUUM (ONLY_DATABASE_STATS)', /option ONLY_DATABASE_STATS is not available/);
      await refused('BEGIN', /execute does not run TransactionStmt/);
    });

    it('bounds a result by bytes as well as rows, and says which bound cut it', async (ctx) => {
      if (!mcp) ctx.skip();
      const rows = (r: Awaited<ReturnType<typeof run>>) => r.data['rows'] as unknown[][];
      // 20 rows of 200 kB: the default budget (1 MiB) holds 5 of them.
      await run('execute', { project_id: 'agent-b', sql: 'CREATE TABLE wide (n int, body text)' });
      const filled = await run('execute', { project_id: 'agent-b', sql: "INSERT INTO wide SELECT g, repeat('x', 200000) FROM generate_series(1, 20) g" });
      expect(filled.data).toMatchObject({ row_count: 20 });
      const wide = await run('query', { project_id: 'agent-b', sql: 'SELECT n, body FROM wide ORDER BY n', max_rows: 100 });
      expect(wide.isError, wide.text).toBe(false);
      expect(wide.data).toMatchObject({ row_count: 5, truncated: true });
      expect(wide.data['truncated_reason']).toMatch(/^max_bytes: .*1048576 bytes.*PG_WORKSPACE_MAX_RESULT_BYTES/);
      expect(rows(wide).map((r) => r[0])).toEqual([1, 2, 3, 4, 5]);
      expect(wide.text.length).toBeLessThan(1024 * 1024 + 10_000);
      // One row larger than the budget: none is sent, and the 99 after it are never read.
      const huge = await run('query', { project_id: 'agent-b', sql: "SELECT g, repeat('y', 10000000) AS big FROM generate_series(1, 100) g", max_rows: 100 });
      expect(huge.data).toMatchObject({ row_count: 0, rows: [], truncated: true, columns: [{ name: 'g', type: 'integer' }, { name: 'big', type: 'text' }] });
      expect(huge.data['truncated_reason']).toMatch(/^max_bytes: /);
      // RETURNING rows are bounded alike, and row_count still counts every row changed.
      const returned = await run('execute', { project_id: 'agent-b', sql: 'UPDATE wide SET n = n + 100 RETURNING n, body' });
      expect(returned.data).toMatchObject({ command: 'UPDATE', row_count: 20, truncated: true });
      expect(rows(returned)).toHaveLength(5);
      expect(returned.data['truncated_reason']).toMatch(/^max_bytes: /);
      // Small rows: max_rows cuts first, and says so; a result within both bounds has no reason.
      const capped = await run('query', { project_id: 'agent-b', sql: 'SELECT n FROM wide ORDER BY n', max_rows: 3 });
      expect(capped.data).toMatchObject({ row_count: 3, truncated: true });
      expect(capped.data['truncated_reason']).toMatch(/^max_rows: more than 3 rows/);
      const whole = await run('query', { project_id: 'agent-b', sql: 'SELECT n FROM wide ORDER BY n', max_rows: 20 });
      expect(whole.data).toMatchObject({ row_count: 20, truncated: false });
      expect(whole.data).not.toHaveProperty('truncated_reason');
    }, 120_000);

    it('every tool obeys the project allowlist', async (ctx) => {
      if (!mcp) ctx.skip();
      for (const [tool, args] of [
        ['ensure_workspace', {}],
        ['query', { sql: 'SELECT 1' }],
        ['execute', { sql: 'SELECT 1' }],
        ['validate_columns', { table: 'chunks', columns: ['id'] }],
        ['workspace_status', {}],
      ] as const) {
        const refused = await run(tool, { project_id: 'intruder', ...args });
        expect(refused.isError, tool).toBe(true);
        expect(refused.text).toMatch(/is not one this server serves/);
      }
      expect((await run('workspace_status', {})).isError).toBe(true);
      expect((await run('validate_columns', { table: 'project_intruder.chunks', columns: ['id'] })).isError).toBe(true);
      expect((await run('workspace_status', { project_id: 'agent-a' })).isError).toBe(false);
    });

    it('list_workspaces lists the allowed workspaces only, a page at a time', async (ctx) => {
      if (!mcp) ctx.skip();
      // Workspaces outside the allowlist, made beside the tools: one sorts between the allowed two.
      const manager = (await (mcp as NonNullable<typeof mcp>).engine.ready(60_000)).workspaces;
      await manager.ensure('agent-aa');
      await manager.ensure('intruder');
      const ids = (r: Awaited<ReturnType<typeof run>>) => (r.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id);
      const all = await run('list_workspaces', {});
      expect(all.isError, all.text).toBe(false);
      expect(ids(all)).toEqual(['agent-a', 'agent-b']);
      expect(all.data['next_cursor']).toBeNull();
      const first = await run('list_workspaces', { limit: 1 });
      expect(ids(first)).toEqual(['agent-a']);
      expect(first.data['next_cursor']).toEqual(expect.any(String));
      const second = await run('list_workspaces', { limit: 1, cursor: first.data['next_cursor'] });
      expect(ids(second)).toEqual(['agent-b']);
      expect(second.data['next_cursor']).toBeNull();
      expect(ids(await run('list_workspaces', { prefix: 'agent-b' }))).toEqual(['agent-b']);
      expect(ids(await run('list_workspaces', { prefix: 'intr' }))).toEqual([]);
      expect(all.text).not.toContain('intruder');
      expect((await run('list_workspaces', { cursor: 'garbage!' })).isError).toBe(true);
    });
  });
}

describe('a server role without CREATEROLE', () => {
  it('refuses the SQL tools with the ALTER ROLE that fixes it, and still provisions', async (ctx) => {
    if (!cluster) ctx.skip();
    const { url } = await postgresUrl(cluster as PgCluster, 'mcp_plain', false);
    const mcp = await connectInProcess({ databaseUrl: url, disabledExtensions: ['codebase'] });
    try {
      const created = await callTool(mcp.client, mcp.tools, 'ensure_workspace', { project_id: 'plain' });
      expect(created.isError, created.text).toBe(false);
      const refused = await callTool(mcp.client, mcp.tools, 'query', { project_id: 'plain', sql: 'SELECT 1' });
      expect(refused.isError).toBe(true);
      expect(refused.text).toContain('ALTER ROLE "mcp_plain" CREATEROLE;');
    } finally {
      await mcp.close();
    }
  }, 120_000);

  it('refuses search_vectors the same way: it reads agent tables only as the workspace', async (ctx) => {
    if (!cluster) ctx.skip();
    const { url, vector } = await postgresUrl(cluster as PgCluster, 'mcp_plain', false);
    if (!vector) {
      process.stderr.write('\n!!! pgvector is not installed in this PostgreSQL: the search_vectors refusal is not tested\n\n');
      return ctx.skip();
    }
    const mcp = await connectInProcess({ databaseUrl: url });
    try {
      const created = await callTool(mcp.client, mcp.tools, 'ensure_workspace', { project_id: 'plain' });
      expect(created.isError, created.text).toBe(false);
      const refused = await callTool(mcp.client, mcp.tools, 'search_vectors', { project_id: 'plain', table: 'chunks', column: 'embedding', vector: embedding(0) });
      expect(refused.isError).toBe(true);
      expect(refused.text).toContain('ALTER ROLE "mcp_plain" CREATEROLE;');
    } finally {
      await mcp.close();
    }
  }, 120_000);
});

describe('behind PgBouncer in transaction mode', () => {
  it('runs query and execute, many at once, each call one transaction', async (ctx) => {
    if (!cluster) ctx.skip();
    const started = await startPgBouncer(cluster as PgCluster);
    if (!started) return ctx.skip();
    const bouncer = started;
    const url = await (cluster as PgCluster).createDatabase('bouncer');
    const mcp = await connectInProcess({ databaseUrl: bouncer.url(new URL(url).pathname.slice(1)), disabledExtensions: ['codebase'] });
    try {
      const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
      expect((await run('execute', { project_id: 'bounced', sql: 'CREATE TABLE t (n int)' })).isError).toBe(false);
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          i % 2 === 0
            ? run('execute', { project_id: 'bounced', sql: 'INSERT INTO t VALUES ($1) RETURNING n', params: [i] })
            : run('query', { project_id: 'bounced', sql: 'SELECT count(*) AS n FROM t' }),
        ),
      );
      for (const r of results) expect(r.isError, r.text).toBe(false);
      const total = await run('query', { project_id: 'bounced', sql: 'SELECT count(*)::int AS n FROM t' });
      expect(total.data['rows']).toEqual([[6]]);
      // ANALYZE runs in the call's transaction; VACUUM needs a connection started as the workspace's role.
      expect((await run('execute', { project_id: 'bounced', sql: 'ANALYZE t' })).isError).toBe(false);
      const vacuum = await run('execute', { project_id: 'bounced', sql: 'VACUUM t' });
      expect(vacuum.isError).toBe(true);
      expect(vacuum.text).toMatch(/connection of its own started as role pgw_\w+_bounced, and the database refused it \(unsupported startup parameter: options\)\. A pooler such as PgBouncer/);
    } finally {
      await mcp.close();
      await bouncer.stop();
    }
  }, 120_000);

  it("never lets a workspace meet another's custom setting names on the pooler's server connections", async (ctx) => {
    if (!cluster) ctx.skip();
    // Two server connections (boot holds the install lock on one while it works on the other);
    // PgBouncer hands out the one used last, so calls one after another share a backend.
    const started = await startPgBouncer(cluster as PgCluster, { poolSize: 2 });
    if (!started) return ctx.skip();
    const bouncer = started;
    const url = await (cluster as PgCluster).createDatabase('bouncer_names');
    const mcp = await connectInProcess({ databaseUrl: bouncer.url(new URL(url).pathname.slice(1)), disabledExtensions: ['codebase'] });
    try {
      const run = async (project: string, name: string, sql: string) => {
        const result = await callTool(mcp.client, mcp.tools, name, { project_id: project, sql });
        expect(result.isError, result.text).toBe(false);
        return result.data['rows'];
      };
      const leave = "CREATE FUNCTION leave() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN set_config('x.covert', '1', false); END $$";
      const read = "SELECT current_setting('x.covert', true) AS seen";
      await run('teller', 'execute', leave);
      await run('listener', 'query', 'SELECT 1');
      for (let round = 0; round < 3; round++) {
        await run('teller', 'query', 'SELECT leave()');
        // Its own name stays its own to read (the value does not outlive the call).
        expect(await run('teller', 'query', read)).toEqual([['']]);
        expect(await run('listener', 'query', read)).toEqual([[null]]);
      }
    } finally {
      await mcp.close();
      await bouncer.stop();
    }
  }, 120_000);

  it('serves many workspaces at once on a pool smaller than their number, each backend ending when another workspace claims it', async (ctx) => {
    if (!cluster) ctx.skip();
    const started = await startPgBouncer(cluster as PgCluster, { poolSize: 4 });
    if (!started) return ctx.skip();
    const bouncer = started;
    const url = await (cluster as PgCluster).createDatabase('bouncer_churn');
    const mcp = await connectInProcess({ databaseUrl: bouncer.url(new URL(url).pathname.slice(1)), disabledExtensions: ['codebase'] });
    try {
      const ids = Array.from({ length: 6 }, (_, i) => `churn-${i}`);
      for (const id of ids) expect((await callTool(mcp.client, mcp.tools, 'execute', { project_id: id, sql: 'CREATE TABLE t (n int)' })).isError).toBe(false);
      // Every idle backend soon holds another workspace's mark: at three tries, 7 of these 60 calls failed.
      for (let round = 0; round < 10; round++) {
        const results = await Promise.all(ids.map((id) => callTool(mcp.client, mcp.tools, 'query', { project_id: id, sql: 'SELECT count(*)::int AS n FROM t' })));
        for (const r of results) expect(r.isError, r.text).toBe(false);
      }
    } finally {
      await mcp.close();
      await bouncer.stop();
    }
  }, 120_000);
});

for (const kind of BACKEND_KINDS) {
  describe(`workspace upgrades on ${kind}`, () => {
    const available = backendPerKind(kind, () => cluster);

    it("run inside the sandbox: a trigger the agent planted fires as the workspace's role, not the server's", async (ctx) => {
      const backend = available(ctx);
      const db = await backend.fresh();
      const root = await tempDir();
      const files = { 'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);' };
      const v1 = await planFor([await writeExtension(root, { id: 'notes', version: '1' }, files)], ['codebase']);
      const r1 = await install(db, v1);
      const { sandbox: s1 } = sandboxedWorkspaces(db, v1, r1.searchPathSchemas, silentLogger);
      // Each attempt swallows its own failure, so the migration succeeds whichever role it ran as.
      await s1.execute('victim', `CREATE FUNCTION spy() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
          BEGIN PERFORM set_config('role', 'none', true); EXCEPTION WHEN OTHERS THEN NULL; END;
          BEGIN CREATE TABLE public.pwned AS SELECT current_user AS who; EXCEPTION WHEN OTHERS THEN NULL; END;
          BEGIN DELETE FROM project_registry.workspace_migrations; EXCEPTION WHEN OTHERS THEN NULL; END;
          RETURN NEW;
        END $f$`, []);
      await s1.execute('victim', 'CREATE TRIGGER spy BEFORE UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION spy()', []);
      await s1.execute('victim', "INSERT INTO notes (body) VALUES ('x')", []);

      const v2 = await planFor(
        [await writeExtension(root, { id: 'notes', version: '2' }, { ...files, 'workspace/migrations/0001_touch.sql': "UPDATE notes SET body = body || '!';" })],
        ['codebase'],
      );
      const r2 = await install(db, v2);
      const { workspaces: m2, sandbox: s2 } = sandboxedWorkspaces(db, v2, r2.searchPathSchemas, silentLogger);
      const summary = await new WorkspaceFleet(db, v2, m2, s2).upgrade({ concurrency: 1 });
      expect(summary).toMatchObject({ upgraded: 1, failed: 0 });
      const [state] = await db.query<{ pwned: string | null; ledger: number; body: string }>(
        `SELECT to_regclass('public.pwned')::text AS pwned,
                (SELECT count(*)::int FROM project_registry.workspace_migrations) AS ledger,
                (SELECT body FROM project_victim.notes) AS body`,
      );
      expect(state).toEqual({ pwned: null, ledger: 1, body: 'x!' });

      // A trigger that leaves what a rollback keeps: a session advisory lock, a prepared statement.
      await s2.execute('victim', `CREATE FUNCTION leftover() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN PERFORM pg_advisory_lock(4242); EXECUTE 'PREPARE agent_leftover AS SELECT 1'; RETURN NEW; END $f$`, []);
      await s2.execute('victim', 'CREATE TRIGGER leftover BEFORE UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION leftover()', []);

      // A failing statement of a sandboxed script is located from PostgreSQL's position, never by
      // replaying the script as the server; and the script's session is left clean.
      const v3 = await planFor(
        [await writeExtension(root, { id: 'notes', version: '3' }, {
          ...files,
          'workspace/migrations/0001_touch.sql': "UPDATE notes SET body = body || '!';",
          'workspace/migrations/0002_bad.sql': "UPDATE notes SET body = body;\nSELECT missing_column FROM notes;",
        })],
        ['codebase'],
      );
      const r3 = await install(db, v3);
      const { workspaces: m3 } = sandboxedWorkspaces(db, v3, r3.searchPathSchemas, silentLogger);
      await expect(m3.upgrade('victim')).rejects.toThrow(/0002_bad\.sql statement 2\/2 \(line 2\)[\s\S]*missing_column/);
      // pg_locks covers every session; the pool lends the session it got back last, the script's.
      const [after] = await db.query<{ locks: number; prepared: number }>(
        `SELECT (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242) AS locks,
                (SELECT count(*)::int FROM pg_prepared_statements) AS prepared`,
      );
      expect(after).toEqual({ locks: 0, prepared: 0 });
    }, 120_000);
  });
}

describe('workspace upgrades on postgres', () => {
  const available = backendPerKind('postgres', () => cluster);

  it("are bounded: an agent's slow trigger cannot hold an upgrade past the upgrade timeout", async (ctx) => {
    const db = await available(ctx).fresh();
    const root = await tempDir();
    const files = { 'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);' };
    const v1 = await planFor([await writeExtension(root, { id: 'notes', version: '1' }, files)], ['codebase']);
    const r1 = await install(db, v1);
    const { sandbox: s1 } = sandboxedWorkspaces(db, v1, r1.searchPathSchemas, silentLogger);
    // The trigger even lifts the timeout first: too late for the statement already running.
    await s1.execute('slowpoke', `CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $f$
      BEGIN PERFORM set_config('statement_timeout', '0', true); PERFORM pg_sleep(8); RETURN NEW; END $f$`, []);
    await s1.execute('slowpoke', 'CREATE TRIGGER stall BEFORE UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION stall()', []);
    await s1.execute('slowpoke', "INSERT INTO notes (body) VALUES ('x')", []);

    const v2 = await planFor(
      [await writeExtension(root, { id: 'notes', version: '2' }, { ...files, 'workspace/migrations/0001_touch.sql': "UPDATE notes SET body = body || '!';" })],
      ['codebase'],
    );
    const r2 = await install(db, v2);
    const { workspaces: m2 } = sandboxedWorkspaces(db, v2, r2.searchPathSchemas, silentLogger, { upgradeTimeoutMs: 500 });
    const failure = await m2.upgrade('slowpoke').then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(failure?.message).toMatch(/statement timeout/);
    // Nothing of the upgrade stayed, and the workspace still works.
    const [state] = await db.query<{ ledger: number; body: string }>(
      `SELECT (SELECT count(*)::int FROM project_registry.workspace_migrations WHERE project_id = 'slowpoke') AS ledger,
              (SELECT body FROM project_slowpoke.notes) AS body`,
    );
    expect(state).toEqual({ ledger: 0, body: 'x' });
  }, 120_000);
});

describe('the sandbox function of a workspace', () => {
  it("is made again when its body is not exactly this server's (as an older server left it)", async (ctx) => {
    if (!cluster) ctx.skip();
    const { url } = await postgresUrl(cluster as PgCluster, 'mcp_body', true);
    const first = await connectInProcess({ databaseUrl: url, disabledExtensions: ['codebase'] });
    try {
      expect((await callTool(first.client, first.tools, 'query', { project_id: 'old-body', sql: 'SELECT 1' })).isError).toBe(false);
    } finally {
      await first.close();
    }
    const pg = await import('pg');
    const admin = new pg.default.Client({ connectionString: (cluster as PgCluster).url(new URL(url).pathname.slice(1)) });
    await admin.connect();
    try {
      // Same name, arguments, owner and flags; another body.
      await admin.query(`CREATE OR REPLACE FUNCTION project_registry_sandbox.project_old_body(step text, statement text, max_rows integer, max_bytes integer)
        RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $f$ BEGIN RETURN '{"rows": [["stale"]], "more": false, "total": 1}'; END $f$`);
      const second = await connectInProcess({ databaseUrl: url, disabledExtensions: ['codebase'] });
      try {
        const answered = await callTool(second.client, second.tools, 'query', { project_id: 'old-body', sql: 'SELECT 1 AS one' });
        expect(answered.isError, answered.text).toBe(false);
        expect(answered.data['rows']).toEqual([[1]]);
      } finally {
        await second.close();
      }
      const [body] = (await admin.query(`SELECT prosrc FROM pg_proc WHERE proname = 'project_old_body'`)).rows as { prosrc: string }[];
      expect(body?.prosrc).not.toContain('stale');
    } finally {
      await admin.end();
    }
  }, 120_000);

  it('is made for many workspaces at once, each owning everything in its schema, all sharing one body', async (ctx) => {
    if (!cluster) ctx.skip();
    const { url } = await postgresUrl(cluster as PgCluster, 'mcp_many', true);
    const root = await tempDir();
    // Every kind of object adopt_objects() hands over, made by the server with the workspace.
    const extension = await writeExtension(root, { id: 'kinds' }, {
      'workspace/schema.sql': `CREATE TABLE IF NOT EXISTS items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);
        CREATE OR REPLACE VIEW item_bodies AS SELECT body FROM items;
        CREATE SEQUENCE IF NOT EXISTS tickets;
        CREATE TYPE mood AS ENUM ('calm');
        CREATE OR REPLACE FUNCTION shout(t text) RETURNS text LANGUAGE sql AS $f$ SELECT upper(t) $f$;`,
    });
    const server = await connectInProcess({ databaseUrl: url, disabledExtensions: ['codebase'], extensionDirs: [extension] });
    const pg = await import('pg');
    const admin = new pg.default.Client({ connectionString: (cluster as PgCluster).url(new URL(url).pathname.slice(1)) });
    await admin.connect();
    try {
      // First calls on eight new workspaces at once: each writes its principal (and one the
      // shared body), all touching the sandbox schema's privileges.
      const ids = Array.from({ length: 8 }, (_, i) => `many-${i}`);
      const first = await Promise.all(ids.map((id) => callTool(server.client, server.tools, 'execute', { project_id: id, sql: "INSERT INTO items (body) VALUES ('x')" })));
      for (const result of first) expect(result.isError, result.text).toBe(false);
      const { rows: strangers } = await admin.query(
        `SELECT n.nspname, o.kind, o.name FROM pg_namespace n,
                LATERAL (SELECT 'class' AS kind, relname::text AS name, relowner AS owner FROM pg_class WHERE relnamespace = n.oid
                         UNION ALL SELECT 'routine', proname::text, proowner FROM pg_proc WHERE pronamespace = n.oid
                         UNION ALL SELECT 'type', typname::text, typowner FROM pg_type WHERE typnamespace = n.oid) o
          WHERE n.nspname LIKE 'project_many_%' AND o.owner <> (SELECT p.proowner FROM pg_proc p
                 WHERE p.pronamespace = 'project_registry_sandbox'::regnamespace AND p.proname = n.nspname)`,
      );
      expect(strangers).toEqual([]);
      // A body already exactly this server's is not written again by the next workspace's first call.
      const bodyVersion = async () =>
        (await admin.query(`SELECT xmin::text AS v FROM pg_proc WHERE pronamespace = 'project_registry_sandbox_body'::regnamespace AND proname = 'run'`)).rows;
      const before = await bodyVersion();
      const next = await callTool(server.client, server.tools, 'execute', { project_id: 'many-8', sql: "INSERT INTO items (body) VALUES ('x')" });
      expect(next.isError, next.text).toBe(false);
      expect(await bodyVersion()).toEqual(before);
      const drop = await callTool(server.client, server.tools, 'execute', { project_id: 'many-0', sql: 'DROP TYPE mood' });
      expect(drop.isError, drop.text).toBe(false);
      const { rows: bodies } = await admin.query(
        `SELECT l.lanname AS language, count(*)::int AS n FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
          WHERE p.pronamespace IN ('project_registry_sandbox'::regnamespace, 'project_registry_sandbox_body'::regnamespace) GROUP BY 1 ORDER BY 1`,
      );
      // adopt_objects() is the sandbox schema's own function, plpgsql too.
      expect(bodies).toEqual([{ language: 'plpgsql', n: 2 }, { language: 'sql', n: 9 }]);
    } finally {
      await admin.end();
      await server.close();
    }
  }, 120_000);

  it("is called by the server's own EXECUTE grant, which a function of an older server gets, not through its membership of the workspace role", async (ctx) => {
    if (!cluster) ctx.skip();
    const { url } = await postgresUrl(cluster as PgCluster, 'mcp_grant', true);
    const pg = await import('pg');
    const admin = new pg.default.Client({ connectionString: (cluster as PgCluster).url(new URL(url).pathname.slice(1)) });
    await admin.connect();
    const fn = 'project_registry_sandbox.project_granted(text, text, integer, integer)';
    const grantees = async () =>
      (await admin.query(`SELECT a.grantee::regrole::text AS who FROM pg_proc p, aclexplode(p.proacl) a WHERE p.oid = $1::regprocedure AND a.privilege_type = 'EXECUTE' ORDER BY 1`, [fn])).rows.map(
        (r: { who: string }) => r.who,
      );
    const whoami = async (server: Awaited<ReturnType<typeof connectInProcess>>) => {
      const result = await callTool(server.client, server.tools, 'query', { project_id: 'granted', sql: 'SELECT current_user::text AS who' });
      expect(result.isError, result.text).toBe(false);
      return (result.data['rows'] as string[][])[0]?.[0] ?? '';
    };
    try {
      const first = await connectInProcess({ databaseUrl: url, disabledExtensions: ['codebase'] });
      const role = await whoami(first).finally(() => first.close());
      expect(await grantees()).toEqual(['mcp_grant', role].sort());
      // As an older server left it: the owner's EXECUTE only.
      await admin.query(`REVOKE EXECUTE ON FUNCTION ${fn} FROM mcp_grant`);
      const second = await connectInProcess({ databaseUrl: url, disabledExtensions: ['codebase'] });
      try {
        expect(await whoami(second)).toBe(role);
        expect(await grantees()).toEqual(['mcp_grant', role].sort());
        // Without the membership (which only making the sandbox needs) the calls go on.
        await admin.query(`REVOKE "${role}" FROM mcp_grant`);
        expect(await whoami(second)).toBe(role);
      } finally {
        await second.close();
      }
    } finally {
      await admin.end();
    }
  }, 120_000);

  it('refuses to run agent SQL once made SECURITY INVOKER behind a running server, and is made again', async (ctx) => {
    if (!cluster) ctx.skip();
    const { url } = await postgresUrl(cluster as PgCluster, 'mcp_invoker', true);
    const server = await connectInProcess({ databaseUrl: url, disabledExtensions: ['codebase'] });
    const pg = await import('pg');
    const admin = new pg.default.Client({ connectionString: (cluster as PgCluster).url(new URL(url).pathname.slice(1)) });
    await admin.connect();
    try {
      const whoami = () => callTool(server.client, server.tools, 'query', { project_id: 'invoked', sql: 'SELECT current_user::text AS who' });
      const before = await whoami();
      expect(before.isError, before.text).toBe(false);
      const role = (before.data['rows'] as string[][])[0]?.[0];
      expect(role).toMatch(/^pgw_/);
      // The server has the workspace cached: only the body's own check stands between the
      // agent's SQL and the server's role now.
      await admin.query('ALTER FUNCTION project_registry_sandbox.project_invoked(text, text, integer, integer) SECURITY INVOKER');
      const after = await whoami();
      expect(after.isError, after.text).toBe(false);
      expect(after.data['rows']).toEqual([[role]]);
      const [flags] = (await admin.query(`SELECT prosecdef FROM pg_proc WHERE proname = 'project_invoked'`)).rows as { prosecdef: boolean }[];
      expect(flags?.prosecdef).toBe(true);
    } finally {
      await admin.end();
      await server.close();
    }
  }, 120_000);
});
