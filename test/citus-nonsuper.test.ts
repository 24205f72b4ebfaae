import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCitusCluster, sqlOn, type CitusCluster } from '../harness/citus-cluster.js';
import { repair } from '../src/operations/repair.js';
import { prepareForkOnCitus } from '../src/workspaces/workspace-snapshots.js';
import { startEmbeddingStub, type EmbeddingStub } from './support/embedding-stub.js';
import { planFor, tempDir, writeExtension } from './support/fixtures.js';
import { callTool, connectInProcess, embeddingsAt } from './support/mcp.js';
import { MAIN } from './support/server-process.js';

const run = promisify(execFile);

/*
 * The other Citus suites run the server as the cluster's superuser. Here it runs as production
 * would run it (docs/citus.md, "The server's role"): a LOGIN CREATEROLE role that is no
 * superuser, made on the coordinator with CREATE on the database. Every path that needs the
 * server a member of a workspace or snapshot role for a moment (src/db/role-membership.ts) runs
 * once, and afterwards the server is a member of none, on the coordinator nor on the workers.
 */

let citus: CitusCluster | null = null;
let stub: EmbeddingStub;
beforeAll(async () => {
  citus = await startCitusCluster({ workers: 2 });
  stub = await startEmbeddingStub();
}, 180_000);
afterAll(async () => {
  await citus?.destroy();
  await stub?.close();
});

const SERVER_ROLE = 'mcp_citus_app';

describe('Citus with the server as a CREATEROLE role that is no superuser', () => {
  it('provisions, runs agent SQL, snapshots, restores, forks, undoes a stopped reading, defers an index, drops, upgrades, repairs; a member of no workspace role after', async (ctx) => {
    if (!citus) return ctx.skip();
    const c = citus;
    const admin = await c.createDatabase('nonsuper');
    // An extension that needs a superuser is made once by an admin (docs/isolation.md); Citus makes it on the workers.
    await sqlOn(admin, 'CREATE EXTENSION vector');
    const url = await c.serverRole(admin, SERVER_ROLE);
    const nodes = [admin, c.workerUrl(0, admin), c.workerUrl(1, admin)];
    for (const node of nodes) {
      expect(await sqlOn(node, `SELECT rolsuper, rolcreaterole, has_database_privilege(rolname, current_database(), 'CREATE') AS can_create FROM pg_roles WHERE rolname = $1`, [SERVER_ROLE])).toEqual([
        { rolsuper: false, rolcreaterole: true, can_create: true },
      ]);
    }
    const members = `SELECT coalesce(string_agg(r.rolname, ',' ORDER BY r.rolname), '') AS roles FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
                      WHERE m.member = '${SERVER_ROLE}'::regrole AND r.rolname LIKE 'pgw\\_%'`;
    const memberships = async () => Promise.all(nodes.map(async (node) => (await sqlOn(node, members))[0]?.['roles']));

    const table = 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);';
    const notes = await writeExtension(await tempDir(), { id: 'notes' }, { 'workspace/schema.sql': table });
    const mcp = await connectInProcess({ extensionDirs: [notes], databaseUrl: url, embeddings: embeddingsAt(stub.openaiUrl) });
    try {
      const { db, sandbox, report } = await mcp.engine.ready(120_000);
      expect((await db.query<{ user: string }>('SELECT current_user AS user'))[0]?.user).toBe(SERVER_ROLE);
      const call = async (name: string, args: Record<string, unknown>) => {
        const result = await callTool(mcp.client, mcp.tools, name, args);
        expect(result.isError, `${name}: ${result.text}`).toBe(false);
        return result;
      };
      const rows = async (id: string, sql: string) => (await call('query', { project_id: id, sql })).data['rows'];
      const hnsw = async () => sqlOn(admin, "SELECT indexrelid::regclass::text AS name, indexrelid::int AS oid FROM pg_index WHERE indrelid = 'project_alpha.chunks'::regclass AND pg_get_indexdef(indexrelid) LIKE '%USING hnsw%'");
      let hnswBefore: Record<string, unknown>[] = [];
      const steps: Array<[string, () => Promise<unknown>]> = [
        ['a first SQL call (role, objects handed over, sandbox)', () => call('execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('one')" })],
        ['an agent table, distributed', () => call('execute', { project_id: 'alpha', sql: 'CREATE TABLE extra (id int PRIMARY KEY, note text)' })],
        ['a SECURITY DEFINER routine', () => call('execute', { project_id: 'alpha', sql: 'CREATE FUNCTION power() RETURNS int LANGUAGE sql SECURITY DEFINER AS $f$ SELECT 1 $f$' })],
        ['VACUUM as the workspace role', () => call('execute', { project_id: 'alpha', sql: 'VACUUM (ANALYZE) notes, extra' })],
        ['a snapshot (copied by a copier, handed to the snapshot role)', () => call('snapshot_workspace', { project_id: 'alpha', label: 'one' })],
        ['a change after it', () => call('execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('two')" })],
        ['a restore (both ways)', () => call('restore_workspace', { project_id: 'alpha', snapshot: 1, confirm: 'alpha' })],
        ['a fork of the current state', () => call('fork_workspace', { from: 'alpha', to: 'beta' })],
        ['a fork of a snapshot (read through a reader)', () => call('fork_workspace', { from: 'alpha', to: 'gamma', snapshot: 2 })],
        [
          "a fork of a snapshot stopped after its first step, undone by the workspace's next snapshot once its lease ran out",
          async () => {
            const request = { from: 'alpha', to: 'delta', fromSchema: 'project_alpha', toSchema: 'project_delta', snapshot: 2 };
            await db.transaction((tx) => prepareForkOnCitus(tx, request, report.searchPathSchemas, 10_000, sandbox));
            await sqlOn(admin, "UPDATE project_registry.snapshot_readings SET lease_until = now() - interval '1 second'");
            await sqlOn(admin, 'DROP SCHEMA project_delta CASCADE');
            await call('snapshot_workspace', { project_id: 'alpha' });
          },
        ],
        ['documents added in a load whose HNSW index is deferred (dropped and made again)', async () => {
          hnswBefore = await hnsw();
          await call('add_documents', {
            project_id: 'alpha',
            chunk_size: 100,
            chunk_overlap: 0,
            documents: Array.from({ length: 25 }, (_, i) => ({
              source: `doc-${i}.md`,
              text: [0, 1, 2].map((p) => `doc ${i} part ${p}: the lighthouse keeper's note ${i * 7 + p}, written out at some length.`).join('\n\n'),
            })),
          });
        }],
        ['a snapshot dropped', () => call('drop_snapshot', { project_id: 'alpha', snapshot: 3 })],
        ['a workspace dropped', () => call('drop_workspace', { project_id: 'beta', confirm: 'beta' })],
      ];
      for (const [what, step] of steps) {
        await step();
        expect(await memberships(), `after ${what}`).toEqual(['', '', '']);
      }

      expect(await rows('alpha', 'SELECT body FROM notes ORDER BY id')).toEqual([['one']]);
      expect(await rows('gamma', 'SELECT body FROM notes ORDER BY id')).toEqual([['one'], ['two']]);
      expect(await rows('gamma', 'SELECT power()')).toEqual([[1]]);
      // The stopped reading was undone: its reader gone, the snapshot's routine DEFINER again.
      expect(await sqlOn(admin, 'SELECT reader FROM project_registry.snapshot_readings')).toEqual([]);
      expect(await sqlOn(admin, "SELECT rolname FROM pg_roles WHERE rolname LIKE '%\\_\\_reader%' OR rolname LIKE '%\\_\\_copy\\_%'")).toEqual([]);
      expect(await sqlOn(admin, "SELECT pronamespace::regnamespace::text AS schema FROM pg_proc WHERE proname = 'power' AND pronamespace::regnamespace::text LIKE 'project\\_%' AND NOT prosecdef")).toEqual([]);
      // The deferred index is back (made again: a new OID), and the registry keeps no deferral.
      const hnswAfter = await hnsw();
      expect(hnswBefore).toHaveLength(1);
      expect(hnswAfter.map((i) => i['name'])).toEqual(hnswBefore.map((i) => i['name']));
      expect(hnswAfter[0]?.['oid']).not.toBe(hnswBefore[0]?.['oid']);
      expect(await sqlOn(admin, 'SELECT index_name FROM project_registry.deferred_indexes')).toEqual([]);
      const found = await call('search', { project_id: 'alpha', query: 'lighthouse keeper note', mode: 'vector', k: 1 });
      expect(JSON.stringify(found.data['results'])).toContain('lighthouse keeper');
      // Every workspace, snapshot and agent table is distributed; beta and its shards are gone.
      expect(
        await sqlOn(admin, `SELECT n.nspname FROM pg_namespace n LEFT JOIN pg_dist_schema d ON d.schemaid = n.oid
                             WHERE n.nspname LIKE 'project\\_%' AND n.nspname !~ '^project_registry' AND d.schemaid IS NULL`),
      ).toEqual([]);
      expect(await sqlOn(admin, "SELECT count(*)::int AS n FROM citus_shards WHERE table_name::text LIKE 'project_beta.%'")).toEqual([{ n: 0 }]);
      expect(await sqlOn(admin, "SELECT count(*)::int AS n FROM citus_shards WHERE table_name = 'project_alpha.extra'::regclass")).toEqual([{ n: 1 }]);
    } finally {
      await mcp.close();
    }

    // A newer server upgrades a workspace holding agent code: the migration runs in its sandbox, as its role.
    const v2 = await writeExtension(await tempDir(), { id: 'notes' }, {
      'workspace/schema.sql': table,
      'workspace/migrations/0001_tags.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS tags text[];\nUPDATE notes SET tags = ARRAY[current_user::text];',
    });
    const upgraded = await connectInProcess({ extensionDirs: [v2], databaseUrl: url, embeddings: embeddingsAt(stub.openaiUrl) });
    try {
      const ensured = await callTool(upgraded.client, upgraded.tools, 'ensure_workspace', { project_id: 'gamma' });
      expect(ensured.isError, ensured.text).toBe(false);
      expect(await sqlOn(admin, 'SELECT DISTINCT tags[1] AS who FROM project_gamma.notes')).toEqual([{ who: expect.stringMatching(/^pgw_\w+_gamma$/) }]);
      expect(await memberships()).toEqual(['', '', '']);

      // A workspace whose schema was dropped by hand, its snapshot left: repair --forget-missing drops the snapshot and forgets it.
      await callTool(upgraded.client, upgraded.tools, 'snapshot_workspace', { project_id: 'gamma' });
      await sqlOn(admin, 'DROP SCHEMA project_gamma CASCADE');
      const { db } = await upgraded.engine.ready(120_000);
      const options = { adoptOrphans: false, forgetMissing: true, restoreIndexes: false, acceptMigrations: [], dryRun: false };
      const actions = await repair(db, await planFor([v2]), options);
      expect(actions).toContainEqual(expect.objectContaining({ fix: 'forget-missing', subject: 'gamma', outcome: 'changed' }));
      expect(await sqlOn(admin, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'project\\_gamma%'")).toEqual([]);
      expect(await memberships()).toEqual(['', '', '']);

      // A workspace schema dropped by hand (its role remains) is made again, distributed, and its role works there.
      await sqlOn(admin, 'DROP SCHEMA project_alpha CASCADE');
      const again = await callTool(upgraded.client, upgraded.tools, 'execute', { project_id: 'alpha', sql: "INSERT INTO notes (body, tags) VALUES ('again', '{x}') RETURNING body" });
      expect(again.isError, again.text).toBe(false);
      expect(await sqlOn(admin, "SELECT count(*)::int AS n FROM pg_dist_schema WHERE schemaid = 'project_alpha'::regnamespace")).toEqual([{ n: 1 }]);
      expect(await memberships()).toEqual(['', '', '']);
    } finally {
      await upgraded.close();
    }

    // migrate-workspaces, as the operator runs it with the server's DATABASE_URL.
    const v3 = await writeExtension(await tempDir(), { id: 'notes' }, {
      'workspace/schema.sql': table,
      'workspace/migrations/0001_tags.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS tags text[];\nUPDATE notes SET tags = ARRAY[current_user::text];',
      'workspace/migrations/0002_score.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS score int;\nCREATE INDEX IF NOT EXISTS notes_score_idx ON notes (score);',
    });
    const migrated = await run(process.execPath, [MAIN, 'migrate-workspaces', '--extensions', v3], { env: { ...process.env, DATABASE_URL: url } }).catch(
      (error: { stdout: string; stderr: string }) => error,
    );
    expect(migrated.stdout, migrated.stderr).toMatch(/^Upgraded 1, skipped 0 \(already current or gone\), failed 0 of 1/);
    expect(await sqlOn(admin, "SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = 'project_alpha' AND indexname = 'notes_score_idx'")).toEqual([{ n: 1 }]);
    expect(await memberships()).toEqual(['', '', '']);
  }, 600_000);

  it('three servers booting at once provision shared and own ids; a workspace an operator moved keeps working', async (ctx) => {
    if (!citus) return ctx.skip();
    const c = citus;
    const admin = await c.createDatabase('nonsuper_boot');
    const url = await c.serverRole(admin, 'mcp_citus_boot');
    const notes = await writeExtension(await tempDir(), { id: 'notes' }, { 'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY);' });
    const servers = await Promise.all([0, 1, 2].map(() => connectInProcess({ extensionDirs: [notes], databaseUrl: url, disabledExtensions: ['codebase'] })));
    try {
      const call = (n: number, name: string, args: Record<string, unknown>) => callTool(servers[n]!.client, servers[n]!.tools, name, args);
      const results = await Promise.all(
        [0, 1, 2].flatMap((n) => [
          call(n, 'execute', { project_id: 'shared', sql: `CREATE TABLE IF NOT EXISTS t${n} (id int PRIMARY KEY)` }),
          call(n, 'execute', { project_id: `own-${n}`, sql: 'CREATE TABLE mine (id int PRIMARY KEY)' }),
        ]),
      );
      expect(results.filter((r) => r.isError).map((r) => r.text)).toEqual([]);
      const schema = 'project_shared';
      expect(await sqlOn(admin, `SELECT count(*)::int AS n FROM pg_dist_partition WHERE logicalrelid::text LIKE '${schema}.t%'`)).toEqual([{ n: 3 }]);
      // An operator (a superuser: Citus asks to own every table it moves) moves it to the other worker.
      const [before] = await sqlOn(admin, `SELECT nodeport FROM citus_shards WHERE table_name = '${schema}.t0'::regclass`);
      const target = c.workers.find((w) => w.port !== Number(before?.['nodeport']));
      await sqlOn(admin, `SELECT citus_schema_move($1::regnamespace, $2::text, $3::int, 'block_writes')`, [schema, target?.host, target?.port]);
      for (const n of [0, 1, 2]) {
        const wrote = await call(n, 'execute', { project_id: 'shared', sql: `INSERT INTO t${n} VALUES (${n}) RETURNING id` });
        expect(wrote.isError, wrote.text).toBe(false);
      }
      expect(await sqlOn(admin, `SELECT DISTINCT nodeport FROM citus_shards WHERE table_name::text LIKE '${schema}.%'`)).toEqual([{ nodeport: target?.port }]);
      const members = `SELECT count(*)::int AS n FROM pg_auth_members WHERE member = 'mcp_citus_boot'::regrole`;
      for (const node of [admin, c.workerUrl(0, admin), c.workerUrl(1, admin)]) expect(await sqlOn(node, members)).toEqual([{ n: 0 }]);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  }, 600_000);

  it("an agent's first table in a workspace whose extensions make none joins its colocation group (an anchor made and dropped as the workspace role)", async (ctx) => {
    if (!citus) return ctx.skip();
    const admin = await citus.createDatabase('nonsuper_bare');
    const server = 'mcp_citus_bare';
    const url = await citus.serverRole(admin, server);
    const mcp = await connectInProcess({ extensionDirs: [], databaseUrl: url, disabledExtensions: ['codebase'] });
    try {
      for (const sql of ['CREATE TABLE kinds (id int PRIMARY KEY)', 'CREATE TABLE items (id int PRIMARY KEY, kind int REFERENCES kinds)']) {
        const done = await callTool(mcp.client, mcp.tools, 'execute', { project_id: 'bare', sql });
        expect(done.isError, `${sql}: ${done.text}`).toBe(false);
      }
      expect(
        await sqlOn(
          admin,
          `SELECT c.relname::text AS name, p.colocationid IS NOT DISTINCT FROM d.colocationid AS colocated
             FROM pg_class c JOIN pg_dist_schema d ON d.schemaid = c.relnamespace LEFT JOIN pg_dist_partition p ON p.logicalrelid = c.oid
            WHERE c.relnamespace = 'project_bare'::regnamespace AND c.relkind = 'r' ORDER BY 1`,
        ),
      ).toEqual(['items', 'kinds'].map((name) => ({ name, colocated: true })));
      const members = await sqlOn(admin, `SELECT count(*)::int AS n FROM pg_auth_members WHERE member = '${server}'::regrole AND roleid::regrole::text LIKE 'pgw\\_%'`);
      expect(members).toEqual([{ n: 0 }]);
    } finally {
      await mcp.close();
    }
  }, 300_000);
});
