import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import type { Database } from '../src/db/database.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { WORKSPACE_LOCK_CLASS, WorkspaceLockTimeoutError } from '../src/registry/workspace-lock.js';
import { ReservedProjectIdError, WorkspaceIdError } from '../src/workspaces/project-id.js';
import { FleetStatusReader } from '../src/workspaces/workspace-fleet.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { WorkspaceNotFoundError, WorkspacePermissionError, WorkspaceProvisionError } from '../src/workspaces/workspace-errors.js';
import { install, pgliteBackend, planFor, postgresBackend, recording, tempDir, writeExtension, type Backend } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 60_000);
afterAll(async () => cluster?.destroy());

const INVALID_IDS = ['', 'A', 'Client-A', 'client_a', '-a', 'a-', 'a--b', '1abc', 'a b', "x'; DROP SCHEMA public; --", 'a'.repeat(56), 'ａ', 'é'];

/** A workspace extension for the real-server runs, which have no pgvector. */
async function notesExtension(root: string, extraMigration?: string) {
  return writeExtension(root, { id: 'notes', required_columns: { notes: ['id', 'body'] } }, {
    'workspace/schema.sql': `CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);
                             CREATE INDEX IF NOT EXISTS notes_body_idx ON notes (body);`,
    'workspace/migrations/0001_tags.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS tags text[];',
    ...(extraMigration ? { 'workspace/migrations/0002_extra.sql': extraMigration } : {}),
  });
}

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`workspace manager on ${kind}`, () => {
    let backend: Backend | undefined;
    let root: string;
    const disabled = kind === 'postgres' ? ['codebase'] : [];

    beforeAll(async () => {
      root = await tempDir();
      if (kind === 'pglite') backend = await pgliteBackend();
      else if (cluster) backend = postgresBackend(cluster);
    }, 60_000);
    afterAll(async () => backend?.cleanup());

    const ready = async (ctx: TestContext, plan?: InstallPlan): Promise<{ db: Database; plan: InstallPlan; manager: WorkspaceManager }> => {
      if (!backend) ctx.skip();
      const db = await (backend as Backend).fresh();
      const p = plan ?? (await planFor([await notesExtension(root)], disabled));
      const report = await install(db, p);
      return { db, plan: p, manager: new WorkspaceManager(db, p, report.searchPathSchemas, silentLogger) };
    };
    /**
     * One database for the tests that keep to workspaces of their own, on the default plan or one
     * with the same global files (another workspace migration or schema: its install finds the
     * database up to date), and do not list every workspace: each fresh database costs a store
     * and an install.
     */
    let shared: ReturnType<typeof ready> | undefined;
    const readyShared = (ctx: TestContext) => {
      if (!backend) ctx.skip();
      return (shared ??= ready(ctx));
    };

    it('rejects invalid project ids before any SQL, saying what a valid id looks like', async (ctx) => {
      const { db, plan } = await readyShared(ctx);
      const recorded = recording(db);
      const manager = new WorkspaceManager(recorded.db, plan, [], silentLogger);
      for (const id of INVALID_IDS) {
        const failure = await manager.ensure(id).catch((e: unknown) => e);
        expect(failure, id).toBeInstanceOf(WorkspaceIdError);
        expect((failure as Error).message).toContain('lower-case ASCII letters and digits');
      }
      expect(recorded.calls).toEqual([]);
    });

    it("counts the fleet's status in one query, its pending migrations included (sent to every database workspaces are spread over)", async (ctx) => {
      const { db, plan, manager } = await readyShared(ctx);
      await manager.ensure('fleet-counted');
      const recorded = recording(db);
      const status = await new FleetStatusReader(recorded.db, plan).fleetStatus();
      expect(status).toMatchObject({ lagging: 0, pending: [] });
      expect(status.workspaces).toBeGreaterThan(0);
      // Watched fail: two (the registry's counts, then the ledger's).
      expect(recorded.calls).toHaveLength(1);
    });

    it('refuses ids whose schema is the server\'s, an extension\'s global schema or a PostgreSQL extension\'s', async (ctx) => {
      const lookup = await writeExtension(root, { id: 'lookup' }, {
        'schema.sql': `CREATE SCHEMA IF NOT EXISTS project_lookup;
                       CREATE TABLE IF NOT EXISTS project_lookup.kinds (kind text PRIMARY KEY);
                       COMMENT ON SCHEMA project_lookup_archive IS 'made by hand, documented here';`,
      });
      if (!backend) ctx.skip();
      const db = await (backend as Backend).fresh();
      // A schema the server does not make, as an administrator would prepare one.
      await db.exec('CREATE SCHEMA project_lookup_archive');
      if (kind === 'postgres') await db.exec('CREATE SCHEMA project_ext; CREATE EXTENSION pg_trgm SCHEMA project_ext');
      const extensions = kind === 'postgres' ? [await writeExtension(root, { id: 'trigrams', requires: ['pg_trgm'] })] : [];
      const plan = await planFor([await notesExtension(root), lookup, ...extensions], disabled);
      const report = await install(db, plan);
      const manager = new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger);

      const reserved: Record<string, string> = {
        registry: "project_registry is the server's own",
        'registry-archive': "project_registry_archive is the server's own",
        lookup: 'project_lookup is used by the global SQL of extension "lookup"',
        'lookup-archive': 'project_lookup_archive is used by the global SQL of extension "lookup"',
        ...(kind === 'postgres' ? { ext: 'project_ext is where the PostgreSQL extensions this server requires (pg_trgm) are installed' } : {}),
      };
      for (const [id, why] of Object.entries(reserved)) {
        const failure = await manager.ensure(id).catch((e: unknown) => e);
        expect(failure, id).toBeInstanceOf(ReservedProjectIdError);
        expect((failure as Error).message).toContain(`The project id "${id}" is reserved: its schema ${why}`);
        await expect(manager.validateColumns({ projectId: id, table: 'kinds', columns: ['kind'] })).rejects.toThrow(ReservedProjectIdError);
      }
      const registered = await db.query('SELECT project_id FROM project_registry.workspace_config');
      expect(registered).toEqual([]);
      const [strays] = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_catalog.pg_tables WHERE tablename = 'notes' AND schemaname <> 'public'",
      );
      expect(strays?.n).toBe(0);
      // Near misses are ordinary ids.
      expect(await manager.ensure('registry2')).toMatchObject({ schemaName: 'project_registry2', created: true });
      expect(await manager.ensure('lookups')).toMatchObject({ schemaName: 'project_lookups', created: true });
    });

    it('creates the schema, its tables and the registry row; later calls hit the cache', async (ctx) => {
      const { db, plan, manager } = await readyShared(ctx);
      const first = await manager.ensure('client-a');
      expect(first).toMatchObject({ projectId: 'client-a', schemaName: 'project_client_a', created: true });
      expect(first.tables).toContain('notes');
      expect(first.createdAt).toBeInstanceOf(Date);
      const [registry] = await db.query<{ schema_name: string; workspace_fingerprint: string }>(
        'SELECT schema_name, workspace_fingerprint FROM project_registry.workspace_config WHERE project_id = $1',
        ['client-a'],
      );
      expect(registry).toEqual({ schema_name: 'project_client_a', workspace_fingerprint: plan.workspaceFingerprint });
      // The workspace migration ran inside the workspace schema.
      expect(await db.query(`SELECT to_regclass('project_client_a.notes') IS NOT NULL AS ok`)).toEqual([{ ok: true }]);
      const tags = await db.query(
        `SELECT 1 FROM pg_attribute WHERE attrelid = 'project_client_a.notes'::regclass AND attname = 'tags'`,
      );
      expect(tags).toHaveLength(1);

      const recorded = recording(db);
      const warm = new WorkspaceManager(recorded.db, plan, [], silentLogger);
      const again = await warm.ensure('client-a');
      expect(again).toMatchObject({ created: false, createdAt: first.createdAt });
      expect(recorded.calls).toHaveLength(1); // the registry lookup
      await warm.ensure('client-a');
      // A cache hit: one read of the registry generation (a drop elsewhere bumps it), no lookup.
      expect(recorded.calls).toEqual([recorded.calls[0], 'SELECT generation::text AS generation FROM project_registry.registry_generation']);
    });

    it('brings a workspace whose workspace migrations lag up to date on ensure', async (ctx) => {
      const { db, manager } = await readyShared(ctx);
      await manager.ensure('lagging');
      const newer = await planFor([await notesExtension(await tempDir(), 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS score int;')], disabled);
      const report = await install(db, newer);
      const recorded = recording(db);
      const upgraded = await new WorkspaceManager(recorded.db, newer, report.searchPathSchemas, silentLogger).ensure('lagging');
      expect(upgraded.created).toBe(false);
      // Only a migration was added: the unchanged schema files are not run again.
      const script = recorded.calls.find((sql) => sql.startsWith('CREATE SCHEMA IF NOT EXISTS'));
      expect(script).toContain('ADD COLUMN IF NOT EXISTS score');
      expect(script).not.toContain('CREATE TABLE IF NOT EXISTS notes');
      const ledger = await db.query(
        `SELECT name FROM project_registry.workspace_migrations WHERE project_id = 'lagging' AND extension_id = 'notes' ORDER BY name`,
      );
      expect(ledger).toEqual([{ name: '0001_tags' }, { name: '0002_extra' }]);
      expect(
        await db.query(`SELECT 1 FROM pg_attribute WHERE attrelid = 'project_lagging.notes'::regclass AND attname = 'score'`),
      ).toHaveLength(1);
      const [row] = await db.query<{ workspace_fingerprint: string }>(
        `SELECT workspace_fingerprint FROM project_registry.workspace_config WHERE project_id = 'lagging'`,
      );
      expect(row?.workspace_fingerprint).toBe(newer.workspaceFingerprint);
    });

    it('servers on older and newer extension versions share a database without re-running migrations', async (ctx) => {
      const { db } = await readyShared(ctx);
      const newer = await planFor([await notesExtension(await tempDir(), 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS score int;')], disabled);
      const older = await planFor([await notesExtension(await tempDir())], disabled);
      const managerOn = async (plan: InstallPlan) =>
        new WorkspaceManager(db, plan, (await install(db, plan)).searchPathSchemas, silentLogger);
      await (await managerOn(newer)).ensure('mixed');
      // An older server boots (its global files are the same, so no install) and touches the same workspace.
      expect((await install(db, older)).outcome).toBe('up-to-date');
      await (await managerOn(older)).ensure('mixed');
      await (await managerOn(older)).ensure('mixed-old');
      // The newer server comes back to both.
      await (await managerOn(newer)).ensure('mixed');
      await (await managerOn(newer)).ensure('mixed-old');
      expect(
        await db.query(
          `SELECT project_id, name, count(*)::int AS n FROM project_registry.workspace_migrations
            WHERE project_id LIKE 'mixed%' AND extension_id = 'notes' GROUP BY 1, 2 ORDER BY 1, 2`,
        ),
      ).toEqual([
        { project_id: 'mixed', name: '0001_tags', n: 1 },
        { project_id: 'mixed', name: '0002_extra', n: 1 },
        { project_id: 'mixed-old', name: '0001_tags', n: 1 },
        { project_id: 'mixed-old', name: '0002_extra', n: 1 },
      ]);
    });

    it('re-runs the workspace schema files when they change, adding what is new', async (ctx) => {
      const { db, manager } = await readyShared(ctx);
      await manager.ensure('reshaped');
      const dir = await notesExtension(await tempDir());
      await writeFile(
        path.join(dir, 'workspace/schema.sql'),
        `${await readFile(path.join(dir, 'workspace/schema.sql'), 'utf8')}\nCREATE TABLE IF NOT EXISTS labels (id int PRIMARY KEY);`,
      );
      const reshaped = await planFor([dir], disabled);
      const report = await install(db, reshaped);
      const again = await new WorkspaceManager(db, reshaped, report.searchPathSchemas, silentLogger).ensure('reshaped');
      expect(again.tables).toContain('labels');
      expect(await db.query(`SELECT to_regclass('project_reshaped.labels') IS NOT NULL AS ok`)).toEqual([{ ok: true }]);
    });

    it('leaves nothing behind when workspace DDL fails, and names the file and statement', async (ctx) => {
      // PostgreSQL reports a position for the unknown type, none for the unknown index column:
      // the statement is found from the position, or else by replaying the script.
      const cases = [
        {
          id: 'bad-ws',
          sql: 'CREATE TABLE IF NOT EXISTS fine (id int);\nCREATE INDEX IF NOT EXISTS broken_idx ON fine (no_such_column);',
          where: 'bad-ws/workspace/schema.sql statement 2/2 (line 2)',
          state: '42703',
        },
        {
          id: 'typo-ws',
          sql: 'CREATE TABLE IF NOT EXISTS fine (id int);\n\nCREATE TABLE IF NOT EXISTS typed (x no_such_type);\nCREATE TABLE IF NOT EXISTS later (id int);',
          where: 'typo-ws/workspace/schema.sql statement 2/3 (line 3)',
          state: '42704',
        },
      ];
      for (const { id, sql, where, state } of cases) {
        const dir = await writeExtension(await tempDir(), { id }, { 'workspace/schema.sql': sql });
        const { db, manager } = await ready(ctx, await planFor([dir], disabled));
        const failure = await manager.ensure('doomed').catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(WorkspaceProvisionError);
        expect((failure as Error).message).toContain(where);
        expect((failure as Error).message).toContain(`SQLSTATE ${state}`);
        expect(await db.query(`SELECT to_regnamespace('project_doomed') AS s`)).toEqual([{ s: null }]);
        expect(await db.query(`SELECT 1 FROM project_registry.workspace_config WHERE project_id = 'doomed'`)).toEqual([]);
      }
    });

    it('refuses a workspace that lacks a required column or table, leaving nothing behind', async (ctx) => {
      const lacksColumn = await writeExtension(await tempDir(), { id: 'short', required_columns: { notes: ['id', 'body', 'title'] } }, {
        'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text);',
      });
      const lacksTable = await writeExtension(await tempDir(), { id: 'ghostly', required_columns: { ghosts: ['id'] } }, {
        'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS spirits (id int);',
      });
      for (const [dir, expected] of [
        [lacksColumn, 'Extension "short" requires notes(id, body, title) in every workspace, but title is missing'],
        [lacksTable, 'Extension "ghostly" requires ghosts(id) in every workspace, but the table does not exist'],
      ] as const) {
        const { db, manager } = await ready(ctx, await planFor([dir], disabled));
        await expect(manager.ensure('incomplete')).rejects.toThrow(expected);
        expect(await db.query(`SELECT to_regnamespace('project_incomplete') AS s`)).toEqual([{ s: null }]);
        expect(await db.query(`SELECT 1 FROM project_registry.workspace_config WHERE project_id = 'incomplete'`)).toEqual([]);
      }
    });

    it('re-creates a registered workspace whose schema was dropped by hand, with its migrations', async (ctx) => {
      const { db, plan, manager } = await readyShared(ctx);
      await manager.ensure('lost');
      await db.exec('DROP SCHEMA project_lost CASCADE');

      // This process has it cached: the first call that finds the schema gone says so and
      // forgets it, and the next ensure re-creates it.
      await expect(manager.validateColumns({ projectId: 'lost', table: 'notes', columns: ['id'] })).rejects.toBeInstanceOf(WorkspaceNotFoundError);
      const again = await manager.ensure('lost');
      expect(again.created).toBe(true);
      expect(again.tables).toContain('notes');
      expect((await manager.validateColumns({ projectId: 'lost', table: 'notes', columns: ['id', 'body', 'tags'] })).valid).toBe(true);
      expect(await db.query(`SELECT name FROM project_registry.workspace_migrations WHERE project_id = 'lost' AND extension_id = 'notes'`)).toEqual([{ name: '0001_tags' }]);

      // A server that never saw it finds the same from the registry.
      await db.exec('DROP SCHEMA project_lost CASCADE');
      const fresh = new WorkspaceManager(db, plan, (await install(db, plan)).searchPathSchemas, silentLogger);
      expect(await fresh.ensure('lost')).toMatchObject({ created: true });
      expect(await db.query(`SELECT to_regclass('project_lost.notes') IS NOT NULL AS ok`)).toEqual([{ ok: true }]);
      expect(await db.query(`SELECT count(*)::int AS n FROM project_registry.workspace_config WHERE project_id = 'lost'`)).toEqual([{ n: 1 }]);
    });

    it('validate_columns beside a creation sees the workspace whole or not at all', async (ctx) => {
      const { db, plan } = await readyShared(ctx);
      const searchPath = (await install(db, plan)).searchPathSchemas;
      let whole = 0;
      for (let round = 0; round < 5; round++) {
        // A fresh manager (no cache) creates while the checks run back to back until it is done.
        const manager = new WorkspaceManager(db, plan, searchPath, silentLogger);
        let done = false;
        const creating = manager.ensure(`racing-${round}`).finally(() => (done = true));
        const seen: unknown[] = [];
        while (!done) {
          seen.push(await manager.validateColumns({ projectId: `racing-${round}`, table: 'notes', columns: ['id', 'body'] }).catch((e: unknown) => e));
        }
        expect(await creating).toMatchObject({ created: true });
        for (const answer of seen) {
          if (answer instanceof WorkspaceNotFoundError) continue;
          expect(answer, `round ${round}`).toMatchObject({ tableExists: true, valid: true });
          whole++;
        }
      }
      // The checks did overlap the creations (else this proves nothing).
      expect(whole).toBeGreaterThan(0);
    });

    it('pages through workspaces by key, filtered by prefix', async (ctx) => {
      const { manager } = await ready(ctx);
      const ids = ['team-a', 'team-b', 'team-c', 'team-d', 'team-e', 'other', 'teams'];
      for (const id of ids) await manager.ensure(id);
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await manager.list({ limit: 2, prefix: 'team-', cursor });
        expect(page.workspaces.length).toBeLessThanOrEqual(2);
        seen.push(...page.workspaces.map((w) => w.projectId));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      expect(seen).toEqual(['team-a', 'team-b', 'team-c', 'team-d', 'team-e']);
      expect((await manager.list({ limit: 500 })).workspaces.map((w) => w.projectId)).toEqual([...ids].sort());
      await expect(manager.list({ cursor: 'not a cursor' })).rejects.toThrow(/next_cursor/);
      await expect(manager.list({ limit: 0 })).rejects.toThrow(/1 to 500/);
    });

    it('validates columns through pg_catalog, in a workspace or a qualified table', async (ctx) => {
      const { manager } = await readyShared(ctx);
      await manager.ensure('cols');
      expect(await manager.validateColumns({ projectId: 'cols', table: 'notes', columns: ['id', 'body', 'nope'] })).toEqual({
        schema: 'project_cols',
        table: 'notes',
        tableExists: true,
        present: ['id', 'body'],
        missing: ['nope'],
        valid: false,
      });
      expect(
        await manager.validateColumns({ table: 'project_registry.workspace_config', columns: ['project_id', 'created_at'] }),
      ).toMatchObject({ tableExists: true, valid: true });
      expect(await manager.validateColumns({ table: 'project_cols.no_such_table', columns: ['id'] })).toMatchObject({
        schema: 'project_cols',
        tableExists: false,
        missing: ['id'],
        valid: false,
      });
      await expect(manager.validateColumns({ table: 'no_such_table', columns: ['id'] })).rejects.toThrow(
        /global tables of the enabled extensions .*not for public\.no_such_table/,
      );
      await expect(manager.validateColumns({ projectId: 'never-made', table: 'notes', columns: ['id'] })).rejects.toThrow(
        /ensure_workspace/,
      );
      await expect(manager.validateColumns({ table: 'a.b.c', columns: ['id'] })).rejects.toThrow(/more than one dot/);
      await expect(manager.validateColumns({ table: 'x'.repeat(64), columns: ['id'] })).rejects.toThrow(/63 bytes/);
    });
  });
}

describe('workspace manager on a real PostgreSQL server', () => {
  const server = (ctx: TestContext) => {
    if (!cluster) ctx.skip();
    return cluster as PgCluster;
  };

  /** N managers on N pools: as many independent "processes" racing on one database. */
  async function racers(ctx: TestContext, n: number) {
    const url = await server(ctx).createDatabase('race');
    const plan = await planFor([await notesExtension(await tempDir())], ['codebase']);
    const dbs = Array.from({ length: n }, () => new PostgresDatabase({ connectionString: url, maxConnections: 2 }));
    const report = await install(dbs[0]!, plan);
    return {
      db: dbs[0]!,
      managers: dbs.map((db) => new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger)),
      close: () => Promise.all(dbs.map((db) => db.close())),
    };
  }

  it('20 concurrent ensures of one id: all succeed, exactly one creates', async (ctx) => {
    const { db, managers, close } = await racers(ctx, 20);
    try {
      const results = await Promise.all(managers.map((m) => m.ensure('contended')));
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(results.map((r) => r.createdAt.toISOString())).size).toBe(1);
      expect(await db.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'project_contended'`)).toEqual([{ n: 1 }]);
      expect(await db.query(`SELECT count(*)::int AS n FROM project_registry.workspace_config`)).toEqual([{ n: 1 }]);
      expect(await db.query(`SELECT count(*)::int AS n FROM project_registry.workspace_migrations`)).toEqual([{ n: 1 }]);
    } finally {
      await close();
    }
  });

  it('20 concurrent ensures of 20 ids: one schema and one registry row each', async (ctx) => {
    const { db, managers, close } = await racers(ctx, 20);
    try {
      const results = await Promise.all(managers.map((m, i) => m.ensure(`project-${i}`)));
      expect(results.every((r) => r.created)).toBe(true);
      expect(await db.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'project\\_project\\_%'`)).toEqual([{ n: 20 }]);
      expect(await db.query(`SELECT count(DISTINCT project_id)::int AS n, count(*)::int AS rows FROM project_registry.workspace_config`)).toEqual([
        { n: 20, rows: 20 },
      ]);
    } finally {
      await close();
    }
  });

  it('gives up on a workspace lock held by another session within the bound, naming it, and provisions once it is released', async (ctx) => {
    const url = await server(ctx).createDatabase('locked');
    const plan = await planFor([await notesExtension(await tempDir())], ['codebase']);
    const db = new PostgresDatabase({ connectionString: url });
    const holder = new PostgresDatabase({ connectionString: url });
    try {
      const report = await install(db, plan);
      const manager = new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger, { lockTimeoutMs: 300 });
      await manager.ensure('upgraded');
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let holding!: (pid: number) => void;
      const held = new Promise<number>((resolve) => (holding = resolve));
      const holds = holder.transaction(async (tx) => {
        const [row] = await tx.query<{ pid: number }>(
          `SELECT pg_backend_pid() AS pid, pg_advisory_xact_lock($1, hashtext('fresh')), pg_advisory_xact_lock($1, hashtext('upgraded'))`,
          [WORKSPACE_LOCK_CLASS],
        );
        holding(row?.pid ?? 0);
        await released;
      });
      const pid = await held;
      // A new id (core's create_workspace in one round trip) and an existing one (the upgrade's transaction).
      for (const attempt of [() => manager.ensure('fresh'), () => manager.upgrade('upgraded')]) {
        const failure = await attempt().catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(WorkspaceLockTimeoutError);
        expect((failure as Error).message).toMatch(new RegExp(`after 300 ms; it is held by pid ${pid} \\(pg-workspace-mcp[^)]*, for \\d+ s\\).*retry the call`));
      }
      expect(await db.query(`SELECT to_regnamespace('project_fresh') AS s`)).toEqual([{ s: null }]);
      release();
      await holds;
      expect((await manager.ensure('fresh')).created).toBe(true);
      expect((await manager.upgrade('upgraded')).outcome).toBe('up-to-date');
    } finally {
      await holder.close();
      await db.close();
    }
  });

  it('turns a missing CREATE privilege into an error carrying the GRANT to run', async (ctx) => {
    const cluster = server(ctx);
    const url = await cluster.createDatabase('perm');
    const database = new URL(url).pathname.slice(1);
    const admin = new PostgresDatabase({ connectionString: url });
    const plan = await planFor([await notesExtension(await tempDir())], ['codebase']);
    const report = await install(admin, plan);
    await admin.exec(`DROP ROLE IF EXISTS limited_role; CREATE ROLE limited_role LOGIN;
      REVOKE CREATE ON DATABASE "${database}" FROM PUBLIC;
      GRANT USAGE ON SCHEMA project_registry TO limited_role;
      GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA project_registry TO limited_role;`);
    const limited = new PostgresDatabase({ connectionString: cluster.url(database, 'limited_role') });
    try {
      const failure = await new WorkspaceManager(limited, plan, report.searchPathSchemas, silentLogger).ensure('no-rights').catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(WorkspacePermissionError);
      expect((failure as Error).message).toContain(`GRANT CREATE ON DATABASE "${database}" TO "limited_role";`);
      expect(await admin.query(`SELECT to_regnamespace('project_no_rights') AS s`)).toEqual([{ s: null }]);
    } finally {
      await limited.close();
      await admin.close();
    }
  });
});
