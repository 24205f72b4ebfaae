import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import type { Database } from '../src/db/database.js';
import { sqlState } from '../src/db/sql-errors.js';
import { silentLogger } from '../src/logger.js';
import { WorkspaceSandbox } from '../src/sandbox/workspace-sandbox.js';
import { searchVectors } from '../src/workspaces/vector-search.js';
import { callTool, connectInProcess } from './support/mcp.js';
import { startPgvectorCluster, type PgCluster } from './support/pg-cluster.js';

const DIMENSIONS = 768;

/** A unit vector along `axis`, or a mix of two axes, of the codebase extension's 768 dimensions. */
function vec(weights: Record<number, number>): number[] {
  const v = new Array<number>(DIMENSIONS).fill(0);
  for (const [axis, w] of Object.entries(weights)) v[Number(axis)] = w;
  return v;
}

const toSql = (v: number[]) => `[${v.join(',')}]`;


for (const kind of ['pglite', 'postgres'] as const) {
  describe(`describe_workspace, search_vectors and validate_columns on ${kind}`, () => {
    let cluster: PgCluster | null = null;
    let mcp: Awaited<ReturnType<typeof connectInProcess>> | undefined;
    let tools: Tool[];
    let db: Database;
    const ids: Record<string, string> = {};

    beforeAll(async () => {
      if (kind === 'postgres') {
        cluster = await startPgvectorCluster('the catalog tools');
        if (!cluster) return;
      }
      mcp = await connectInProcess(cluster ? { databaseUrl: await cluster.createDatabase('catalog') } : {});
      tools = mcp.tools;
      const created = await callTool(mcp.client, tools, 'ensure_workspace', { project_id: 'docs' });
      expect(created.isError, created.text).toBe(false);
      db = (await mcp.engine.ready(60_000)).db;
      // Known geometry: the query vector is axis 0; cosine distances 0, ~0.03, 1 and 2.
      const [repo] = await db.query<{ id: string }>(
        `INSERT INTO project_docs.repositories (path, name) VALUES ('/r', 'r') RETURNING id::text`,
      );
      const files = await db.query<{ id: string; path: string }>(
        `INSERT INTO project_docs.files (repository_id, path, content_hash, size_bytes)
         VALUES ($1, 'a.ts', 'h1', 1), ($1, 'b.ts', 'h2', 1) RETURNING id::text, path`,
        [repo?.id],
      );
      for (const f of files) ids[f.path] = f.id;
      const chunks: Array<[string, string, number[] | null]> = [
        ['a.ts', 'same', vec({ 0: 1 })],
        ['b.ts', 'close', vec({ 0: 2, 1: 0.5 })],
        ['a.ts', 'orthogonal', vec({ 1: 1 })],
        ['b.ts', 'opposite', vec({ 0: -1 })],
        ['a.ts', 'no embedding', null],
      ];
      for (const [file, content, embedding] of chunks) {
        await db.query(
          `INSERT INTO project_docs.chunks (file_id, content, start_line, end_line, embedding) VALUES ($1, $2, 1, 2, $3::vector)`,
          [ids[file], content, embedding && toSql(embedding)],
        );
      }
    }, 120_000);
    afterAll(async () => {
      await mcp?.close();
      await cluster?.destroy();
    });

    const call = (ctx: TestContext, name: string, args: Record<string, unknown>) => {
      if (!mcp) return ctx.skip();
      return callTool(mcp.client, tools, name, args);
    };
    const chunkCount = async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM project_docs.chunks'))[0]?.n;

    it('lists both tools as read-only', (ctx) => {
      if (!mcp) return ctx.skip();
      const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
      expect(byName['describe_workspace']?.annotations?.readOnlyHint).toBe(true);
      expect(byName['search_vectors']?.annotations?.readOnlyHint).toBe(true);
    });

    it('describe_workspace shows the codebase tables: columns, keys, the HNSW index, row estimates', async (ctx) => {
      const all = await call(ctx, 'describe_workspace', { project_id: 'docs' });
      expect(all.isError, all.text).toBe(false);
      expect(all.data['schema_name']).toBe('project_docs');
      const tables = all.data['tables'] as Array<Record<string, unknown> & { name: string }>;
      expect(tables.map((t) => t.name)).toEqual(['chunks', 'files', 'repositories']);
      const chunks = tables[0] as Record<string, unknown>;
      expect(chunks['kind']).toBe('table');
      // Never analysed: the estimate is unknown, not 0.
      expect(chunks['row_estimate']).toBeNull();
      expect(chunks['columns']).toContainEqual({ name: 'embedding', type: expect.stringMatching(/^(public\.)?vector\(768\)$/), nullable: true, default: null, identity: null, generated: false });
      expect(chunks['columns']).toContainEqual({ name: 'id', type: 'bigint', nullable: false, default: null, identity: 'always', generated: false });
      expect(chunks['columns']).toContainEqual(
        { name: 'created_at', type: 'timestamp with time zone', nullable: false, default: 'now()', identity: null, generated: false },
      );
      expect(chunks['primary_key']).toEqual({ name: 'chunks_pkey', columns: ['id'] });
      expect(chunks['foreign_keys']).toEqual([
        {
          name: 'chunks_file_id_fkey',
          columns: ['file_id'],
          references_schema: 'project_docs',
          references_table: 'files',
          references_columns: ['id'],
          on_delete: 'cascade',
          on_update: 'no action',
        },
      ]);
      expect(chunks['other_constraints']).toEqual([
        { name: 'chunks_check', type: 'check', definition: 'CHECK ((end_line >= start_line))' },
      ]);
      const indexes = chunks['indexes'] as Array<Record<string, unknown>>;
      expect(indexes.map((i) => [i['name'], i['method'], i['unique'], i['primary']])).toEqual([
        ['chunks_content_hash_idx', 'btree', false, false],
        ['chunks_content_tsv_idx', 'gin', false, false],
        ['chunks_embedding_hnsw_idx', 'hnsw', false, false],
        ['chunks_file_id_idx', 'btree', false, false],
        ['chunks_pkey', 'btree', true, true],
      ]);
      expect(indexes[2]?.['definition']).toMatch(/USING hnsw \(embedding (\S+\.)?vector_cosine_ops\)/);
      const files = tables[1] as Record<string, unknown>;
      expect(files['other_constraints']).toEqual([
        { name: 'files_repository_id_path_key', type: 'unique', definition: 'UNIQUE (repository_id, path)' },
      ]);
      expect((files['indexes'] as Array<Record<string, unknown>>).find((i) => i['name'] === 'files_active_idx')?.['definition']).toContain(
        'WHERE (deleted_at IS NULL)',
      );

      await db.query('ANALYZE project_docs.chunks');
      const one = await call(ctx, 'describe_workspace', { project_id: 'docs', table: 'chunks' });
      expect((one.data['tables'] as unknown[]).length).toBe(1);
      expect((one.data['tables'] as Array<Record<string, unknown>>)[0]?.['row_estimate']).toBe(5);
    });

    it('describe_workspace refuses a missing table or workspace, and SQL in the table name', async (ctx) => {
      const missing = await call(ctx, 'describe_workspace', { project_id: 'docs', table: 'nope' });
      expect(missing.isError).toBe(true);
      expect(missing.text).toContain('Table "nope" does not exist in workspace "docs"');
      const noWorkspace = await call(ctx, 'describe_workspace', { project_id: 'never-made' });
      expect(noWorkspace.isError).toBe(true);
      expect(noWorkspace.text).toContain('ensure_workspace');
      for (const table of ['chunks; DROP TABLE project_docs.files', 'chunks" CASCADE; --', "chunks' OR '1'='1"]) {
        const hostile = await call(ctx, 'describe_workspace', { project_id: 'docs', table });
        expect(hostile.isError, table).toBe(true);
        expect(hostile.text).toContain('does not exist in workspace "docs"');
      }
      const still = await call(ctx, 'describe_workspace', { project_id: 'docs' });
      expect((still.data['tables'] as Array<{ name: string }>).map((t) => t.name)).toEqual(['chunks', 'files', 'repositories']);
    });

    it("search_vectors returns the nearest rows in order, by the index's cosine metric by default", async (ctx) => {
      const result = await call(ctx, 'search_vectors', { project_id: 'docs', table: 'chunks', column: 'embedding', vector: vec({ 0: 1 }) });
      expect(result.isError, result.text).toBe(false);
      expect(result.data).toMatchObject({ table: 'chunks', column: 'embedding', metric: 'cosine', metric_source: 'index', k: 10 });
      const matches = result.data['matches'] as Array<{ distance: number; row: Record<string, unknown> }>;
      expect(matches.map((m) => m.row['content'])).toEqual(['same', 'close', 'orthogonal', 'opposite']);
      const expected = [0, 1 - 2 / Math.sqrt(4.25), 1, 2];
      matches.forEach((m, i) => expect(m.distance).toBeCloseTo(expected[i] as number, 5));
      const row = matches[0]?.row as Record<string, unknown>;
      expect(Object.keys(row).sort()).toEqual(['content', 'content_hash', 'created_at', 'end_line', 'file_id', 'id', 'start_line']);
      // bigint as a string on both backends, timestamps as ISO 8601.
      expect(row['file_id']).toBe(ids['a.ts']);
      expect(row['id']).toMatch(/^\d+$/);
      expect(row['start_line']).toBe(1);
      expect(row['created_at']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    });

    it('search_vectors takes another metric, k, a filter and a column list', async (ctx) => {
      const l2 = await call(ctx, 'search_vectors', {
        project_id: 'docs', table: 'chunks', column: 'embedding', vector: vec({ 0: 1 }), metric: 'l2', k: 2,
      });
      expect(l2.data).toMatchObject({ metric: 'l2', metric_source: 'argument', k: 2 });
      const l2Matches = l2.data['matches'] as Array<{ distance: number; row: Record<string, unknown> }>;
      expect(l2Matches.map((m) => m.row['content'])).toEqual(['same', 'close']);
      expect(l2Matches.map((m) => m.distance)).toEqual([0, expect.closeTo(Math.sqrt(1.25), 5)]);

      const ip = await call(ctx, 'search_vectors', {
        project_id: 'docs', table: 'chunks', column: 'embedding', vector: vec({ 0: 1 }), metric: 'inner_product', k: 1,
      });
      expect((ip.data['matches'] as Array<{ distance: number; row: Record<string, unknown> }>)[0]).toMatchObject({
        distance: -2, row: { content: 'close' },
      });

      const filtered = await call(ctx, 'search_vectors', {
        project_id: 'docs', table: 'chunks', column: 'embedding', vector: vec({ 0: 1 }),
        filter: { file_id: ids['b.ts'] }, columns: ['content', 'embedding'],
      });
      expect(filtered.isError, filtered.text).toBe(false);
      const rows = (filtered.data['matches'] as Array<{ row: Record<string, unknown> }>).map((m) => m.row);
      expect(rows.map((r) => r['content'])).toEqual(['close', 'opposite']);
      expect(rows[0]?.['embedding']).toEqual(vec({ 0: 2, 1: 0.5 }));
      expect(Object.keys(rows[0] ?? {})).toEqual(['content', 'embedding']);

      const none = await call(ctx, 'search_vectors', {
        project_id: 'docs', table: 'chunks', column: 'embedding', vector: vec({ 0: 1 }), filter: { file_id: ids['a.ts'], content: 'nothing like this' },
      });
      expect(none.data['matches']).toEqual([]);
    });

    it('search_vectors refuses bad names, dimensions and SQL in identifiers, changing nothing', async (ctx) => {
      if (!mcp) return ctx.skip();
      const before = await chunkCount();
      const base = { project_id: 'docs', table: 'chunks', column: 'embedding', vector: vec({ 0: 1 }) };
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ ...base, project_id: 'never-made' }, 'ensure_workspace'],
        [{ ...base, table: 'nope' }, 'Table "nope" does not exist in workspace "docs"'],
        [{ ...base, table: 'chunks; DROP TABLE project_docs.files; --' }, 'does not exist in workspace "docs"'],
        [{ ...base, column: 'nope' }, 'column "nope" is not a column of chunks'],
        [{ ...base, column: 'content' }, 'Column chunks.content is text, not a pgvector vector or halfvec column; this table\'s vector columns: embedding'],
        [{ ...base, column: 'embedding" IS NULL; DROP TABLE project_docs.files; --' }, 'is not a column of chunks'],
        [{ ...base, vector: [1, 0, 0] }, 'the vector must have 768 dimensions, got 3'],
        [{ ...base, filter: { nope: 1 } }, 'filter column "nope" is not a column of chunks'],
        [{ ...base, filter: { 'id" = 1 OR true; --': 1 } }, 'is not a column of chunks'],
        [{ ...base, columns: ['content', 'secret'] }, 'column "secret" is not a column of chunks'],
        [{ ...base, table: 'workspace_config' }, 'does not exist in workspace "docs"'],
        [{ ...base, k: 0 }, 'k'],
        [{ ...base, k: 101 }, 'k'],
      ];
      for (const [args, message] of cases) {
        const result = await call(ctx, 'search_vectors', args);
        expect(result.isError, JSON.stringify(args).slice(0, 120)).toBe(true);
        expect(result.text).toContain(message);
      }
      expect(await chunkCount()).toBe(before);
      const [files] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM project_docs.files');
      expect(files?.n).toBe(2);
      // Still serving.
      const ok = await call(ctx, 'search_vectors', { ...base, k: 1 });
      expect((ok.data['matches'] as unknown[]).length).toBe(1);
    });

    it('search_vectors reads halfvec and unindexed columns, and PostgreSQL keeps it read-only', async (ctx) => {
      if (!mcp) return ctx.skip();
      // Made by the agent, as it would: the search reads them as the workspace's role.
      for (const sql of [
        'CREATE TABLE notes (id bigint PRIMARY KEY, label text, v halfvec(3), seen timestamptz)',
        "INSERT INTO notes VALUES (1, 'x', '[1,0,0]', '2026-01-02T03:04:05.678Z'), (2, 'y', '[0,1,0]', NULL)",
        'CREATE TABLE written (n int)',
        "CREATE FUNCTION writes() RETURNS vector LANGUAGE plpgsql AS $$ BEGIN INSERT INTO project_docs.written VALUES (1); RETURN '[1,0,0]'; END $$",
        'CREATE VIEW writing_view AS SELECT id, writes() AS v FROM notes',
      ]) {
        const done = await call(ctx, 'execute', { project_id: 'docs', sql });
        expect(done.isError, `${sql}: ${done.text}`).toBe(false);
      }
      const half = await call(ctx, 'search_vectors', { project_id: 'docs', table: 'notes', column: 'v', vector: [0, 1, 0], columns: ['id', 'v', 'seen'] });
      expect(half.isError, half.text).toBe(false);
      expect(half.data).toMatchObject({ metric: 'l2', metric_source: 'default' });
      expect((half.data['matches'] as Array<{ row: unknown }>).map((m) => m.row)).toEqual([
        { id: '2', v: [0, 1, 0], seen: null },
        { id: '1', v: [1, 0, 0], seen: '2026-01-02T03:04:05.678Z' },
      ]);
      const byLabel = await call(ctx, 'search_vectors', { project_id: 'docs', table: 'notes', column: 'v', vector: [0, 1, 0], filter: { seen: null } });
      expect((byLabel.data['matches'] as Array<{ row: unknown }>).map((m) => m.row)).toEqual([{ id: '2', label: 'y', seen: null }]);
      // A view whose column writes: the READ ONLY transaction is what stops it.
      const writing = await call(ctx, 'search_vectors', { project_id: 'docs', table: 'writing_view', column: 'v', vector: [1, 0, 0] });
      expect(writing.isError).toBe(true);
      expect(writing.text).toContain('read-only transaction');
      const [written] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM project_docs.written');
      expect(written?.n).toBe(0);
    });

    it("search_vectors sets hnsw.ef_search (and, filtered on pgvector 0.8+, iterative_scan) for its own statement", async (ctx) => {
      if (!mcp) return ctx.skip();
      // A view of the agent's shows what its statement runs with.
      const view = await call(ctx, 'execute', {
        project_id: 'docs',
        sql: "CREATE VIEW seen_settings AS SELECT id, v, label, current_setting('hnsw.ef_search', true) AS ef, current_setting('hnsw.iterative_scan', true) AS iter FROM notes",
      });
      expect(view.isError, view.text).toBe(false);
      const [ext] = await db.query<{ iterative: boolean }>(
        "SELECT string_to_array(extversion, '.')::int[] >= '{0,8,0}' AS iterative FROM pg_extension WHERE extname = 'vector'",
      );
      const search = (args: Record<string, unknown>) =>
        call(ctx, 'search_vectors', { project_id: 'docs', table: 'seen_settings', column: 'v', vector: [1, 0, 0], columns: ['ef', 'iter'], ...args });
      const filtered = await search({ k: 60, filter: { label: 'x' } });
      expect(filtered.isError, filtered.text).toBe(false);
      expect((filtered.data['matches'] as Array<{ row: unknown }>).map((m) => m.row)).toEqual([
        { ef: '60', iter: ext?.iterative ? 'strict_order' : expect.anything() },
      ]);
      const plain = await search({ k: 2 });
      const rows = (plain.data['matches'] as Array<{ row: { ef: unknown; iter: unknown } }>).map((m) => m.row);
      expect(rows.map((r) => r.ef)).toEqual(['40', '40']);
      if (ext?.iterative) expect(rows.map((r) => r.iter)).toEqual(['off', 'off']);
      // Transaction-local: the server's session keeps its defaults.
      const [after] = await db.query<{ ef: string | null }>("SELECT current_setting('hnsw.ef_search', true) AS ef");
      expect([null, undefined, '40']).toContain(after?.ef);
    });

    it('search_vectors runs under the SQL tools\' statement timeout', async (ctx) => {
      if (!mcp) return ctx.skip();
      const slow = await call(ctx, 'execute', { project_id: 'docs', sql: 'CREATE VIEW slow AS SELECT n.id, n.v FROM notes n, pg_sleep(5)' });
      expect(slow.isError, slow.text).toBe(false);
      const ready = await mcp.engine.ready(60_000);
      const sandbox = new WorkspaceSandbox(db, ready.workspaces, ready.report.searchPathSchemas, { statementTimeoutMs: 200, maxRowsCap: 100, maxResultBytes: 1024 * 1024, maxCallsPerWorkspace: 4 }, silentLogger);
      const failure = await searchVectors(db, sandbox, { projectId: 'docs', table: 'slow', column: 'v', vector: [1, 0, 0] }).catch((e: unknown) => e);
      expect(sqlState(failure)).toBe('57014');
      // The agent learns which limit it hit and what to do, not only PostgreSQL's words.
      expect((failure as Error).message).toMatch(/^canceling statement due to statement timeout: it ran past this server's limit of 200 ms \(PG_WORKSPACE_STATEMENT_TIMEOUT_MS\)[\s\S]*Narrow it/);
      // The session went back clean: the next search on the pool works (with room for the first
      // statements of the embedded store's new session, whose caches are cold).
      const roomy = new WorkspaceSandbox(db, ready.workspaces, ready.report.searchPathSchemas, { statementTimeoutMs: 10_000, maxRowsCap: 100, maxResultBytes: 1024 * 1024, maxCallsPerWorkspace: 4 }, silentLogger);
      const ok = await searchVectors(db, roomy, { projectId: 'docs', table: 'notes', column: 'v', vector: [1, 0, 0], k: 1 });
      expect(ok.matches).toHaveLength(1);
    });

    it('validate_columns without project_id answers only for workspaces and extensions\' global tables', async (ctx) => {
      const authid = await call(ctx, 'validate_columns', { table: 'pg_catalog.pg_authid', columns: ['rolpassword'] });
      expect(authid.isError).toBe(true);
      expect(authid.text).toContain('not for pg_catalog.pg_authid');
      expect(authid.text).toContain('project_registry.workspace_config');
      const elsewhere = await call(ctx, 'validate_columns', { table: 'public.nothing_here', columns: ['id'] });
      expect(elsewhere.isError).toBe(true);
      const registry = await call(ctx, 'validate_columns', { table: 'project_registry.workspace_config', columns: ['project_id', 'nope'] });
      expect(registry.data).toMatchObject({ table_exists: true, present: ['project_id'], missing: ['nope'] });
      const workspace = await call(ctx, 'validate_columns', { table: 'project_docs.chunks', columns: ['embedding'] });
      expect(workspace.data).toMatchObject({ schema: 'project_docs', table: 'chunks', valid: true });
    });
  });
}
