import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { NODE_COMMAND_FUNCTIONS } from '../src/db/postgres/citus.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { CitusDesignError } from '../src/workspaces/citus-workspaces.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { startCitusCluster, sqlOn, type CitusCluster } from '../harness/citus-cluster.js';
import { install, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { callTool, connectInProcess } from './support/mcp.js';
import { MAIN, startServerProcess, type ServerProcess } from './support/server-process.js';

const run = promisify(execFile);

let citus: CitusCluster | null = null;
beforeAll(async () => {
  citus = await startCitusCluster({ workers: 2 });
}, 120_000);
afterAll(async () => citus?.destroy());

const cluster = (ctx: TestContext): CitusCluster => {
  if (!citus) ctx.skip();
  return citus as CitusCluster;
};

/** A workspace extension beside the built-in codebase (pgvector): a table, a migration, a foreign key inside the workspace. */
const NOTES_V1 = {
  'workspace/schema.sql':
    'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, ' +
    'chunk_id bigint REFERENCES chunks ON DELETE SET NULL);\nCREATE INDEX IF NOT EXISTS notes_body_idx ON notes (body);',
  'workspace/migrations/0001_tags.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS tags text[];',
};
const NOTES_V2 = {
  ...NOTES_V1,
  'workspace/migrations/0002_score.sql':
    'ALTER TABLE notes ADD COLUMN IF NOT EXISTS score int;\nCREATE INDEX IF NOT EXISTS notes_score_idx ON notes (score);',
};
/** 4 servers ask for SHARED common ids and OWN ids each, all at once. */
const SERVERS = 4;
const SHARED = 2;
const OWN = 3;
const WORKSPACES = SHARED + SERVERS * OWN;

const notes = async (files: Record<string, string>) =>
  writeExtension(await tempDir(), { id: 'notes', uses_tables: ['chunks'], required_columns: { notes: ['id', 'body'] } }, files);

/**
 * The invariants of a Citus database: the registry is a plain schema; every registered
 * workspace's schema exists and is distributed, and no workspace schema is unregistered; every
 * table in a distributed schema is distributed in that schema's colocation group.
 * Returns how many workspaces each worker holds.
 */
async function assertCitusInvariants(url: string): Promise<Record<string, number>> {
  const [registry] = await sqlOn(
    url,
    `SELECT EXISTS (SELECT 1 FROM pg_dist_schema WHERE schemaid = 'project_registry'::regnamespace) AS distributed`,
  );
  expect(registry?.['distributed']).toBe(false);
  const unmatched = await sqlOn(
    url,
    `SELECT coalesce(w.schema_name, n.nspname) AS schema, w.project_id IS NOT NULL AS registered, d.schemaid IS NOT NULL AS distributed
       FROM project_registry.workspace_config w
       FULL JOIN (SELECT oid, nspname FROM pg_namespace WHERE nspname LIKE 'project\\_%' AND nspname !~ '^project_registry(_|$)') n
         ON n.nspname = w.schema_name
       LEFT JOIN pg_dist_schema d ON d.schemaid = n.oid
      WHERE w.project_id IS NULL OR n.oid IS NULL OR d.schemaid IS NULL`,
  );
  expect(unmatched).toEqual([]);
  const strays = await sqlOn(
    url,
    `SELECT c.oid::regclass::text AS tbl, p.colocationid, d.colocationid AS schema_colocation
       FROM pg_class c JOIN pg_dist_schema d ON d.schemaid = c.relnamespace
       LEFT JOIN pg_dist_partition p ON p.logicalrelid = c.oid
      WHERE c.relkind IN ('r', 'p') AND (p.logicalrelid IS NULL OR p.colocationid <> d.colocationid)`,
  );
  expect(strays).toEqual([]);
  const tables = await sqlOn(url, `SELECT count(*)::int AS n FROM pg_dist_partition p JOIN pg_dist_schema d ON d.colocationid = p.colocationid`);
  expect(Number(tables[0]?.['n'])).toBeGreaterThan(0);
  const placement = await sqlOn(
    url,
    `SELECT nodeport::text AS node, count(DISTINCT colocation_id)::int AS workspaces FROM citus_shards
      WHERE citus_table_type = 'schema' GROUP BY 1`,
  );
  return Object.fromEntries(placement.map((r) => [r['node'] as string, r['workspaces'] as number]));
}

/** How many shards on a worker have the index: Citus hides shards from the catalog unless asked. */
async function shardIndexes(workerUrl: string, index: string): Promise<number> {
  const client = new pg.Client({ connectionString: workerUrl });
  await client.connect();
  try {
    await client.query('SET citus.override_table_visibility = off');
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_indexes WHERE indexname ~ ('^' || $1 || '_[0-9]+$')`,
      [index],
    );
    return rows[0]?.n ?? 0;
  } finally {
    await client.end();
  }
}

/** validate_columns, list_workspaces and workspace_status on one workspace, through a server. */
async function everyToolOn(server: ServerProcess, projectId: string) {
  const ensured = await server.call('ensure_workspace', { project_id: projectId });
  expect(ensured.isError, ensured.text).toBe(false);
  expect(ensured.data['tables']).toEqual(['chunks', 'files', 'notes', 'repositories']);
  const columns = await server.call('validate_columns', { project_id: projectId, table: 'chunks', columns: ['embedding', 'nope'] });
  expect(columns.data).toMatchObject({ table_exists: true, present: ['embedding'], missing: ['nope'] });
  const listed = await server.call('list_workspaces', { prefix: projectId, limit: 5 });
  expect((listed.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id)).toContain(projectId);
  const status = await server.call('workspace_status', { project_id: projectId });
  expect(status.data['workspace']).toMatchObject({ up_to_date: true, pending: [] });
}

/** chunk k is 1 in dimensions 0..k: from the query embedding(2) = [1,1,1,0,...], chunk 2 is nearest, then 1, then 0. */
const embedding = (k: number) => Array.from({ length: 768 }, (_, i) => (i <= k ? 1 : 0));

/**
 * describe_workspace, search_vectors, query and execute on a workspace holding chunks 0..2 (see
 * embedding), through a server; `tag` names what execute adds, so each round adds its own.
 */
async function sqlToolsOn(server: ServerProcess, projectId: string, tag: string) {
  const described = await server.call('describe_workspace', { project_id: projectId, table: 'chunks' });
  expect(described.isError, described.text).toBe(false);
  const [chunks] = described.data['tables'] as Array<{ name: string; indexes: Array<{ method: string; definition: string }> }>;
  expect(chunks?.indexes.filter((i) => i.method === 'hnsw').map((i) => i.definition)).toEqual([expect.stringMatching(/USING hnsw \(embedding (public\.)?vector_cosine_ops\)/)]);

  const searched = await server.call('search_vectors', { project_id: projectId, table: 'chunks', column: 'embedding', vector: embedding(2), k: 3 });
  expect(searched.isError, searched.text).toBe(false);
  const matches = searched.data['matches'] as Array<{ distance: number; row: Record<string, unknown> }>;
  expect(matches.map((m) => m.row['content'])).toEqual(['chunk 2', 'chunk 1', 'chunk 0']);
  expect(matches[0]?.distance).toBeCloseTo(0, 6);

  const queried = await server.call('query', { project_id: projectId, sql: 'SELECT content FROM chunks WHERE start_line = $1', params: [1] });
  expect(queried.isError, queried.text).toBe(false);
  expect(queried.data).toMatchObject({ rows: [['chunk 1']], row_count: 1, truncated: false });

  const files = await server.call('execute', {
    project_id: projectId,
    sql: `INSERT INTO files (repository_id, path, content_hash, size_bytes) SELECT id, $1, 'h', 1 FROM repositories LIMIT 1 RETURNING id, path`,
    params: [`${tag}.ts`],
  });
  expect(files.isError, files.text).toBe(false);
  expect(files.data).toMatchObject({ command: 'INSERT', row_count: 1, rows: [[expect.stringMatching(/^\d+$/), `${tag}.ts`]] });
  const fileId = (files.data['rows'] as string[][])[0]?.[0];
  const chunk = await server.call('execute', {
    project_id: projectId,
    sql: 'INSERT INTO chunks (file_id, content, start_line, end_line, embedding) VALUES ($1, $2, 9, 9, $3) RETURNING content, file_id',
    params: [fileId, `${tag} chunk`, embedding(700)],
  });
  expect(chunk.isError, chunk.text).toBe(false);
  expect(chunk.data).toMatchObject({ command: 'INSERT', row_count: 1, rows: [[`${tag} chunk`, fileId]] });
  // Far from embedding(2): the nearest three stay chunks 2, 1, 0 for the next round.

  const created = await server.call('execute', { project_id: projectId, sql: `CREATE TABLE ${tag}_notes (id int PRIMARY KEY, body text)` });
  expect(created.isError, created.text).toBe(false);
  expect(created.data).toMatchObject({ command: 'CREATE TABLE' });
  const inserted = await server.call('execute', { project_id: projectId, sql: `INSERT INTO ${tag}_notes VALUES (1, $1) RETURNING body`, params: ['hi'] });
  expect(inserted.data).toMatchObject({ rows: [['hi']] });
  const read = await server.call('query', { project_id: projectId, sql: `SELECT count(*)::int AS n FROM ${tag}_notes` });
  expect(read.data).toMatchObject({ rows: [[1]] });
  const copied = await server.call('execute', { project_id: projectId, sql: `CREATE TABLE ${tag}_copy AS SELECT id, content FROM chunks WHERE start_line < $1`, params: [3] });
  expect(copied.isError, copied.text).toBe(false);
  // DDL on the (now distributed) table reaches its shard; a key is also what moving it by logical replication needs.
  const keyed = await server.call('execute', { project_id: projectId, sql: `ALTER TABLE ${tag}_copy ADD PRIMARY KEY (id)` });
  expect(keyed.isError, keyed.text).toBe(false);
  const copy = await server.call('query', { project_id: projectId, sql: `SELECT content FROM ${tag}_copy ORDER BY content` });
  expect(copy.data).toMatchObject({ rows: [['chunk 0'], ['chunk 1'], ['chunk 2']] });
}

describe('Citus schema-based sharding (coordinator + 2 workers)', () => {
  let url: string;
  let notesDir: string;
  let servers: ServerProcess[] = [];
  afterAll(async () => Promise.all(servers.map((s) => s.close())));

  it('4 servers booting at once provision shared and own ids as distributed schemas, spread over the workers', async (ctx) => {
    const c = cluster(ctx);
    url = await c.createDatabase('boot');
    // Citus's recommended setting: every new schema a distributed schema. The registry must stay out.
    await sqlOn(url, `ALTER DATABASE ${new URL(url).pathname.slice(1)} SET citus.enable_schema_based_sharding = on`);
    notesDir = await notes(NOTES_V1);
    servers = await Promise.all(
      Array.from({ length: SERVERS }, () => startServerProcess(['--extensions', notesDir], { DATABASE_URL: url, PG_WORKSPACE_LOG_LEVEL: 'warn' })),
    );
    const results = await Promise.all(
      servers.map((s, n) =>
        Promise.all([
          ...Array.from({ length: SHARED }, (_, i) => s.call('ensure_workspace', { project_id: `shared-${i}` })),
          ...Array.from({ length: OWN }, (_, i) => s.call('ensure_workspace', { project_id: `own-${n}-${i}` })),
        ]),
      ),
    );
    const flat = results.flat();
    expect(flat.filter((r) => r.isError).map((r) => r.text)).toEqual([]);
    expect(flat.filter((r) => r.data['created'] === true)).toHaveLength(WORKSPACES);
    const perWorker = await assertCitusInvariants(url);
    expect(Object.keys(perWorker).sort()).toEqual(c.workers.map((w) => String(w.port)).sort());
    expect(Object.values(perWorker).reduce((a, b) => a + b, 0)).toBe(WORKSPACES);
    // Created by the installer on the coordinator, propagated by Citus to every worker.
    for (const i of [0, 1]) {
      expect(await sqlOn(c.workerUrl(i, url), `SELECT extname FROM pg_extension WHERE extname = 'vector'`)).toHaveLength(1);
    }
    for (const s of servers) expect(s.stderr()).not.toMatch(/"level":"error"/);
  }, 180_000);

  it('every tool works, and a workspace moved to the other worker keeps its data, its vector search and every tool', async (ctx) => {
    const c = cluster(ctx);
    if (!url) ctx.skip();
    const [s0, s1] = servers as [ServerProcess, ServerProcess];
    await everyToolOn(s0, 'shared-0');
    const fleet = await s1.call('workspace_status', {});
    expect(fleet.data['fleet']).toMatchObject({ workspaces: WORKSPACES, up_to_date: WORKSPACES, lagging: 0 });

    const schema = 'project_shared_0';
    const literal = (k: number) => `[${embedding(k).join(',')}]`;
    const [repo] = await sqlOn(url, `INSERT INTO ${schema}.repositories (path, name) VALUES ('/r', 'r') RETURNING id`);
    const [file] = await sqlOn(url, `INSERT INTO ${schema}.files (repository_id, path, content_hash, size_bytes) VALUES ($1, 'a.ts', 'h', 1) RETURNING id`, [
      repo?.['id'],
    ]);
    for (const k of [0, 1, 2]) {
      await sqlOn(url, `INSERT INTO ${schema}.chunks (file_id, content, start_line, end_line, embedding) VALUES ($1, $2, $3, $3, $4)`, [
        file?.['id'],
        `chunk ${k}`,
        k,
        literal(k),
      ]);
    }
    await sqlToolsOn(s0, 'shared-0', 'before_move');
    await assertCitusInvariants(url);
    const [before] = await sqlOn(url, `SELECT nodeport FROM citus_shards WHERE table_name = '${schema}.chunks'::regclass`);
    const target = c.workers.find((w) => w.port !== Number(before?.['nodeport']));
    await sqlOn(url, `SELECT citus_schema_move($1::regnamespace, $2::text, $3::int)`, [schema, target?.host, target?.port]);
    const placements = await sqlOn(url, `SELECT DISTINCT nodeport FROM citus_shards WHERE table_name::text LIKE '${schema}.%'`);
    expect(placements).toEqual([{ nodeport: target?.port }]);

    const nearest = await sqlOn(url, `SELECT content FROM ${schema}.chunks ORDER BY embedding <-> $1::vector LIMIT 2`, [literal(2)]);
    expect(nearest.map((r) => r['content'])).toEqual(['chunk 2', 'chunk 1']);
    for (const s of servers) await everyToolOn(s, 'shared-0');
    // The tables execute made before the move moved with the workspace; the SQL tools work on the new worker.
    expect(await sqlOn(url, `SELECT body FROM ${schema}.before_move_notes`)).toEqual([{ body: 'hi' }]);
    const agentTables = await sqlOn(url, `SELECT table_name::text AS t, nodeport FROM citus_shards WHERE table_name::text ~ '^${schema}\\.before_move_' ORDER BY 1`);
    expect(agentTables).toEqual([`${schema}.before_move_copy`, `${schema}.before_move_notes`].map((t) => ({ t, nodeport: target?.port })));
    await sqlToolsOn(s1, 'shared-0', 'after_move');
    const moved = await sqlOn(url, `SELECT DISTINCT nodeport FROM citus_shards WHERE table_name::text LIKE '${schema}.%'`);
    expect(moved).toEqual([{ nodeport: target?.port }]);
    await assertCitusInvariants(url);
  }, 120_000);

  it('re-creates a workspace schema dropped by hand as a distributed schema', async (ctx) => {
    cluster(ctx);
    if (!url) ctx.skip();
    const [s0] = servers as [ServerProcess];
    await sqlOn(url, 'DROP SCHEMA project_own_0_1 CASCADE');
    // The server has it cached; validate_columns finds it gone, so the next ensure looks again.
    expect((await s0.call('validate_columns', { project_id: 'own-0-1', table: 'notes', columns: ['id'] })).isError).toBe(true);
    const again = await s0.call('ensure_workspace', { project_id: 'own-0-1' });
    expect(again.data).toMatchObject({ created: true });
    await everyToolOn(s0, 'own-0-1');
    await sqlOn(url, `INSERT INTO project_own_0_1.notes (body) VALUES ('back')`);
    await assertCitusInvariants(url);
  }, 60_000);

  it('drop_workspace drops a distributed workspace with its shards (keeping its role); another server that cached it re-creates it distributed', async (ctx) => {
    cluster(ctx);
    if (!url) ctx.skip();
    const [s0, s1] = servers as [ServerProcess, ServerProcess];
    // The SQL tools give it its role (LOGIN on Citus) and a table of the agent's own.
    const made = await s0.call('execute', { project_id: 'own-0-2', sql: 'CREATE TABLE agent_notes (body text)' });
    expect(made.isError, made.text).toBe(false);
    const shards = `SELECT count(*)::int AS n FROM citus_shards WHERE table_name::text LIKE 'project_own_0_2.%'`;
    expect(Number((await sqlOn(url, shards))[0]?.['n'])).toBeGreaterThan(0);
    const dropped = await s1.call('drop_workspace', { project_id: 'own-0-2', confirm: 'own-0-2' });
    expect(dropped.isError, dropped.text).toBe(false);
    expect(dropped.data).toMatchObject({ dropped: true });
    expect(dropped.data['changes']).toEqual([
      'dropped schema project_own_0_2 and everything in it',
      expect.stringMatching(/^deleted 1 registry row and \d+ ledger row\(s\) of schema project_own_0_2$/),
      expect.stringMatching(/^dropped its sandbox function and kept its role pgw_\w+_own_0_2 \(Citus: see docs\/citus.md\)$/),
    ]);
    expect(await sqlOn(url, shards)).toEqual([{ n: 0 }]);
    // The role stays (s0's coordinator sessions hold worker connections made as it), with no sandbox function.
    expect(await sqlOn(url, `SELECT count(*)::int AS n FROM pg_proc WHERE pronamespace = 'project_registry_sandbox'::regnamespace AND proname = 'project_own_0_2'`)).toEqual([{ n: 0 }]);
    await assertCitusInvariants(url);
    // s0 had it cached: it makes it again, as a distributed schema, and its SQL tools work there.
    expect((await s0.call('ensure_workspace', { project_id: 'own-0-2' })).data).toMatchObject({ created: true });
    const counted = await s0.call('query', { project_id: 'own-0-2', sql: 'SELECT count(*) FROM notes' });
    expect(counted.isError, counted.text).toBe(false);
    expect(counted.data).toMatchObject({ rows: [['0']] });
    await everyToolOn(s0, 'own-0-2');
    await assertCitusInvariants(url);
  }, 120_000);

  it('migrate-workspaces upgrades every workspace on its worker (a column and an index per statement)', async (ctx) => {
    cluster(ctx);
    if (!url) ctx.skip();
    const v2Dir = await notes(NOTES_V2);
    const result = await run(process.execPath, [MAIN, 'migrate-workspaces', '--concurrency', '3', '--extensions', v2Dir], {
      env: { ...process.env, DATABASE_URL: url },
    }).catch((error: { code: number; stdout: string; stderr: string }) => error);
    expect(result.stdout, result.stderr).toMatch(new RegExp(`^Upgraded ${WORKSPACES}, skipped 0 \\(already current or gone\\), failed 0 of ${WORKSPACES}`));
    // On the shards themselves: the new column answers a query routed to each workspace's worker.
    await sqlOn(
      url,
      `DO $$ DECLARE s text; BEGIN
         FOR s IN SELECT schema_name FROM project_registry.workspace_config LOOP
           EXECUTE format('INSERT INTO %I.notes (body, score) VALUES (''x'', 1)', s);
         END LOOP; END $$`,
    );
    const indexes = await Promise.all([0, 1].map((i) => shardIndexes(cluster(ctx).workerUrl(i, url), 'notes_score_idx')));
    expect(indexes.reduce((a, b) => a + b, 0)).toBe(WORKSPACES);
    await assertCitusInvariants(url);
    // The servers still on v1 see a newer schema than theirs and leave it alone; a v2 server serves it.
    const v2Server = await startServerProcess(['--extensions', v2Dir], { DATABASE_URL: url, PG_WORKSPACE_LOG_LEVEL: 'warn' });
    servers.push(v2Server);
    const status = await v2Server.call('workspace_status', {});
    expect(status.data['fleet']).toMatchObject({ workspaces: WORKSPACES, lagging: 0 });
  }, 120_000);
});

describe('Citus: designs it refuses, and the registry', () => {
  let plan: InstallPlan;

  it('a foreign key from workspace DDL to a global table that is not a reference table fails clearly and leaves nothing', async (ctx) => {
    const url = await cluster(ctx).createDatabase('fk');
    const dir = await writeExtension(await tempDir(), { id: 'tagged' }, {
      'schema.sql': 'CREATE TABLE IF NOT EXISTS public.note_kinds (kind text PRIMARY KEY);',
      'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS tagged (id int PRIMARY KEY, kind text REFERENCES public.note_kinds);',
    });
    plan = await planFor([dir], ['codebase']);
    const db = new PostgresDatabase({ connectionString: url });
    try {
      const report = await install(db, plan);
      expect(report.citus).toMatch(/^13\./);
      const manager = new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger, { citus: true });
      const error = await manager.ensure('fk-one').catch((e: unknown) => e as Error);
      expect(error).toBeInstanceOf(CitusDesignError);
      expect((error as Error).message).toContain('extension "tagged"');
      expect((error as Error).message).toContain(`SELECT create_reference_table('public.note_kinds')`);
      expect(await sqlOn(url, `SELECT 1 FROM pg_namespace WHERE nspname = 'project_fk_one'`)).toEqual([]);
      expect(await sqlOn(url, 'SELECT 1 FROM project_registry.workspace_config')).toEqual([]);
      // The fix the message gives works.
      await sqlOn(url, `SELECT create_reference_table('public.note_kinds')`);
      await expect(manager.ensure('fk-one')).resolves.toMatchObject({ created: true });
      await assertCitusInvariants(url);

      // An upgrade that adds such a table to an existing (distributed) workspace is refused alike.
      await writeFile(path.join(dir, 'schema.sql'), 'CREATE TABLE IF NOT EXISTS public.note_kinds (kind text PRIMARY KEY);\nCREATE TABLE IF NOT EXISTS public.moods (mood text PRIMARY KEY);');
      await mkdir(path.join(dir, 'workspace/migrations'), { recursive: true });
      await writeFile(path.join(dir, 'workspace/migrations/0001_moods.sql'), 'CREATE TABLE IF NOT EXISTS moody (id int PRIMARY KEY, mood text REFERENCES public.moods);');
      const v2 = await planFor([dir], ['codebase']);
      const upgraded = await install(db, v2);
      const upgrading = new WorkspaceManager(db, v2, upgraded.searchPathSchemas, silentLogger, { citus: true });
      const refused = await upgrading.ensure('fk-one').catch((e: unknown) => e as Error);
      expect(refused).toBeInstanceOf(CitusDesignError);
      expect((refused as Error).message).toContain('a workspace table references moods');
      expect((refused as Error).message).toContain(`SELECT create_reference_table('moods')`);
      expect(await sqlOn(url, `SELECT to_regclass('project_fk_one.moody') AS t`)).toEqual([{ t: null }]);
    } finally {
      await db.close();
    }
  }, 60_000);

  it('a registry made a distributed schema by an earlier install is brought back to the coordinator at boot, re-installs keep it there, and a worker is refused', async (ctx) => {
    const c = cluster(ctx);
    const url = await c.createDatabase('registry');
    const db = new PostgresDatabase({ connectionString: url });
    try {
      const dir = await writeExtension(await tempDir(), { id: 'items' }, {
        'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY);',
      });
      const small = await planFor([dir], ['codebase']);
      await install(db, small);
      await sqlOn(url, `SELECT citus_schema_distribute('project_registry')`);
      // Warm boot (same fingerprint) notices and repairs it.
      const warm = await install(db, small);
      const manager = new WorkspaceManager(db, small, warm.searchPathSchemas, silentLogger, { citus: true });
      await manager.ensure('after-repair');
      // A re-install with other extensions, with the GUC on for the role, keeps it plain.
      const dbName = new URL(url).pathname.slice(1);
      await sqlOn(url, `ALTER ROLE postgres IN DATABASE ${dbName} SET citus.enable_schema_based_sharding = on`);
      try {
        const fresh = new PostgresDatabase({ connectionString: url });
        await install(fresh, await planFor([dir]));
        await fresh.close();
      } finally {
        await sqlOn(url, `ALTER ROLE postgres IN DATABASE ${dbName} RESET citus.enable_schema_based_sharding`);
      }
      await assertCitusInvariants(url);
      const onWorker = new PostgresDatabase({ connectionString: c.workerUrl(0, url) });
      await expect(install(onWorker, small).finally(() => onWorker.close())).rejects.toThrow(/Citus worker.*coordinator/s);
    } finally {
      await db.close();
    }
  }, 60_000);
});

describe('Citus: an upgrade never runs agent code as the server', () => {
  it("an agent's tables in a workspace whose extensions make none are distributed in its schema's colocation group", async (ctx) => {
    const url = await cluster(ctx).createDatabase('no_tables');
    const mcp = await connectInProcess({ extensionDirs: [], databaseUrl: url, disabledExtensions: ['codebase'] });
    const call = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
    try {
      const ensured = await call('ensure_workspace', { project_id: 'bare' });
      expect(ensured.data['tables']).toEqual([]);
      for (const sql of [
        // No table made: the empty schema stays distributed.
        'CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
        'CREATE TABLE kinds (id int PRIMARY KEY)',
        'CREATE TABLE items (id int PRIMARY KEY, kind int REFERENCES kinds)',
        'INSERT INTO kinds VALUES (1)',
        'INSERT INTO items VALUES (1, one())',
        'CREATE TABLE copied AS SELECT * FROM items',
      ]) {
        const done = await call('execute', { project_id: 'bare', sql });
        expect(done.isError, `${sql}: ${done.text}`).toBe(false);
      }
      const tables = await sqlOn(
        url,
        `SELECT c.relname::text AS name, p.colocationid IS NOT DISTINCT FROM d.colocationid AS colocated
           FROM pg_class c JOIN pg_dist_schema d ON d.schemaid = c.relnamespace LEFT JOIN pg_dist_partition p ON p.logicalrelid = c.oid
          WHERE c.relnamespace = 'project_bare'::regnamespace AND c.relkind = 'r' ORDER BY 1`,
      );
      expect(tables).toEqual(['copied', 'items', 'kinds'].map((name) => ({ name, colocated: true })));
      const read = await call('query', { project_id: 'bare', sql: 'SELECT i.id, k.id AS kind FROM items i JOIN kinds k ON k.id = i.kind' });
      expect(read.data).toMatchObject({ rows: [[1, 1]] });
      await assertCitusInvariants(url);
    } finally {
      await mcp.close();
    }
  }, 120_000);

  it('a view with an ON UPDATE DO INSTEAD rule in place of an extension table runs its function as the workspace role', async (ctx) => {
    const url = await cluster(ctx).createDatabase('upgrade_rule');
    const table = 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);';
    const v1 = await writeExtension(await tempDir(), { id: 'notes' }, { 'workspace/schema.sql': table });
    const v2 = await writeExtension(await tempDir(), { id: 'notes' }, { 'workspace/schema.sql': table, 'workspace/migrations/0001_touch.sql': 'UPDATE notes SET body = body;' });
    const first = await connectInProcess({ extensionDirs: [v1], databaseUrl: url, disabledExtensions: ['codebase'] });
    const call = (mcp: typeof first, name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
    try {
      expect((await call(first, 'execute', { project_id: 'beta', sql: "INSERT INTO notes (body) VALUES ('beta secret')" })).isError).toBe(false);
      const agent = [
        "INSERT INTO notes (body) VALUES ('x')",
        'CREATE TABLE witness (who text, loot text)',
        // Swallows its own failures, so that the upgrade succeeds whoever it runs as.
        `CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN
           INSERT INTO witness (who) VALUES (current_user::text);
           BEGIN
             INSERT INTO witness (loot) SELECT body FROM project_beta.notes;
           EXCEPTION WHEN OTHERS THEN NULL;
           END;
         END $f$`,
        'ALTER TABLE notes RENAME TO notes_real',
        'CREATE VIEW notes AS SELECT * FROM notes_real',
        // The parser refuses CREATE RULE; a function runs it all the same (PostgreSQL is the boundary).
        `CREATE FUNCTION make_rule() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN
           EXECUTE 'CREATE RULE touch AS ON UPDATE TO notes DO INSTEAD SELECT f()';
         END $f$`,
        'SELECT make_rule()',
      ];
      for (const sql of agent) {
        const done = await call(first, 'execute', { project_id: 'alpha', sql });
        expect(done.isError, `${sql}: ${done.text}`).toBe(false);
      }
    } finally {
      await first.close();
    }
    const second = await connectInProcess({ extensionDirs: [v2], databaseUrl: url, disabledExtensions: ['codebase'] });
    try {
      const upgraded = await call(second, 'ensure_workspace', { project_id: 'alpha' });
      expect(upgraded.isError, upgraded.text).toBe(false);
      const seen = (await sqlOn(url, 'SELECT who, loot FROM project_alpha.witness')) as { who: string | null; loot: string | null }[];
      // The migration's UPDATE did reach the rule.
      expect(seen.filter((r) => r.who !== null).length).toBeGreaterThan(0);
      for (const r of seen) {
        expect(r.who, 'the agent function ran as the server').toMatch(/^pgw_/);
        expect(r.loot, 'the agent function read another workspace').toBeNull();
      }
      await assertCitusInvariants(url);
    } finally {
      await second.close();
    }
    // Its schema dropped by hand, the workspace (whose role exists) is made again, distributed.
    await sqlOn(url, 'DROP SCHEMA project_alpha CASCADE');
    const third = await connectInProcess({ extensionDirs: [v2], databaseUrl: url, disabledExtensions: ['codebase'] });
    try {
      const again = await call(third, 'ensure_workspace', { project_id: 'alpha' });
      expect(again.isError, again.text).toBe(false);
      expect(again.data['created']).toBe(true);
      expect((await call(third, 'execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('again') RETURNING body" })).isError).toBe(false);
      await assertCitusInvariants(url);
    } finally {
      await third.close();
    }
  }, 180_000);
});

describe('Citus: agent SQL never leaves its session', () => {
  // Red team round 4 (issue 27): Citus's run_command_on_*() and master_run_on_worker(), which
  // PUBLIC may call, open connections of their own as the current role: a read-only `query` of
  // alpha made a large object on every node, committed, and granted it to PUBLIC outside the
  // sandbox (its checks, its rollback), and beta read alpha's text.
  const NODE_COMMANDS = 'pg_catalog.master_run_on_worker(text[], integer[], text[], boolean)';
  it("refuses the SQL tools while PUBLIC may run commands on the nodes; once revoked (every node), an agent's call is refused there, pushed down to a worker too", async (ctx) => {
    const c = cluster(ctx);
    const url = await c.createDatabase('node_commands');
    const nodes = [url, c.workerUrl(0, url), c.workerUrl(1, url)];
    const table = 'CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, body text);';
    const notes = await writeExtension(await tempDir(), { id: 'notes' }, { 'workspace/schema.sql': table });
    await sqlOn(url, `GRANT EXECUTE ON FUNCTION ${NODE_COMMANDS} TO PUBLIC`);
    const open = await connectInProcess({ extensionDirs: [notes], databaseUrl: url, disabledExtensions: ['codebase'] });
    try {
      const refused = await callTool(open.client, open.tools, 'query', {
        project_id: 'alpha',
        sql: "SELECT result FROM run_command_on_coordinator($$SELECT pg_catalog.lo_from_bytea(0, 'alpha secret')$$)",
      });
      expect(refused.isError, refused.text).toBe(true);
      expect(refused.text).toContain('REVOKE EXECUTE ON FUNCTION master_run_on_worker(text[],integer[],text[],boolean) FROM PUBLIC;');
    } finally {
      await open.close();
    }
    await sqlOn(url, `REVOKE EXECUTE ON FUNCTION ${NODE_COMMANDS} FROM PUBLIC`);
    const mcp = await connectInProcess({ extensionDirs: [notes], databaseUrl: url, disabledExtensions: ['codebase'] });
    try {
      const wrote = await callTool(mcp.client, mcp.tools, 'execute', { project_id: 'alpha', sql: "INSERT INTO notes VALUES (1, 'one')" });
      expect(wrote.isError, wrote.text).toBe(false);
      for (const sql of [
        "SELECT result FROM run_command_on_coordinator($$SELECT pg_catalog.lo_from_bytea(0, 'alpha secret')$$)",
        "SELECT result FROM run_command_on_workers($$SELECT pg_catalog.lo_from_bytea(0, 'alpha secret')$$)",
        "SELECT result FROM run_command_on_all_nodes($$SELECT pg_catalog.lo_from_bytea(0, 'alpha secret')$$)",
        "SELECT * FROM master_run_on_worker(ARRAY['localhost'], ARRAY[5432], ARRAY['SELECT 1'], false)",
        // A router query runs on the workspace's worker whole, the function call included.
        "SELECT (SELECT count(*) FROM run_command_on_coordinator($$SELECT pg_catalog.lo_from_bytea(0, 'alpha secret')$$)) FROM notes WHERE id = 1",
      ]) {
        const call = await callTool(mcp.client, mcp.tools, 'query', { project_id: 'alpha', sql });
        expect(call.isError, `${sql}: ${call.text}`).toBe(true);
        expect(call.text).toMatch(/permission denied for function (master_run_on_worker|run_command_on_\w+)/);
      }
      for (const node of nodes) expect(await sqlOn(node, 'SELECT count(*)::int AS n FROM pg_largeobject_metadata')).toEqual([{ n: 0 }]);
    } finally {
      await mcp.close();
    }
    // Left open on a worker only, the router query above ran the call there, and it made the large object on the coordinator.
    const worker = c.workerUrl(0, url);
    await sqlOn(
      worker,
      `DO $$ DECLARE f regprocedure; BEGIN
         FOR f IN SELECT oid FROM pg_proc WHERE proname = ANY ('{${NODE_COMMAND_FUNCTIONS.join(',')}}') LOOP EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f); END LOOP;
       END $$`,
    );
    const [{ port } = {}] = await sqlOn(worker, 'SELECT inet_server_port() AS port');
    const again = await connectInProcess({ extensionDirs: [notes], databaseUrl: url, disabledExtensions: ['codebase'] });
    try {
      const refused = await callTool(again.client, again.tools, 'query', {
        project_id: 'alpha',
        sql: "SELECT (SELECT count(*) FROM run_command_on_coordinator($$SELECT pg_catalog.lo_from_bytea(0, 'alpha secret')$$)) FROM notes WHERE id = 1",
      });
      expect(refused.isError, refused.text).toBe(true);
      expect(refused.text).toContain(`on worker `);
      expect(refused.text).toContain(`:${String(port)}`);
      expect(refused.text).toContain('REVOKE EXECUTE ON FUNCTION run_command_on_coordinator(text,boolean) FROM PUBLIC;');
      for (const node of nodes) expect(await sqlOn(node, 'SELECT count(*)::int AS n FROM pg_largeobject_metadata')).toEqual([{ n: 0 }]);
    } finally {
      await again.close();
    }
  }, 120_000);

  it("a workspace's function run on its worker leaves nothing there for another workspace to read: no large object, no statistics", async (ctx) => {
    // Red team round 4: a router query runs whole on the workspace's worker, where the sandbox's
    // checks do not look; alpha's function made a large object there and granted it, and its
    // shard, to PUBLIC, and beta's function on the same worker read the large object's text and
    // the shard's most common values in pg_stats.
    const c = cluster(ctx);
    const url = await c.createDatabase('worker_lo');
    const workers = [c.workerUrl(0, url), c.workerUrl(1, url)];
    const table = 'CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, body text);';
    const notes = await writeExtension(await tempDir(), { id: 'notes' }, { 'workspace/schema.sql': table });
    const LEAK = `CREATE FUNCTION leak() RETURNS oid LANGUAGE plpgsql AS $f$ DECLARE lo oid; BEGIN
        lo := pg_catalog.lo_from_bytea(0, 'alpha secret'::bytea);
        EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO PUBLIC', lo);
        RETURN lo; END $f$`;
    const READ = "CREATE FUNCTION readlo() RETURNS text LANGUAGE sql AS $f$ SELECT string_agg(convert_from(pg_catalog.lo_get(m.oid), 'UTF8'), ',') FROM pg_catalog.pg_largeobject_metadata m $f$";
    const PEEK = "CREATE FUNCTION peek() RETURNS text LANGUAGE sql AS $f$ SELECT string_agg(most_common_vals::text, ';') FROM pg_catalog.pg_stats WHERE schemaname = 'project_alpha' $f$";
    await sqlOn(workers[1] as string, 'GRANT EXECUTE ON FUNCTION lo_from_bytea(oid, bytea) TO PUBLIC; GRANT SELECT ON pg_stats TO PUBLIC');
    const open = await connectInProcess({ extensionDirs: [notes], databaseUrl: url, disabledExtensions: ['codebase'] });
    try {
      const refused = await callTool(open.client, open.tools, 'execute', { project_id: 'alpha', sql: LEAK });
      expect(refused.isError, refused.text).toBe(true);
      expect(refused.text).toContain('REVOKE EXECUTE ON FUNCTION lo_from_bytea(oid,bytea) FROM PUBLIC;');
      expect(refused.text).toContain('REVOKE SELECT ON pg_catalog.pg_stats FROM PUBLIC;');
      expect(refused.text).toMatch(/on worker [^ ]+:\d+/);
    } finally {
      await open.close();
    }
    await sqlOn(workers[1] as string, 'REVOKE EXECUTE ON FUNCTION lo_from_bytea(oid, bytea) FROM PUBLIC; REVOKE SELECT ON pg_stats FROM PUBLIC');
    const mcp = await connectInProcess({ extensionDirs: [notes], databaseUrl: url, disabledExtensions: ['codebase'] });
    const call = (id: string, tool: string, sql: string) => callTool(mcp.client, mcp.tools, tool, { project_id: id, sql });
    try {
      await call('alpha', 'execute', "INSERT INTO notes SELECT g, 'secret-' || (g % 3) FROM generate_series(1, 300) g");
      const [shard] = await sqlOn(url, "SELECT shard_name FROM citus_shards WHERE table_name = 'project_alpha.notes'::regclass");
      const SHARE = `CREATE FUNCTION share() RETURNS text LANGUAGE plpgsql AS $f$ BEGIN
          EXECUTE 'GRANT SELECT ON ${String(shard?.['shard_name'])} TO PUBLIC'; EXECUTE 'ANALYZE ${String(shard?.['shard_name'])}'; RETURN 'shared'; END $f$`;
      for (const [id, sql] of [['alpha', LEAK], ['alpha', SHARE], ['beta', "INSERT INTO notes VALUES (1, 'b')"], ['beta', READ], ['beta', PEEK]] as const) {
        const done = await call(id, 'execute', sql);
        expect(done.isError, `${sql}: ${done.text}`).toBe(false);
      }
      const leaked = await call('alpha', 'execute', 'SELECT leak() FROM notes WHERE id = 1');
      expect(leaked.isError, leaked.text).toBe(true);
      expect(leaked.text).toMatch(/permission denied for function lo_from_bytea/);
      for (const worker of workers) expect(await sqlOn(worker, 'SELECT count(*)::int AS n FROM pg_largeobject_metadata')).toEqual([{ n: 0 }]);
      const read = await call('beta', 'query', 'SELECT readlo() FROM notes WHERE id = 1');
      expect(read.data?.['rows'], read.text).toEqual([[null]]);
      // The grant on the shard goes through there, but what it would show is no longer PUBLIC's to read.
      const shared = await call('alpha', 'execute', 'SELECT share() FROM notes WHERE id = 1');
      expect(shared.isError, shared.text).toBe(false);
      const peek = await call('beta', 'query', 'SELECT peek() FROM notes WHERE id = 1');
      expect(peek.isError, peek.text).toBe(true);
      expect(peek.text).toMatch(/permission denied for view pg_stats/);
    } finally {
      await mcp.close();
    }
  }, 120_000);

  it("a workspace dropped and made again under its id reads none of the first one's large objects (its role is kept on Citus)", async (ctx) => {
    // Red team round 4: drop_workspace keeps the role on Citus, and its large objects (which belong
    // to no schema) stayed with it; the next workspace of that id, on the same role, read them.
    const url = await cluster(ctx).createDatabase('kept_role');
    const mcp = await connectInProcess({ extensionDirs: [], databaseUrl: url, disabledExtensions: ['codebase'] });
    const call = async (name: string, args: Record<string, unknown>) => {
      const done = await callTool(mcp.client, mcp.tools, name, args);
      expect(done.isError, `${name}: ${done.text}`).toBe(false);
      return done;
    };
    try {
      await call('execute', { project_id: 'alpha', sql: "SELECT pg_catalog.lo_from_bytea(0, 'first life')" });
      expect((await call('drop_workspace', { project_id: 'alpha', confirm: 'alpha' })).data).toMatchObject({ dropped: true });
      const read = await call('query', { project_id: 'alpha', sql: "SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata" });
      expect(read.data['rows']).toEqual([]);
      expect(await sqlOn(url, 'SELECT count(*)::int AS n FROM pg_largeobject_metadata')).toEqual([{ n: 0 }]);
    } finally {
      await mcp.close();
    }
  }, 120_000);

  it('a workspace moved to another worker by a superuser runs none of its code as that superuser: no own or VOLATILE function in a CHECK, a domain or a generated column', async (ctx) => {
    // Red team round 4: only a superuser may move a workspace (the schema is the server's, its
    // tables the workspace role's), and the move's COPY evaluated the agent's CHECK as postgres.
    const c = cluster(ctx);
    const url = await c.createDatabase('moved_code');
    const table = 'CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, body text);';
    const notes = await writeExtension(await tempDir(), { id: 'notes' }, { 'workspace/schema.sql': table });
    const mcp = await connectInProcess({ extensionDirs: [notes], databaseUrl: url, disabledExtensions: ['codebase'] });
    const run = (sql: string) => callTool(mcp.client, mcp.tools, 'execute', { project_id: 'alpha', sql });
    try {
      for (const sql of [
        "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 20) g",
        `CREATE FUNCTION spy(b text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $f$ BEGIN
           IF current_user::text NOT LIKE 'pgw%' THEN RAISE EXCEPTION 'ran as %', current_user; END IF; RETURN true; END $f$`,
        // Allowed: built-in IMMUTABLE and STABLE functions and operators.
        'ALTER TABLE notes ADD CONSTRAINT sane CHECK (length(body) > 0 AND id < 1000000)',
        'ALTER TABLE notes ADD COLUMN at timestamptz DEFAULT now()',
        "ALTER TABLE notes ADD CONSTRAINT recent CHECK (at <= now() + interval '1 day')",
        "ALTER TABLE notes ADD COLUMN words tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED",
      ]) {
        const done = await run(sql);
        expect(done.isError, `${sql}: ${done.text}`).toBe(false);
      }
      for (const sql of [
        'ALTER TABLE notes ADD CONSTRAINT spied CHECK (spy(body))',
        "ALTER TABLE notes ADD CONSTRAINT spied CHECK (current_user::text LIKE 'pgw%' OR query_to_xml('SELECT 1', true, true, '') IS NOT NULL)",
        'CREATE DOMAIN watched AS text CHECK (spy(VALUE))',
        'ALTER TABLE notes ADD COLUMN seen boolean GENERATED ALWAYS AS (spy(body)) STORED',
      ]) {
        const refused = await run(sql);
        expect(refused.isError, `${sql}: ${refused.text}`).toBe(true);
        expect(refused.text).toContain('not allowed in CHECK constraints, domain checks and generated columns');
      }
      const [where] = await sqlOn(url, "SELECT nodeport FROM citus_shards WHERE table_name = 'project_alpha.notes'::regclass");
      const [to] = await sqlOn(url, 'SELECT nodename, nodeport FROM pg_dist_node WHERE groupid > 0 AND nodeport <> $1', [where?.['nodeport']]);
      await sqlOn(url, "SELECT citus_schema_move('project_alpha', $1, $2, 'block_writes')", [to?.['nodename'], to?.['nodeport']]);
      const moved = await callTool(mcp.client, mcp.tools, 'query', { project_id: 'alpha', sql: 'SELECT count(*) FROM notes' });
      expect(moved.data?.['rows'], moved.text).toEqual([['20']]);
    } finally {
      await mcp.close();
    }
  }, 120_000);
});
