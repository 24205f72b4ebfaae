import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import type { Database, Queryable } from '../src/db/database.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { dbUrlOf } from '../src/db/embedded/shared-store.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { diagnose } from '../src/operations/doctor.js';
import { repair } from '../src/operations/repair.js';
import { WORKSPACE_LOCK_CLASS, WorkspaceLockTimeoutError } from '../src/registry/workspace-lock.js';
import { roleNameFor, SANDBOX_SCHEMA } from '../src/sandbox/sandbox-ddl.js';
import { WorkspaceNotFoundError } from '../src/workspaces/workspace-errors.js';
import { install, pgliteBackend, planFor, postgresBackend, tempDir, writeExtension, type Backend } from './support/fixtures.js';
import { callTool, connectInProcess } from './support/mcp.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { runCli, startServerProcess } from './support/server-process.js';

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 60_000);
afterAll(async () => cluster?.destroy());

const NOTES = {
  'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);',
  'workspace/migrations/0001_tags.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS tags text[];',
};
let notesDir: string;
let plan: InstallPlan;
beforeAll(async () => {
  notesDir = await writeExtension(await tempDir(), { id: 'notes' }, NOTES);
  plan = await planFor([notesDir], ['codebase']);
});

/** A server's services on `db` (installing first): its own caches, as a separate process has. */
async function services(db: Database, options: { lockTimeoutMs?: number } = {}) {
  const report = await install(db, plan);
  const { workspaces: manager, sandbox: sql } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, silentLogger, options);
  return { manager, sql };
}

/** Everything of a workspace that exists, read in one statement. */
async function traces(q: Queryable, projectId: string) {
  const [{ database } = { database: '' }] = await q.query<{ database: string }>('SELECT current_database()::text AS database');
  const schema = `project_${projectId.replaceAll('-', '_')}`;
  const [row] = await q.query<{ schema: boolean; registered: boolean; ledger: number; role: boolean; sandbox: boolean }>(
    `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1) AS schema,
            EXISTS (SELECT FROM project_registry.workspace_config WHERE project_id = $2) AS registered,
            (SELECT count(*)::int FROM project_registry.workspace_migrations WHERE project_id = $2) AS ledger,
            EXISTS (SELECT FROM pg_roles WHERE rolname = $3) AS role,
            EXISTS (SELECT FROM pg_proc WHERE pronamespace = to_regnamespace($4) AND proname = $1) AS sandbox`,
    [schema, projectId, roleNameFor(database, projectId), SANDBOX_SCHEMA],
  );
  return row;
}

const NONE = { schema: false, registered: false, ledger: 0, role: false, sandbox: false };
const generation = async (q: Queryable) =>
  Number((await q.query<{ g: string }>('SELECT coalesce((SELECT generation FROM project_registry.registry_generation), 0)::text AS g'))[0]?.g);

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`workspace lifecycle on ${kind}`, () => {
    let backend: Backend | undefined;
    beforeAll(async () => {
      if (kind === 'pglite') backend = await pgliteBackend();
      else if (cluster) backend = postgresBackend(cluster);
    }, 60_000);
    afterAll(async () => backend?.cleanup());

    /** Two "servers" on one database: separate connections (a second pool) on PostgreSQL, one PGlite in-process. */
    async function twoServers(): Promise<{ db: Database; other: Database; close(): Promise<void> }> {
      const b = backend as Backend;
      if (kind === 'pglite') {
        const db = await b.fresh();
        return { db, other: db, close: async () => undefined };
      }
      const url = (await b.freshUrl?.()) as string;
      const db = new PostgresDatabase({ connectionString: url });
      const other = new PostgresDatabase({ connectionString: url });
      return { db, other, close: async () => void (await Promise.all([db.close(), other.close()])) };
    }

    it('drops schema, data, registry and ledger rows, sandbox function and role in one go; an unknown id is "not found"', async (ctx) => {
      if (!backend) ctx.skip();
      const db = await (backend as Backend).fresh();
      const { manager, sql } = await services(db);
      await manager.ensure('ws-a');
      await manager.ensure('ws-keep');
      await sql.execute('ws-a', "INSERT INTO notes (body) VALUES ('gone soon')", []);
      expect(await traces(db, 'ws-a')).toEqual({ schema: true, registered: true, ledger: 1, role: true, sandbox: true });
      const before = await generation(db);

      const outcome = await manager.drop('ws-a');
      expect(outcome).toMatchObject({ projectId: 'ws-a', schemaName: 'project_ws_a', dropped: true });
      expect(outcome.changes.join('\n')).toMatch(/dropped schema project_ws_a[^]*deleted 1 registry row and 1 ledger row[^]*dropped its role pgw_/);
      expect(await traces(db, 'ws-a')).toEqual(NONE);
      expect(await generation(db)).toBe(before + 1);
      // The other workspace is untouched.
      expect(await traces(db, 'ws-keep')).toMatchObject({ schema: true, registered: true, ledger: 1 });

      // Doctor agrees: nothing lost, orphaned or left over (no orphan role, no lost schema).
      expect((await diagnose(db, plan)).findings.filter((f) => f.severity !== 'info')).toEqual([]);

      // Again: nothing left, nothing changed, nothing bumped.
      expect(await manager.drop('ws-a')).toEqual({ projectId: 'ws-a', schemaName: 'project_ws_a', dropped: false, changes: [] });
      expect(await manager.drop('never-made')).toMatchObject({ dropped: false });
      expect(await generation(db)).toBe(before + 1);
      // Reserved ids are refused before any SQL: `registry` would name the registry's own schema.
      await expect(manager.drop('registry')).rejects.toThrow(/reserved|project_registry/);

      // In this process the cache forgot it at once: ensure makes a new, empty workspace, and the SQL tools serve it.
      expect(await manager.ensure('ws-a')).toMatchObject({ created: true });
      expect((await sql.query('ws-a', 'SELECT count(*) AS n FROM notes', [])).rows).toEqual([['0']]);
    });

    it('a server that cached a workspace re-creates it after another server dropped it, and its other tools do not serve it from cache', async (ctx) => {
      if (!backend) ctx.skip();
      const { db, other, close } = await twoServers();
      try {
        const a = await services(db);
        const b = await services(other);
        expect(await a.manager.ensure('ws-shared')).toMatchObject({ created: true });
        await a.sql.execute('ws-shared', "INSERT INTO notes (body) VALUES ('old')", []);
        // Both have it cached (a hit now sends one read of the generation, nothing else).
        expect(await a.manager.ensure('ws-shared')).toMatchObject({ created: false });
        expect(await b.manager.ensure('ws-shared')).toMatchObject({ created: false });

        expect(await b.manager.drop('ws-shared')).toMatchObject({ dropped: true });
        // Committed in B: A's catalog tools say so, and A's next ensure re-creates instead of answering from its cache.
        await expect(a.manager.describe('ws-shared')).rejects.toThrow(WorkspaceNotFoundError);
        await expect(a.manager.validateColumns({ projectId: 'ws-shared', table: 'notes', columns: ['body'] })).rejects.toThrow(WorkspaceNotFoundError);
        expect(await a.manager.ensure('ws-shared')).toMatchObject({ created: true });
        expect(await traces(db, 'ws-shared')).toMatchObject({ schema: true, registered: true, ledger: 1 });
        // A's SQL tools had the workspace's sandbox cached: they make it again on the new workspace, whose data is new.
        expect((await a.sql.query('ws-shared', 'SELECT count(*) AS n FROM notes', [])).rows).toEqual([['0']]);

        // Dropped again in B, then A's SQL tools are the first to ask: they re-create it too (as on first use).
        expect(await b.manager.drop('ws-shared')).toMatchObject({ dropped: true });
        expect((await a.sql.execute('ws-shared', "INSERT INTO notes (body) VALUES ('new')", [])).affected).toBe(1);
        expect(await traces(db, 'ws-shared')).toEqual({ schema: true, registered: true, ledger: 1, role: true, sandbox: true });
        // B re-reads as well: its own drop cleared its cache, A's re-creation is found.
        expect(await b.manager.ensure('ws-shared')).toMatchObject({ created: false });
      } finally {
        await close();
      }
    });

    it('repair --forget-missing bumps the generation too: a server that cached the lost workspace re-creates it', async (ctx) => {
      if (!backend) ctx.skip();
      const { db, other, close } = await twoServers();
      try {
        const a = await services(db);
        await a.manager.ensure('ws-lost');
        await other.exec('DROP SCHEMA project_ws_lost CASCADE');
        const before = await generation(other);
        const actions = await repair(other, plan, { adoptOrphans: false, forgetMissing: true, restoreIndexes: false, acceptMigrations: [], dryRun: false });
        expect(actions).toMatchObject([{ fix: 'forget-missing', subject: 'ws-lost', outcome: 'changed' }]);
        expect(await generation(other)).toBe(before + 1);
        expect(await a.manager.ensure('ws-lost')).toMatchObject({ created: true });
        expect(await traces(db, 'ws-lost')).toMatchObject({ schema: true, registered: true, ledger: 1 });
      } finally {
        await close();
      }
    });

    it('drop racing ensure on the same id from two servers: each round one wins cleanly, and the workspace is whole or entirely gone', async (ctx) => {
      if (!backend) ctx.skip();
      const { db, other, close } = await twoServers();
      try {
        const a = await services(db);
        const b = await services(other);
        const rounds = kind === 'postgres' ? 12 : 6;
        for (let round = 0; round < rounds; round++) {
          // The workspace exists, with data and its role, and A has it cached.
          await a.manager.ensure('ws-race');
          await a.sql.execute('ws-race', "INSERT INTO notes (body) VALUES ('x')", []);
          // A's ensure starts first on even rounds, B's drop on odd ones.
          const [ensured, dropped] =
            round % 2 === 0
              ? await Promise.all([a.manager.ensure('ws-race'), b.manager.drop('ws-race')])
              : await Promise.all([b.manager.drop('ws-race'), a.manager.ensure('ws-race')]).then(([d, e]) => [e, d] as const);
          // The drop always finds the workspace (it existed when the round began) and drops it whole.
          expect(dropped.dropped).toBe(true);
          // Ensure after the drop re-created it (created: true, whole); ensure before it saw it there, and the drop removed all.
          const t = await traces(db, 'ws-race');
          if (ensured.created) expect(t).toMatchObject({ schema: true, registered: true, ledger: 1 });
          else expect(t).toEqual(NONE);
          // Whoever won, the next ensure in A finds or makes the workspace whole.
          await a.manager.ensure('ws-race');
          expect(await traces(db, 'ws-race')).toMatchObject({ schema: true, registered: true, ledger: 1 });
        }
        // Nothing half-made was left anywhere, whatever the interleaving.
        const [orphans] = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_namespace n WHERE nspname LIKE 'project\\_%' AND nspname !~ '^project_registry(_|$)'
              AND NOT EXISTS (SELECT FROM project_registry.workspace_config w WHERE w.schema_name = n.nspname)`,
        );
        expect(orphans?.n).toBe(0);
      } finally {
        await close();
      }
    });

    it('renames a workspace with its data, role and SQL sandbox; refuses a taken or missing id and changes nothing then', async (ctx) => {
      if (!backend) ctx.skip();
      const { db, other, close } = await twoServers();
      try {
        const a = await services(db);
        const b = await services(other);
        await a.manager.ensure('ws-old');
        await a.manager.ensure('ws-taken');
        await a.sql.execute('ws-old', "INSERT INTO notes (body, tags) VALUES ('kept', '{a}')", []);
        await a.sql.execute('ws-old', 'CREATE TABLE agent_notes (n int)', []);
        const before = await generation(db);

        const changes = await b.manager.rename('ws-old', 'ws-new');
        expect(changes).toEqual([
          'renamed schema project_ws_old to project_ws_new',
          'moved 1 registry row and 1 ledger row(s) to "ws-new"',
          expect.stringMatching(/^renamed its role pgw_\w+_ws_old to pgw_\w+_ws_new and made its SQL sandbox anew$/),
        ]);
        expect(await generation(db)).toBe(before + 1);
        expect(await traces(db, 'ws-old')).toEqual(NONE);
        expect(await traces(db, 'ws-new')).toEqual({ schema: true, registered: true, ledger: 1, role: true, sandbox: true });
        // The data came along, the SQL tools work as the renamed role (owning the agent's table), and the workspace is current.
        expect((await b.sql.query('ws-new', 'SELECT body, tags FROM notes', [])).rows).toEqual([['kept', ['a']]]);
        expect((await b.sql.execute('ws-new', 'DROP TABLE agent_notes', [])).command).toBe('DROP');
        expect(await b.manager.ensure('ws-new')).toMatchObject({ created: false });
        // A had ws-old cached: the generation tells it to look again, and the old id is a new, empty workspace.
        expect(await a.manager.ensure('ws-old')).toMatchObject({ created: true });
        expect((await a.sql.query('ws-old', 'SELECT count(*) FROM notes', [])).rows).toEqual([['0']]);

        // Refusals, each leaving everything as it was.
        await expect(b.manager.rename('ws-new', 'ws-taken')).rejects.toThrow('"ws-taken" is taken (registered): drop it first');
        await expect(b.manager.rename('nothing-here', 'ws-free')).rejects.toThrow('Workspace "nothing-here" does not exist: nothing to rename.');
        await expect(b.manager.rename('ws-new', 'ws-new')).rejects.toThrow('nothing to rename');
        await expect(b.manager.rename('ws-new', 'registry')).rejects.toThrow(/project_registry/);
        expect(await traces(db, 'ws-new')).toEqual({ schema: true, registered: true, ledger: 1, role: true, sandbox: true });
        expect(await traces(db, 'ws-taken')).toMatchObject({ schema: true, registered: true, ledger: 1 });
        expect(await traces(db, 'ws-free')).toEqual(NONE);
      } finally {
        await close();
      }
    });

    it('keeps every registry column on rename, one added after the rename was written included', async (ctx) => {
      if (!backend) ctx.skip();
      const { db, close } = await twoServers();
      try {
        const a = await services(db);
        await a.manager.ensure('ws-col');
        // A registry column this code does not know of, as a later core migration would add.
        await db.exec("ALTER TABLE project_registry.workspace_config ADD COLUMN added_later text NOT NULL DEFAULT 'default'");
        await db.query("UPDATE project_registry.workspace_config SET added_later = 'kept', metadata = '{\"k\": 1}' WHERE project_id = 'ws-col'");
        const [before] = await db.query<{ created_at: Date }>("SELECT created_at FROM project_registry.workspace_config WHERE project_id = 'ws-col'");

        await a.manager.rename('ws-col', 'ws-col-renamed');

        const rows = await db.query<{ project_id: string; schema_name: string; added_later: string; metadata: unknown; created_at: Date }>(
          "SELECT project_id, schema_name, added_later, metadata, created_at FROM project_registry.workspace_config WHERE project_id LIKE 'ws-col%'",
        );
        expect(rows).toEqual([
          { project_id: 'ws-col-renamed', schema_name: 'project_ws_col_renamed', added_later: 'kept', metadata: { k: 1 }, created_at: before?.created_at },
        ]);
      } finally {
        await close();
      }
    });

    // PostgreSQL only: on the embedded store every process shares one session, which waits its turn instead.
    if (kind === 'postgres') it('a drop that cannot get the workspace lock in time names the holder and changes nothing', async (ctx) => {
      if (!backend) ctx.skip();
      const url = (await (backend as Backend).freshUrl?.()) as string;
      const db = new PostgresDatabase({ connectionString: url });
      const holder = new PostgresDatabase({ connectionString: url });
      try {
        const { manager } = await services(db, { lockTimeoutMs: 300 });
        await manager.ensure('ws-held');
        let release!: () => void;
        const released = new Promise<void>((resolve) => (release = resolve));
        let locked!: () => void;
        const holding = new Promise<void>((resolve) => (locked = resolve));
        const held = holder.transaction(async (tx) => {
          await tx.query("SELECT project_registry.lock_workspace('ws-held', $1, 1000)", [WORKSPACE_LOCK_CLASS]);
          locked();
          await released;
        });
        await holding;
        const error = await manager.drop('ws-held').catch((e: unknown) => e);
        release();
        await held;
        expect(error).toBeInstanceOf(WorkspaceLockTimeoutError);
        expect((error as Error).message).toMatch(/Gave up waiting for the lock of workspace "ws-held" after 300 ms; it is held by .*pid \d+/);
        expect(await traces(db, 'ws-held')).toMatchObject({ schema: true, registered: true, ledger: 1 });
      } finally {
        await Promise.all([db.close(), holder.close()]);
      }
    });
  });
}

describe('drop_workspace as a tool', () => {
  it('drops only when confirm repeats the id, says "not found" for an unknown id, and obeys --allow-project', async () => {
    const mcp = await connectInProcess({ extensionDirs: [notesDir], disabledExtensions: ['codebase'], allowedProjects: ['ws-t', 'other'] });
    try {
      const tool = mcp.tools.find((t) => t.name === 'drop_workspace');
      expect(tool?.annotations).toMatchObject({ destructiveHint: true, idempotentHint: true, readOnlyHint: false });
      const call = (args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, 'drop_workspace', args);
      expect((await mcp.client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'ws-t' } })).isError).toBeFalsy();

      const unconfirmed = await call({ project_id: 'ws-t', confirm: 'ws-T' });
      expect(unconfirmed).toMatchObject({ isError: true });
      expect(unconfirmed.text).toBe('Nothing was dropped: confirm must repeat project_id exactly ("ws-t"), got "ws-T".');
      const stillThere = await mcp.client.callTool({ name: 'describe_workspace', arguments: { project_id: 'ws-t' } });
      expect(stillThere.isError).toBeFalsy();

      const refused = await call({ project_id: 'elsewhere', confirm: 'elsewhere' });
      expect(refused.isError).toBe(true);
      expect(refused.text).toContain('is not one this server serves');

      const dropped = await call({ project_id: 'ws-t', confirm: 'ws-t' });
      expect(dropped).toMatchObject({ isError: false, data: { project_id: 'ws-t', schema_name: 'project_ws_t', dropped: true } });
      const gone = await mcp.client.callTool({ name: 'describe_workspace', arguments: { project_id: 'ws-t' } });
      expect(gone.isError).toBe(true);
      expect(JSON.stringify(gone.content)).toContain('Workspace \\"ws-t\\" does not exist');

      expect(await call({ project_id: 'other', confirm: 'other' })).toMatchObject({
        isError: false,
        data: { project_id: 'other', dropped: false, changes: [] },
      });
      const recreated = await mcp.client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'ws-t' } });
      expect(recreated.structuredContent).toMatchObject({ created: true });
    } finally {
      await mcp.close();
    }
  }, 120_000);
});


describe('drop-workspace and rename-workspace as commands, and server processes sharing one embedded store', () => {
  const args = (dir: string) => ['--data-dir', dir, '--extensions', notesDir, '--disable', 'codebase'];

  it('drop-workspace drops what a running server has cached, which it then re-creates on its next ensure; rename-workspace; exit codes 0, 1, 2', async () => {
    const dir = await tempDir('pgw-drop-cli-');
    const server = await startServerProcess(args(dir), {});
    const socket = new PostgresDatabase({ connectionString: dbUrlOf(dir) });
    try {
      for (const id of ['ws-a', 'ws-b']) expect((await server.call('ensure_workspace', { project_id: id })).isError).toBe(false);
      expect((await server.call('execute', { project_id: 'ws-a', sql: "INSERT INTO notes (body) VALUES ('x')" })).isError).toBe(false);

      const dropped = await runCli(['drop-workspace', 'ws-a', ...args(dir)]);
      expect(dropped).toMatchObject({ code: 0 });
      expect(dropped.stdout).toMatch(/^dropped workspace ws-a\n {2}dropped schema project_ws_a and everything in it\n/);
      expect(await traces(socket, 'ws-a')).toEqual(NONE);
      expect(await traces(socket, 'ws-b')).toMatchObject({ schema: true, registered: true });

      // The server had ws-a cached: it notices the drop and makes a new, empty workspace.
      expect((await server.call('ensure_workspace', { project_id: 'ws-a' })).data).toMatchObject({ created: true });
      expect((await server.call('query', { project_id: 'ws-a', sql: 'SELECT count(*) FROM notes' })).data).toMatchObject({ rows: [['0']] });

      expect((await runCli(['drop-workspace', 'ws-a', ...args(dir)])).code).toBe(0);
      const again = await runCli(['drop-workspace', 'ws-a', '--json', ...args(dir)]);
      expect(again.code).toBe(1);
      expect(JSON.parse(again.stdout)).toEqual({ project_id: 'ws-a', schema_name: 'project_ws_a', dropped: false, changes: [] });

      const reserved = await runCli(['drop-workspace', 'registry', '--json', ...args(dir)]);
      expect(reserved.code).toBe(2);
      expect((JSON.parse(reserved.stdout) as { error: string }).error).toMatch(/project_registry/);
      const bad = await runCli(['drop-workspace', 'WS_A', ...args(dir)]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('drop-workspace takes exactly one project id');
      expect((await runCli(['drop-workspace', ...args(dir)])).code).toBe(2);
      const renamed = await runCli(['rename-workspace', 'ws-b', 'ws-c', '--json', ...args(dir)]);
      expect(renamed.code).toBe(0);
      expect(JSON.parse(renamed.stdout)).toMatchObject({ from: 'ws-b', to: 'ws-c', changes: ['renamed schema project_ws_b to project_ws_c', expect.any(String)] });
      const refused = await runCli(['rename-workspace', 'ws-b', 'ws-d', ...args(dir)]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('Workspace "ws-b" does not exist: nothing to rename.');
      expect((await runCli(['rename-workspace', 'ws-c', ...args(dir)])).stderr).toContain('rename-workspace takes two project ids, the old and the new');
      // The server kept serving, and ws-c (renamed from ws-b) holds what ws-b held.
      expect((await server.call('list_workspaces', {})).data).toMatchObject({ workspaces: [{ project_id: 'ws-c' }] });
    } finally {
      await socket.close();
      await server.close();
    }
  }, 180_000);

  it('drop_workspace in one server process racing ensure_workspace in another: one wins cleanly each round', async () => {
    const dir = await tempDir('pgw-drop-race-');
    const [a, b] = await Promise.all([startServerProcess(args(dir), {}), startServerProcess(args(dir), {})]);
    const socket = new PostgresDatabase({ connectionString: dbUrlOf(dir) });
    try {
      for (let round = 0; round < 5; round++) {
        expect((await a.call('ensure_workspace', { project_id: 'ws-race' })).isError).toBe(false);
        const [ensured, dropped] = await Promise.all([
          a.call('ensure_workspace', { project_id: 'ws-race' }),
          b.call('drop_workspace', { project_id: 'ws-race', confirm: 'ws-race' }),
        ]);
        expect([ensured.isError, dropped.isError, dropped.data['dropped']]).toEqual([false, false, true]);
        const t = await traces(socket, 'ws-race');
        if (ensured.data['created'] === true) expect(t).toMatchObject({ schema: true, registered: true, ledger: 1 });
        else expect(t).toEqual(NONE);
      }
      expect((await a.call('ensure_workspace', { project_id: 'ws-race' })).isError).toBe(false);
      expect(await traces(socket, 'ws-race')).toMatchObject({ schema: true, registered: true, ledger: 1 });
    } finally {
      await socket.close();
      await Promise.all([a.close(), b.close()]);
    }
  }, 180_000);
});
