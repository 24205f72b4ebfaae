import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseCommand } from '../src/config.js';
import { ProvisioningEngine } from '../src/engine.js';
import { silentLogger } from '../src/logger.js';
import { DEFAULT_LOCK_TIMEOUT_MS } from '../src/config.js';
import { callTool, connectInProcess } from './support/mcp.js';
import { startPgvectorCluster, type PgCluster } from './support/pg-cluster.js';
import { runCli } from './support/server-process.js';
import { TOOL_NAMES, type ToolName } from '../src/mcp/tool-registry.js';
import { tempDir } from './support/fixtures.js';
import { CROWDED_DATABASE_WORKSPACES } from '../src/operations/spreading-advice.js';

/**
 * Issue 24 item 7: --workspaces-per-database spreads workspaces over databases of one PostgreSQL
 * server (src/databases/). One cluster for every case; databases of two workspaces each, so a
 * handful of workspaces already spans several.
 */

/** The server's role as docs/operations.md sets it up for spreading: CREATEROLE, CREATEDB, pgvector in template1. */
const SERVER = 'shard_app';

async function rowsIn(cluster: PgCluster, database: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: cluster.url(database) });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** A home database for the server's role, on the shared cluster (pgvector comes from template1). */
async function homeDatabase(cluster: PgCluster, name: string, role = SERVER): Promise<string> {
  await cluster.sql(`CREATE DATABASE ${name}`);
  await cluster.sql(`GRANT CREATE ON DATABASE ${name} TO ${role}`);
  return cluster.url(name, role);
}

/** A server on `url` spreading two workspaces to a database, and a caller of its tools. */
async function spreadingServer(url: string, options: Omit<Parameters<typeof connectInProcess>[0], 'databaseUrl' | 'workspacesPerDatabase'> = {}) {
  const mcp = await connectInProcess({ ...options, databaseUrl: url, workspacesPerDatabase: 2 });
  return { mcp, call: (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args) };
}

const placements = (cluster: PgCluster, home: string) =>
  rowsIn(cluster, home, 'SELECT project_id, database_name FROM project_registry.workspace_placements ORDER BY project_id');

describe('workspaces spread over databases (PostgreSQL)', () => {
  let cluster: PgCluster | null;

  beforeAll(async () => {
    cluster = await startPgvectorCluster('spreading workspaces over databases');
    if (!cluster) return;
    await cluster.sql(`CREATE ROLE ${SERVER} LOGIN CREATEROLE CREATEDB`);
    // Member databases are made from template1: pgvector there, as an admin (vector is not a trusted extension).
    await rowsIn(cluster, 'template1', 'CREATE EXTENSION vector');
  }, 120_000);
  afterAll(async () => cluster?.destroy());

  describe('five workspaces, two to a database', () => {
    let mcp: Awaited<ReturnType<typeof connectInProcess>> | undefined;
    let url: string;
    const call = (name: string, args: Record<string, unknown>) => callTool(mcp!.client, mcp!.tools, name, args);

    beforeAll(async () => {
      if (!cluster) return;
      url = await homeDatabase(cluster, 'spread');
      // A workspace made before the setting stays in the home database.
      const before = await connectInProcess({ databaseUrl: url });
      expect((await callTool(before.client, before.tools, 'execute', { project_id: 'old', sql: 'CREATE TABLE t (x int)' })).isError).toBe(false);
      await before.close();
      mcp = await connectInProcess({ databaseUrl: url, workspacesPerDatabase: 2 });
      for (const id of ['a', 'b', 'c', 'd', 'e']) {
        const made = await call('ensure_workspace', { project_id: id });
        expect(made.isError, made.text).toBe(false);
      }
    }, 240_000);
    afterAll(async () => mcp?.close());

    it('land in three member databases, placed in the home database; the older one stays home', async (ctx) => {
      if (!cluster || !mcp) return ctx.skip();
      expect(await placements(cluster, 'spread')).toEqual([
        { project_id: 'a', database_name: 'spread_w1' },
        { project_id: 'b', database_name: 'spread_w1' },
        { project_id: 'c', database_name: 'spread_w2' },
        { project_id: 'd', database_name: 'spread_w2' },
        { project_id: 'e', database_name: 'spread_w3' },
      ]);
      for (const [database, ids] of [['spread', ['old']], ['spread_w1', ['a', 'b']], ['spread_w3', ['e']]] as const) {
        const rows = await rowsIn(cluster, database, 'SELECT project_id FROM project_registry.workspace_config ORDER BY 1');
        expect(rows.map((r) => r['project_id']), database).toEqual(ids);
      }
      const old = await call('query', { project_id: 'old', sql: 'SELECT count(*)::int AS n FROM t' });
      expect(old.data['rows']).toEqual([[0]]);
    });

    it('serve every tool on a workspace in a member database', async (ctx) => {
      if (!cluster || !mcp) return ctx.skip();
      const ok = async (name: string, args: Record<string, unknown>) => {
        const r = await call(name, args);
        expect(r.isError, `${name}: ${r.text}`).toBe(false);
        return r.data;
      };
      await ok('execute', { project_id: 'e', sql: 'CREATE TABLE notes (id int PRIMARY KEY, body text)' });
      await ok('execute', { project_id: 'e', sql: 'INSERT INTO notes VALUES (1, $1)', params: ['first'] });
      expect((await ok('query', { project_id: 'e', sql: 'SELECT body FROM notes' }))['rows']).toEqual([['first']]);
      // The table is in the member database, not the home one.
      expect(await rowsIn(cluster, 'spread_w3', "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'project_e' AND tablename = 'notes'")).toEqual([{ n: 1 }]);
      const described = (await ok('describe_workspace', { project_id: 'e' }))['tables'] as { name: string }[];
      expect(described.map((t) => t.name)).toContain('notes');
      expect((await ok('validate_columns', { project_id: 'e', table: 'notes', columns: ['id', 'nope'] }))['missing']).toEqual(['nope']);
      expect((await ok('workspace_status', { project_id: 'e' }))['workspace']).toMatchObject({ up_to_date: true });
      await ok('add_documents', { project_id: 'e', documents: [{ source: 'guide.md', text: 'Back up the database with pg_dump.' }] });
      const found = await ok('search', { project_id: 'e', query: 'pg_dump' });
      expect((found['results'] as { content: string }[])[0]?.content).toContain('pg_dump');

      const snap = await ok('snapshot_workspace', { project_id: 'e', label: 'one row' });
      await ok('execute', { project_id: 'e', sql: 'DELETE FROM notes' });
      expect(((await ok('list_snapshots', { project_id: 'e' }))['snapshots'] as unknown[]).length).toBe(1);
      await ok('restore_workspace', { project_id: 'e', snapshot: snap['snapshot'], confirm: 'e' });
      expect((await ok('query', { project_id: 'e', sql: 'SELECT count(*)::int AS n FROM notes' }))['rows']).toEqual([[1]]);

      // A fork is made beside its source.
      await ok('fork_workspace', { from: 'e', to: 'e-copy' });
      expect((await ok('query', { project_id: 'e-copy', sql: 'SELECT body FROM notes' }))['rows']).toEqual([['first']]);
      expect((await placements(cluster, 'spread')).find((p) => p['project_id'] === 'e-copy')).toEqual({ project_id: 'e-copy', database_name: 'spread_w3' });

      // Inside a member database, PostgreSQL still keeps a workspace to its own: not its
      // neighbour's schema there, not the member's registry, not the home database's registry.
      for (const [sql, refusal] of [
        ['SELECT body FROM project_e.notes', /permission denied for schema project_e/],
        ['SELECT count(*) FROM project_registry.workspace_config', /permission denied for schema project_registry/],
        ['SELECT count(*) FROM spread.project_registry.workspace_placements', /cross-database references are not implemented/],
      ] as const) {
        const refused = await call('query', { project_id: 'e-copy', sql });
        expect(refused.isError, sql).toBe(true);
        expect(refused.text).toMatch(refusal);
      }

      // Dropped, and made again: back in the database that holds its role's history.
      await ok('drop_workspace', { project_id: 'e', confirm: 'e' });
      expect(await rowsIn(cluster, 'spread_w3', "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'project_e'")).toEqual([{ n: 0 }]);
      await ok('ensure_workspace', { project_id: 'e' });
      expect(await rowsIn(cluster, 'spread_w3', "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'project_e'")).toEqual([{ n: 1 }]);
      expect((await placements(cluster, 'spread')).filter((p) => p['database_name'] === 'spread_w3').length).toBe(2);
    });

    it('list_workspaces and the fleet\'s workspace_status cover every database', async (ctx) => {
      if (!cluster || !mcp) return ctx.skip();
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await call('list_workspaces', { limit: 2, ...(cursor ? { cursor } : {}) });
        expect(page.isError, page.text).toBe(false);
        seen.push(...(page.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id));
        cursor = (page.data['next_cursor'] as string | null) ?? undefined;
      } while (cursor);
      // What each database's registry holds, read there: the same whether the tests before this
      // one ran (they fork 'e' to 'e-copy') or not.
      const held: string[] = [];
      for (const database of ['spread', 'spread_w1', 'spread_w2', 'spread_w3']) {
        const rows = await rowsIn(cluster, database, 'SELECT project_id FROM project_registry.workspace_config');
        expect(rows.length, database).toBeGreaterThan(0);
        held.push(...rows.map((r) => String(r['project_id'])));
      }
      expect(seen).toEqual(held.sort());
      const status = await call('workspace_status', {});
      expect(status.data['fleet']).toMatchObject({ workspaces: held.length, up_to_date: held.length, lagging: 0 });
    });

    it('doctor and migrate-workspaces cover every member database', async (ctx) => {
      if (!cluster || !mcp) return ctx.skip();
      const env = { DATABASE_URL: url };
      const healthy = await runCli(['doctor', '--json'], env);
      expect(healthy.code, healthy.stderr).toBe(0);
      const report = JSON.parse(healthy.stdout) as { member_databases: { name: string; report: { healthy: boolean } }[] };
      expect(report.member_databases.map((m) => m.name)).toEqual(['spread_w1', 'spread_w2', 'spread_w3']);
      // A registry row whose schema is gone, in a member database: doctor finds it there.
      await rowsIn(cluster, 'spread_w2', 'DROP SCHEMA project_d CASCADE');
      const finding = await runCli(['doctor'], env);
      expect(finding.code).toBe(1);
      expect(finding.stdout).toMatch(/Member database spread_w2:[\s\S]*project_d/);
      const migrated = await runCli(['migrate-workspaces'], env);
      expect(migrated.code, migrated.stderr).toBe(0);
      expect(migrated.stdout.match(/^Database /gm)?.length).toBe(4);
      // A workspace schema of a member database that lost its registry row and its placement
      // (restored from a backup): adopted there, and placed there, where calls then find it.
      await rowsIn(cluster, 'spread_w1', "DELETE FROM project_registry.workspace_config WHERE project_id = 'b'");
      await rowsIn(cluster, 'spread', "DELETE FROM project_registry.workspace_placements WHERE project_id = 'b'");
      const adopted = await runCli(['repair', '--adopt-orphans', '--json'], env);
      expect(adopted.code, adopted.stdout + adopted.stderr).toBe(0);
      expect((await placements(cluster, 'spread')).find((p) => p['project_id'] === 'b')).toEqual({ project_id: 'b', database_name: 'spread_w1' });
    }, 120_000);

    it('after a rename or a drop by a command, the running server makes an id again where any other server would', async (ctx) => {
      if (!cluster || !mcp) return ctx.skip();
      const env = { DATABASE_URL: url };
      const schemaIn = async (database: string, schema: string) =>
        (await rowsIn(cluster!, database, 'SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1', [schema]))[0]?.['n'];
      // The running server knows both ids: 'a' in spread_w1, 'old' in the home database.
      for (const id of ['a', 'old']) expect((await call('query', { project_id: id, sql: 'SELECT 1' })).isError).toBe(false);

      const renamed = await runCli(['rename-workspace', 'a', 'a-renamed'], env);
      expect(renamed.code, renamed.stdout + renamed.stderr).toBe(0);
      expect((await call('query', { project_id: 'a-renamed', sql: 'SELECT 1' })).isError).toBe(false);
      // The old id keeps its database: made again by the server that had it cached, it is where
      // its placement says, which is where a server without the cache would make it.
      expect((await call('ensure_workspace', { project_id: 'a' })).isError).toBe(false);
      const placed = Object.fromEntries((await placements(cluster, 'spread')).map((p) => [p['project_id'], p['database_name']]));
      expect([placed['a'], placed['a-renamed']]).toEqual(['spread_w1', 'spread_w1']);
      expect(await schemaIn('spread_w1', 'project_a')).toBe(1);

      // A workspace of the home database dropped by the command: the server made it again in the
      // member database it placed it in, as any other server would, not in the home database.
      const dropped = await runCli(['drop-workspace', 'old'], env);
      expect(dropped.code, dropped.stdout + dropped.stderr).toBe(0);
      expect((await call('ensure_workspace', { project_id: 'old' })).isError).toBe(false);
      const home = (await placements(cluster, 'spread')).find((p) => p['project_id'] === 'old');
      expect(home?.['database_name']).toMatch(/^spread_w\d+$/);
      expect(await schemaIn('spread', 'project_old')).toBe(0);
      expect(await schemaIn(String(home?.['database_name']), 'project_old')).toBe(1);
    }, 120_000);
  });

  it('places an unknown id only for a call that makes its workspace; others answer as before and count nothing', async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'unknown');
    const dir = await tempDir('pgw-unknown-');
    await writeFile(path.join(dir, 'notes.md'), 'a note');
    const { mcp, call } = await spreadingServer(url, { allowedRoots: [dir] });
    const id = (tool: ToolName) => `u-${tool.replaceAll('_', '-')}`;
    const missing = /does not exist/;
    // Every tool on an id nothing knows: what it is called with, and what it answers (a tool that
    // makes the workspace: true). Keyed by ToolName, so a new tool must say which it is.
    const unknown: Record<ToolName, [Record<string, unknown>, true | RegExp | Record<string, unknown>]> = {
      ensure_workspace: [{}, true],
      list_workspaces: [{}, { workspaces: [] }],
      validate_columns: [{ table: 't', columns: ['x'] }, missing],
      workspace_status: [{}, missing],
      describe_workspace: [{}, missing],
      search: [{ query: 'note' }, missing],
      add_documents: [{ documents: [{ source: 'a.md', text: 'a note' }] }, true],
      index_directory: [{ path: dir }, true],
      index_status: [{}, missing],
      search_vectors: [{ table: 'chunks', column: 'embedding', vector: Array.from({ length: 768 }, () => 0.1) }, missing],
      query: [{ sql: 'SELECT 1' }, true],
      execute: [{ sql: 'CREATE TABLE t (x int)' }, true],
      drop_workspace: [{ confirm: id('drop_workspace') }, { dropped: false }],
      snapshot_workspace: [{}, missing],
      list_snapshots: [{}, { snapshots: [] }],
      restore_workspace: [{ snapshot: 1, confirm: id('restore_workspace') }, missing],
      drop_snapshot: [{ snapshot: 1 }, { dropped: false }],
      fork_workspace: [{ from: id('fork_workspace'), to: `${id('fork_workspace')}-to` }, missing],
    };
    try {
      const made: string[] = [];
      for (const name of TOOL_NAMES) {
        const [args, answer] = unknown[name];
        const scoped = name === 'fork_workspace' ? args : name === 'list_workspaces' ? { prefix: id(name) } : { project_id: id(name), ...args };
        const result = await call(name, scoped);
        if (answer === true) {
          expect(result.isError, `${name}: ${result.text}`).toBe(false);
          made.push(id(name));
        } else if (answer instanceof RegExp) {
          expect(result.isError, name).toBe(true);
          expect(result.text, name).toMatch(answer);
        } else {
          expect(result.isError, `${name}: ${result.text}`).toBe(false);
          expect(result.data, name).toMatchObject(answer);
        }
      }
      // index_directory made its workspace in the background: its run is over.
      await expect.poll(async () => (await call('index_status', { project_id: id('index_directory') })).data['runs'], { timeout: 30_000 }).toMatchObject([{ state: 'done' }]);
      made.sort();
      expect((await placements(cluster, 'unknown')).map((p) => p['project_id'])).toEqual(made);
      const [counted] = await rowsIn(cluster, 'unknown', 'SELECT coalesce(sum(workspaces), 0)::int AS n FROM project_registry.workspace_databases');
      expect(counted?.['n']).toBe(made.length);
      const listed = await call('list_workspaces', { prefix: 'u-' });
      expect((listed.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id)).toEqual(made);
      expect(await rowsIn(cluster, 'unknown', 'SELECT project_id FROM project_registry.workspace_config')).toEqual([]);
    } finally {
      await mcp.close();
    }
  }, 120_000);

  it('a creating call places no id that no workspace can have; one that fails on its way keeps its placement, which the next creation uses', async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'failing');
    const { mcp, call } = await spreadingServer(url);
    const counted = async () =>
      (await rowsIn(cluster!, 'failing', 'SELECT coalesce(sum(workspaces), 0)::int AS n FROM project_registry.workspace_databases'))[0]?.['n'];
    try {
      // Reserved ids (the server's own schemas): refused, and placed nowhere (watched fail: both placed).
      for (const id of ['registry', 'registry-notes']) {
        const refused = await call('ensure_workspace', { project_id: id });
        expect(refused.isError, id).toBe(true);
        expect(refused.text, id).toMatch(/reserved/);
      }
      const forked = await call('fork_workspace', { from: 'nothing-yet', to: 'registry-copy' });
      expect(forked.isError).toBe(true);
      expect(await placements(cluster, 'failing')).toEqual([]);
      // A statement that does not parse fails after its id was placed, before its workspace is made:
      // the placement stays (member-databases.ts says why), and the id's next creation lands there.
      const typo = await call('execute', { project_id: 'typo', sql: 'CREATE TABLEE t (x int)' });
      expect(typo.isError).toBe(true);
      expect(await placements(cluster, 'failing')).toEqual([{ project_id: 'typo', database_name: 'failing_w1' }]);
      expect(await counted()).toBe(1);
      // By another server too, which has not seen it.
      const other = await spreadingServer(url);
      try {
        const made = await other.call('execute', { project_id: 'typo', sql: 'CREATE TABLE t (x int)' });
        expect(made.isError, made.text).toBe(false);
      } finally {
        await other.mcp.close();
      }
      expect(await rowsIn(cluster, 'failing_w1', 'SELECT project_id FROM project_registry.workspace_config')).toEqual([{ project_id: 'typo' }]);
      expect(await placements(cluster, 'failing')).toEqual([{ project_id: 'typo', database_name: 'failing_w1' }]);
      expect(await counted()).toBe(1);
    } finally {
      await mcp.close();
    }
  }, 120_000);

  it("refuses a fork to an id placed in another database with a message true of a failed creation's placement and of a workspace there", async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'refusing');
    const { mcp, call } = await spreadingServer(url);
    try {
      // 'never' is placed in refusing_w1 by a creation that failed: no workspace was ever there.
      expect((await call('execute', { project_id: 'never', sql: 'CREATE TABLEE t (x int)' })).isError).toBe(true);
      for (const id of ['beside', 'source']) expect((await call('ensure_workspace', { project_id: id })).isError).toBe(false);
      expect(await placements(cluster, 'refusing')).toEqual([
        { project_id: 'beside', database_name: 'refusing_w1' },
        { project_id: 'never', database_name: 'refusing_w1' },
        { project_id: 'source', database_name: 'refusing_w2' },
      ]);
      for (const to of ['never', 'beside']) {
        const refused = await call('fork_workspace', { from: 'source', to });
        expect(refused.isError, to).toBe(true);
        // Watched fail: "(it had a workspace there)", untrue of 'never'.
        expect(refused.text, to).not.toMatch(/had a workspace/);
        expect(refused.text, to).toMatch(new RegExp(`"${to}" is placed in the database "refusing_w1" .*a call making it failed.*Fork to another id`));
      }
    } finally {
      await mcp.close();
    }
  }, 120_000);

  it('list_workspaces pages as it did over every database, and reads only the databases that hold its ids', async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'paging');
    // Workspaces of the home database, made before the setting, among the spread ones.
    const before = await connectInProcess({ databaseUrl: url });
    try {
      for (const id of ['h-1', 'p-home', 'z-old']) expect((await callTool(before.client, before.tools, 'ensure_workspace', { project_id: id })).isError).toBe(false);
    } finally {
      await before.close();
    }
    const maker = await spreadingServer(url);
    try {
      // Two ids to a database: 'p-bad' is placed by a creation that fails, 'p-c' is dropped after.
      for (const id of ['p-a', 'p-bad', 'p-b', 'p-c', 'p-d', 'q-a', 'q-b', 'r-a']) {
        const made = await maker.call('execute', { project_id: id, sql: id === 'p-bad' ? 'CREATE TABLEE t (x int)' : 'CREATE TABLE t (x int)' });
        expect(made.isError, id).toBe(id === 'p-bad');
      }
      expect((await maker.call('drop_workspace', { project_id: 'p-c', confirm: 'p-c' })).isError).toBe(false);
    } finally {
      await maker.mcp.close();
    }
    const databases = ['paging', 'paging_w1', 'paging_w2', 'paging_w3', 'paging_w4'];
    expect(Object.fromEntries((await placements(cluster, 'paging')).map((p) => [p['project_id'], p['database_name']]))).toEqual({
      'p-a': 'paging_w1', 'p-bad': 'paging_w1', 'p-b': 'paging_w2', 'p-c': 'paging_w2', 'p-d': 'paging_w3', 'q-a': 'paging_w3', 'q-b': 'paging_w4', 'r-a': 'paging_w4',
    });
    const all: string[] = [];
    for (const database of databases) {
      all.push(...(await rowsIn(cluster, database, 'SELECT project_id FROM project_registry.workspace_config')).map((r) => String(r['project_id'])));
    }
    all.sort();
    expect(all).toEqual(['h-1', 'p-a', 'p-b', 'p-d', 'p-home', 'q-a', 'q-b', 'r-a', 'z-old']);

    // The pages a list over every database gave: full pages of the ids in order, a cursor exactly
    // when more follow; with an allowlist, the allowed ones only.
    const pagesOf = async (list: (args: Record<string, unknown>) => Promise<{ isError: boolean; text: string; data: Record<string, unknown> }>, prefix: string, limit: number) => {
      const pages: string[][] = [];
      let cursor: string | undefined;
      do {
        const page = await list({ prefix, limit, ...(cursor ? { cursor } : {}) });
        expect(page.isError, page.text).toBe(false);
        pages.push((page.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id));
        cursor = (page.data['next_cursor'] as string | null) ?? undefined;
      } while (cursor);
      return pages;
    };
    const expectedPages = (ids: string[], limit: number) => {
      const pages: string[][] = [];
      for (let i = 0; i < ids.length; i += limit) pages.push(ids.slice(i, i + limit));
      return pages.length > 0 ? pages : [[]];
    };
    const allowed = ['p-a', 'p-bad', 'p-c', 'q-b', 'z-old', 'nowhere'];
    const { mcp, call } = await spreadingServer(url);
    const restricted = await spreadingServer(url, { allowedProjects: allowed });
    try {
      for (const prefix of ['', 'p', 'p-', 'p-b', 'q-', 'r-a', 'x']) {
        for (const limit of [1, 2, 3, 500]) {
          const ids = all.filter((id) => id.startsWith(prefix));
          expect(await pagesOf((args) => call('list_workspaces', args), prefix, limit), `${prefix} ${limit}`).toEqual(expectedPages(ids, limit));
          expect(await pagesOf((args) => restricted.call('list_workspaces', args), prefix, limit), `allowed ${prefix} ${limit}`).toEqual(
            expectedPages(ids.filter((id) => allowed.includes(id)), limit),
          );
        }
      }
    } finally {
      await restricted.mcp.close();
      await mcp.close();
    }

    // A server new to every database: a page reads the databases of its ids, one past the page,
    // and of the placements without a workspace among them, no other. Each other database's
    // registry is locked by the test: a read there would wait (watched fail: every page read all).
    const reader = await spreadingServer(url);
    const lockedIn = async (names: string[]) => {
      const clients = await Promise.all(
        names.map(async (name) => {
          const client = new pg.Client({ connectionString: cluster!.url(name) });
          await client.connect();
          await client.query('BEGIN');
          await client.query('LOCK TABLE project_registry.workspace_config IN ACCESS EXCLUSIVE MODE');
          return client;
        }),
      );
      return async () => {
        for (const client of clients) await client.query('COMMIT').finally(() => client.end());
      };
    };
    const waitingIn = async (names: string[]) =>
      Number((await cluster!.sql('SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND database IN (SELECT oid FROM pg_database WHERE datname = ANY ($1))', [names]))[0]?.['n']);
    try {
      const cursorAfter = (id: string) => Buffer.from(id).toString('base64url');
      for (const [args, ids, untouched] of [
        // p-a (w1), p-b (w2): the page and the one past it.
        [{ prefix: 'p-', limit: 1 }, ['p-a'], ['paging_w3', 'paging_w4']],
        // After p-b: p-bad (w1) and p-c (w2) are placements without a workspace, so it reads on: p-d (w3), p-home (home).
        [{ prefix: 'p-', limit: 1, cursor: cursorAfter('p-b') }, ['p-d'], ['paging_w4']],
        // Only home ids: no member database at all.
        [{ prefix: 'h-' }, ['h-1'], ['paging_w1', 'paging_w2', 'paging_w3', 'paging_w4']],
        [{ prefix: 'q-', limit: 2 }, ['q-a', 'q-b'], ['paging_w1', 'paging_w2']],
      ] as const) {
        const release = await lockedIn([...untouched]);
        let waited = false;
        let settled = false;
        const listing = reader.call('list_workspaces', args).finally(() => (settled = true));
        try {
          while (!settled && !waited) {
            waited = (await waitingIn([...untouched])) > 0;
            await new Promise((r) => setTimeout(r, 20));
          }
        } finally {
          await release();
        }
        const listed = await listing;
        expect(waited, `${JSON.stringify(args)} read one of ${untouched.join(', ')}`).toBe(false);
        expect((listed.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id), JSON.stringify(args)).toEqual(ids);
      }
    } finally {
      await reader.mcp.close();
    }
  }, 240_000);

  it('list_workspaces and the fleet status read every database, a few at a time, and make none: a member database dropped under the servers stays gone', async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'many');
    const maker = await connectInProcess({ databaseUrl: url, workspacesPerDatabase: 1 });
    try {
      for (let i = 0; i < 8; i++) expect((await callTool(maker.client, maker.tools, 'ensure_workspace', { project_id: `m-${i}` })).isError).toBe(false);
    } finally {
      await maker.close();
    }
    // An operator drops one: its workspace went with it. A read must not make it again.
    await cluster.sql('DROP DATABASE many_w8 WITH (FORCE)');
    // Each other member database's install check waits here for a lock held by the test: the
    // databases a server reads at once are the checks waiting at once.
    const holders = await Promise.all(
      Array.from({ length: 7 }, async (_, i) => {
        const client = new pg.Client({ connectionString: cluster!.url(`many_w${i + 1}`) });
        await client.connect();
        await client.query('BEGIN');
        await client.query('LOCK TABLE project_registry.install_state IN ACCESS EXCLUSIVE MODE');
        return client;
      }),
    );
    const { mcp, call } = await spreadingServer(url);
    try {
      const waiting = async () =>
        Number((await cluster!.sql(`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation IS NOT NULL AND database IN (SELECT oid FROM pg_database WHERE datname LIKE 'many\\_w%')`))[0]?.['n']);
      const listing = call('list_workspaces', { limit: 100 });
      await expect.poll(waiting, { timeout: 30_000 }).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 1000));
      const atOnce = await waiting();
      for (const client of holders) await client.query('COMMIT');
      // A few at a time (watched fail: all seven at once).
      expect(atOnce).toBeLessThanOrEqual(4);
      const listed = await listing;
      expect(listed.isError, listed.text).toBe(false);
      expect((listed.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id)).toEqual(['m-0', 'm-1', 'm-2', 'm-3', 'm-4', 'm-5', 'm-6']);
      const status = await call('workspace_status', {});
      expect(status.data['fleet'], status.text).toMatchObject({ workspaces: 7, up_to_date: 7 });
      // Made nothing (watched fail: the list created many_w8 again).
      expect(await cluster.sql("SELECT datname FROM pg_database WHERE datname = 'many_w8'")).toEqual([]);
    } finally {
      for (const client of holders) await client.end();
      await mcp.close();
    }
  }, 180_000);

  it('a server started before any workspace was spread follows the placements once another spreads them: lists them, and makes no placed id at home', async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'rolling');
    // Two servers still run without the setting, as during a rolling restart that turns it on.
    const [listing, making] = await Promise.all([connectInProcess({ databaseUrl: url }), connectInProcess({ databaseUrl: url })]);
    const on = (server: typeof listing, name: string, args: Record<string, unknown>) => callTool(server.client, server.tools, name, args);
    try {
      for (const server of [listing, making]) expect((await on(server, 'ensure_workspace', { project_id: 'before' })).isError).toBe(false);
      const { mcp, call } = await spreadingServer(url);
      try {
        for (const id of ['placed-1', 'placed-2']) expect((await call('execute', { project_id: id, sql: 'CREATE TABLE t (x int)' })).isError).toBe(false);
      } finally {
        await mcp.close();
      }
      // Listed and counted where they are (watched fail: 'before' alone).
      const listed = await on(listing, 'list_workspaces', {});
      expect((listed.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id)).toEqual(['before', 'placed-1', 'placed-2']);
      expect((await on(listing, 'workspace_status', {})).data['fleet']).toMatchObject({ workspaces: 3, up_to_date: 3 });
      // A creating call on a placed id is not made at home (watched fail: a second placed-1 there):
      // it says to retry, and the retry runs where the id is placed.
      const first = await on(making, 'execute', { project_id: 'placed-1', sql: 'INSERT INTO t VALUES (1)' });
      expect(first.isError).toBe(true);
      expect(first.text).toMatch(/"placed-1"[\s\S]*another database[\s\S]*retry/);
      const retried = await on(making, 'execute', { project_id: 'placed-1', sql: 'INSERT INTO t VALUES (1)' });
      expect(retried.isError, retried.text).toBe(false);
      expect(await rowsIn(cluster, 'rolling', 'SELECT project_id FROM project_registry.workspace_config ORDER BY 1')).toEqual([{ project_id: 'before' }]);
      expect(await rowsIn(cluster, 'rolling_w1', 'SELECT count(*)::int AS n FROM project_placed_1.t')).toEqual([{ n: 1 }]);
    } finally {
      await Promise.all([listing.close(), making.close()]);
    }
  }, 120_000);

  it('makes a member database dropped under the running server again on the next call, as it does a vanished registry', async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'gone');
    const { mcp, call } = await spreadingServer(url);
    try {
      for (const id of ['g1', 'g2']) expect((await call('execute', { project_id: id, sql: 'CREATE TABLE t (x int)' })).isError).toBe(false);
      // An operator drops the member database under the server (its connections closed with it).
      await cluster.sql('DROP DATABASE gone_w1 WITH (FORCE)');
      // doctor names it (it ran on, the other databases reported), and what a server will do.
      const doctor = async () => {
        const run = await runCli(['doctor', '--json'], { DATABASE_URL: url });
        return { code: run.code, findings: (JSON.parse(run.stdout) as { findings: { code: string; details: unknown }[] }).findings.filter((f) => f.code === 'member-database-gone') };
      };
      expect(await doctor()).toEqual({ code: 1, findings: [expect.objectContaining({ details: { database: 'gone_w1', placed: 2 } })] });
      const failed = await call('query', { project_id: 'g1', sql: 'SELECT count(*) FROM t' });
      expect(failed.isError).toBe(true);
      expect(failed.text).toMatch(/"gone_w1"[\s\S]*gone[\s\S]*retry/);
      // The retry finds it made again, installed, and the workspace new and empty where its placement says.
      const made = await call('ensure_workspace', { project_id: 'g1' });
      expect(made.isError, made.text).toBe(false);
      expect(made.data['created']).toBe(true);
      expect((await call('query', { project_id: 'g2', sql: 'SELECT count(*)::int FROM pg_tables WHERE tablename = $1', params: ['t'] })).data['rows']).toEqual([[0]]);
      expect(await rowsIn(cluster, 'gone_w1', 'SELECT project_id FROM project_registry.workspace_config ORDER BY 1')).toEqual([{ project_id: 'g1' }, { project_id: 'g2' }]);
      expect((await placements(cluster, 'gone')).map((p) => p['database_name'])).toEqual(['gone_w1', 'gone_w1']);
      expect(await doctor()).toEqual({ code: 0, findings: [] });
    } finally {
      await mcp.close();
    }
  }, 120_000);

  it("installs again a registry dropped in a member database on the next call there, as it does the home database's", async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'lostreg');
    const { mcp, call } = await spreadingServer(url);
    try {
      expect((await call('execute', { project_id: 'r1', sql: "CREATE TABLE notes AS SELECT 'kept' AS body" })).isError).toBe(false);
      // An agent's query naming a registry table that never was is its own error, nothing more.
      const typo = await call('query', { project_id: 'r1', sql: 'SELECT * FROM project_registry.no_such_table' });
      expect(typo.isError).toBe(true);
      expect(typo.text).not.toMatch(/installing it again/);
      // An operator drops the registry in the member database (not the home one) under the running server.
      await rowsIn(cluster, 'lostreg_w1', 'DROP SCHEMA project_registry CASCADE');
      const failed = await call('ensure_workspace', { project_id: 'r2' });
      expect(failed.isError).toBe(true);
      expect(failed.text).toMatch(/registry \(schema project_registry\) is gone from the database "lostreg_w1"[\s\S]*installing it again now: retry the call/);
      // Retried, as the message says: installed there again, and the workspaces placed there work.
      const made = await call('ensure_workspace', { project_id: 'r2' });
      expect(made.isError, made.text).toBe(false);
      expect(made.data).toMatchObject({ created: true });
      const kept = await call('query', { project_id: 'r1', sql: 'SELECT body FROM notes' });
      expect(kept.isError, kept.text).toBe(false);
      expect(kept.data['rows']).toEqual([['kept']]);
      expect(await rowsIn(cluster, 'lostreg_w1', 'SELECT project_id FROM project_registry.workspace_config ORDER BY 1')).toEqual([{ project_id: 'r1' }, { project_id: 'r2' }]);
      expect((await placements(cluster, 'lostreg')).map((p) => p['database_name'])).toEqual(['lostreg_w1', 'lostreg_w1']);
    } finally {
      await mcp.close();
    }
  }, 120_000);

  it('doctor suggests spreading a crowded home database until servers spread it', async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'crowded');
    const engine = new ProvisioningEngine({ databaseUrl: url, dataDir: '/nonexistent', extensionDirs: [], disabledExtensions: [], lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS }, silentLogger);
    const advice = async () => {
      const doctor = await runCli(['doctor', '--json'], { DATABASE_URL: url });
      expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0);
      return (JSON.parse(doctor.stdout) as { findings: { code: string; severity: string; details: unknown }[] }).findings.filter((f) => f.code === 'many-workspaces');
    };
    try {
      const { workspaces } = await engine.ready(60_000);
      let next = 0;
      const make = (count: number) =>
        Promise.all(Array.from({ length: 4 }, async () => {
          while (next < count) await workspaces.ensure(`w-${next++}`);
        }));
      await make(CROWDED_DATABASE_WORKSPACES - 1);
      expect(await advice()).toEqual([]);
      await make(CROWDED_DATABASE_WORKSPACES);
      expect(await advice()).toEqual([{ code: 'many-workspaces', severity: 'info', details: { workspaces: CROWDED_DATABASE_WORKSPACES }, message: expect.any(String), fix: expect.stringMatching(/--workspaces-per-database 50/) }]);
    } finally {
      await engine.close();
    }
    // Once a server spreads its new workspaces, the home database no longer grows: no advice.
    const spreading = await connectInProcess({ databaseUrl: url, workspacesPerDatabase: 50 });
    try {
      expect((await callTool(spreading.client, spreading.tools, 'ensure_workspace', { project_id: 'spread-1' })).isError).toBe(false);
    } finally {
      await spreading.close();
    }
    expect(await advice()).toEqual([]);
  }, 180_000);

  it('two servers placing the first workspaces at once make one member database and both succeed', async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'race');
    const engines = [0, 1].map(() => new ProvisioningEngine({ databaseUrl: url, dataDir: '/nonexistent', extensionDirs: [], disabledExtensions: [], lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS, workspacesPerDatabase: 2 }, silentLogger));
    try {
      // Both installed first, so that the placements and the member database race, not the install.
      // Without the placement lock both name race_w1 and one fails on workspace_databases' key (watched: 6 runs of 6).
      await Promise.all(engines.map((e) => e.ready(60_000)));
      await Promise.all(engines.map(async (e, i) => (await e.readyFor(`racer-${i}`, 'create', 60_000)).sandbox.execute(`racer-${i}`, 'CREATE TABLE t (x int)', [])));
      expect(await rowsIn(cluster, 'postgres', "SELECT datname FROM pg_database WHERE datname LIKE 'race\\_w%' ORDER BY 1")).toEqual([{ datname: 'race_w1' }]);
      expect((await placements(cluster, 'race')).map((p) => p['database_name'])).toEqual(['race_w1', 'race_w1']);
    } finally {
      for (const e of engines) await e.close();
    }
  }, 120_000);

  it('an id is made in one database only when a server not spreading creates it while another places it (issue 24 race)', async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'twice');
    const engine = (workspacesPerDatabase?: number) =>
      new ProvisioningEngine({ databaseUrl: url, dataDir: '/nonexistent', extensionDirs: [], disabledExtensions: [], lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS, workspacesPerDatabase }, silentLogger);
    const [atHome, spreading] = [engine(), engine(2)];
    const holder = new pg.Client({ connectionString: cluster.url('twice') });
    await holder.connect();
    // A table each: the two calls may run at once in one workspace (CREATE TABLE IF NOT EXISTS races).
    const create = (e: ProvisioningEngine, id: string) =>
      e.readyFor(id, 'create', 60_000).then((s) => s.sandbox.execute(id, `CREATE TABLE ${e === atHome ? 'mine' : 'theirs'} (x int)`, []));
    // Until the session holding the id's workspace lock in the home database lets go.
    const waitingFor = async (id: string, n: number) => {
      for (;;) {
        const [{ w }] = await rowsIn(cluster!, 'twice', `SELECT count(*)::int AS w FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = hashtext($1)::oid`, [id]) as [{ w: number }];
        if (w >= n) return;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const homeRows = () => rowsIn(cluster!, 'twice', "SELECT project_id FROM project_registry.workspace_config WHERE project_id LIKE 'twin%' ORDER BY 1");
    try {
      await Promise.all([atHome.ready(60_000), spreading.ready(60_000)]);
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [0x70677773, 'twin-1']);
      // The server not spreading has looked twin-1 up (no placement, no workspace) and waits in create_workspace().
      const first = create(atHome, 'twin-1');
      await waitingFor('twin-1', 1);
      // Meanwhile the spreading server places twin-1 (without the fix: in twice_w1, and makes it there at once).
      const second = create(spreading, 'twin-1');
      await Promise.race([second.catch(() => undefined), waitingFor('twin-1', 2)]);
      await holder.query('COMMIT');
      await Promise.all([first, second]);
      // One workspace: at home, where the first creator made it (watched fail: twin-1 in twice_w1 too).
      expect(await placements(cluster, 'twice')).toEqual([]);
      expect(await homeRows()).toEqual([{ project_id: 'twin-1' }]);

      // The other order: twin-2 is placed (as place() does it, under the id's lock) after the
      // server not spreading looked it up and before its create_workspace() takes the lock.
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [0x70677773, 'twin-2']);
      const late = create(atHome, 'twin-2');
      await waitingFor('twin-2', 1);
      await holder.query("INSERT INTO project_registry.workspace_databases (database_name) VALUES ('twice_w1') ON CONFLICT DO NOTHING");
      await holder.query("INSERT INTO project_registry.workspace_placements (project_id, database_name) VALUES ('twin-2', 'twice_w1')");
      await holder.query('COMMIT');
      // Refused, saying to retry (watched fail: made at home beside its placement), as the engine says for
      // a placed id it looked up (the retry following the placement is the test "a server started before...").
      await expect(late).rejects.toThrow(/"twin-2"[\s\S]*another database[\s\S]*retry/);
      expect(await homeRows()).toEqual([{ project_id: 'twin-1' }]);
    } finally {
      await holder.end();
      await Promise.all([atHome.close(), spreading.close()]);
    }
  }, 120_000);

  it("keeps a server's connections over every database to its pool size", async (ctx) => {
    if (!cluster) return ctx.skip();
    const url = await homeDatabase(cluster, 'share');
    const engine = new ProvisioningEngine(
      { databaseUrl: url, dataDir: '/nonexistent', extensionDirs: [], disabledExtensions: [], lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS, workspacesPerDatabase: 1, maxConnections: 3, connectWaitMs: 20_000 },
      silentLogger,
    );
    try {
      // Six workspaces in six databases, each served once: every database's pool would keep its connections.
      for (let i = 0; i < 6; i++) {
        const id = `pooled-${i}`;
        await (await engine.readyFor(id, 'create', 60_000)).sandbox.query(id, 'SELECT 1', []);
      }
      const [open] = await cluster.sql(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-workspace-mcp' AND datname LIKE 'share%'",
      );
      expect(open?.['n']).toBeLessThanOrEqual(3);

      // Calls in all six at once: they take turns on the three connections, as in one pool.
      let most = 0;
      let running = true;
      const watch = (async () => {
        while (running) {
          const [now] = await cluster!.sql(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-workspace-mcp' AND datname LIKE 'share%'",
          );
          most = Math.max(most, Number(now?.['n']));
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const calls = await Promise.all(
        Array.from({ length: 6 }, async (_, i) => {
          const id = `pooled-${i}`;
          return (await engine.readyFor(id, 'create', 60_000)).sandbox.query(id, 'SELECT 1 AS one FROM pg_sleep(0.3)', []);
        }),
      );
      running = false;
      await watch;
      expect(calls.map((c) => c.rows)).toEqual(Array.from({ length: 6 }, () => [[1]]));
      expect(most).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(3);
    } finally {
      await engine.close();
    }
  }, 120_000);

  it('is refused, saying what to do, without CREATEDB and on the embedded store', async (ctx) => {
    if (!cluster) return ctx.skip();
    await cluster.sql('CREATE ROLE shard_nocreate LOGIN CREATEROLE');
    const url = await homeDatabase(cluster, 'nocreate', 'shard_nocreate');
    const engine = new ProvisioningEngine({ databaseUrl: url, dataDir: '/nonexistent', extensionDirs: [], disabledExtensions: [], lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS, workspacesPerDatabase: 2 }, silentLogger);
    try {
      await expect(engine.ready(60_000)).rejects.toThrow(/ALTER ROLE "shard_nocreate" CREATEDB/);
    } finally {
      await engine.close();
    }
    expect(() => parseCommand(['--workspaces-per-database', '2'], { HOME: '/tmp' })).toThrow(ConfigError);
    expect(() => parseCommand([], { HOME: '/tmp', PG_WORKSPACE_WORKSPACES_PER_DATABASE: '2' })).toThrow(/set DATABASE_URL/);
  }, 60_000);
});
