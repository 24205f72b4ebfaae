import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { TOOL_NAMES } from '../src/mcp/tool-registry.js';
import { silentLogger } from '../src/logger.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { holdInstallLock, install, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { startPgBouncer, type PgBouncer } from './support/pgbouncer.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { MAIN, startServerProcess } from './support/server-process.js';

let cluster: PgCluster | null = null;
let bouncer: PgBouncer | null = null;
let extensionDir: string;

beforeAll(async () => {
  cluster = await startPgCluster();
  if (cluster) bouncer = await startPgBouncer(cluster);
  // Migrations that sleep a little widen the windows in which concurrent boots collide.
  extensionDir = await writeExtension(await tempDir(), { id: 'relia', required_columns: { items: ['id', 'label'] } }, {
    'schema.sql': 'CREATE TABLE IF NOT EXISTS public.relia_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);',
    'migrations/0001_first.sql': `SELECT pg_sleep(0.02); INSERT INTO public.relia_events (note) VALUES ('0001');`,
    'migrations/0002_second.sql': `INSERT INTO public.relia_events (note) VALUES ('0002');`,
    'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);',
    'workspace/migrations/0001_label.sql': 'ALTER TABLE items ADD COLUMN IF NOT EXISTS label text;',
  });
}, 90_000);

afterAll(async () => {
  await bouncer?.stop();
  await cluster?.destroy();
});

const server = (ctx: TestContext) => {
  if (!cluster) ctx.skip();
  return cluster as PgCluster;
};
const serverArgs = () => ['--extensions', extensionDir, '--disable', 'codebase'];

describe('reliability on a real PostgreSQL server', () => {
  it('16 servers booting at once on an empty database provision shared and own ids without an error', async (ctx) => {
    const url = await server(ctx).createDatabase('boots');
    const servers = await Promise.all(
      Array.from({ length: 16 }, () => startServerProcess(serverArgs(), { DATABASE_URL: url, PG_WORKSPACE_LOG_LEVEL: 'warn' })),
    );
    try {
      const results = await Promise.all(
        servers.map((s, n) =>
          Promise.all([
            ...Array.from({ length: 10 }, (_, i) => s.call('ensure_workspace', { project_id: `shared-${i}` })),
            ...Array.from({ length: 10 }, (_, i) => s.call('ensure_workspace', { project_id: `own-${n}-${i}` })),
          ]),
        ),
      );
      const flat = results.flat();
      expect(flat.filter((r) => r.isError).map((r) => r.text)).toEqual([]);
      expect(flat.filter((r) => r.data['created'] === true)).toHaveLength(10 + 160);
      const db = new PostgresDatabase({ connectionString: url });
      try {
        expect(await db.query(`SELECT extension_id, name, count(*)::int AS n FROM project_registry.schema_migrations GROUP BY 1, 2 ORDER BY 1, 2`)).toEqual([
          { extension_id: 'core', name: '0001_create_workspace_lock_timeout', n: 1 },
          { extension_id: 'core', name: '0002_workspace_snapshots', n: 1 },
          { extension_id: 'core', name: '0003_workspace_role_name', n: 1 },
          { extension_id: 'core', name: '0004_mark_workspace_schemas', n: 1 },
          { extension_id: 'core', name: '0005_snapshot_role_name', n: 1 },
          { extension_id: 'core', name: '0006_deferred_indexes', n: 1 },
          { extension_id: 'core', name: '0007_snapshot_readings', n: 1 },
          { extension_id: 'core', name: '0008_transient_memberships', n: 1 },
          { extension_id: 'core', name: '0009_ingest_staging', n: 1 },
          { extension_id: 'core', name: '0010_ingest_staging_storage', n: 1 },
          { extension_id: 'core', name: '0011_workspace_databases', n: 1 },
          { extension_id: 'relia', name: '0001_first', n: 1 },
          { extension_id: 'relia', name: '0002_second', n: 1 },
        ]);
        expect(await db.query(`SELECT note FROM public.relia_events ORDER BY id`)).toEqual([{ note: '0001' }, { note: '0002' }]);
        expect(await db.query(`SELECT count(*)::int AS n FROM project_registry.workspace_config`)).toEqual([{ n: 170 }]);
        expect(await db.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'project\\_%' AND nspname !~ '^project_registry(_|$)'`)).toEqual([{ n: 170 }]);
        expect(await db.query(`SELECT count(*)::int AS n, count(DISTINCT project_id)::int AS d FROM project_registry.workspace_migrations`)).toEqual([{ n: 170, d: 170 }]);
      } finally {
        await db.close();
      }
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  }, 180_000);

  it('a boot blocked by a live lock holder logs the holder, times out clearly and keeps answering MCP', async (ctx) => {
    const url = await server(ctx).createDatabase('held');
    const lock = await holdInstallLock(url);
    const holderPid = lock.pid;
    const s = await startServerProcess(serverArgs(), { DATABASE_URL: url, PG_WORKSPACE_LOCK_TIMEOUT_MS: '1500' });
    try {
      const result = await s.call('ensure_workspace', { project_id: 'blocked' });
      expect(result.isError).toBe(true);
      expect(result.text).toContain(`Gave up waiting for the install lock`);
      expect(result.text).toContain(`pid ${holderPid}`);
      expect(s.stderr()).toContain('waiting for the install lock');
      expect(s.stderr()).toContain(`"pid":${holderPid}`);
      // Still serving: the MCP side answers, and every tool gives the same clear failure.
      expect((await s.client.listTools()).tools.map((t) => t.name)).toEqual([...TOOL_NAMES]);
      expect((await s.call('list_workspaces', {})).text).toContain('install lock');
    } finally {
      await lock.release();
      await s.close();
    }
  }, 60_000);

  it('reports a stopped database clearly and recovers when it returns, at start and mid-session', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('downtime');
    // Mid-session: boot, work, lose the server, get it back.
    const s = await startServerProcess(serverArgs(), { DATABASE_URL: url });
    try {
      expect((await s.call('ensure_workspace', { project_id: 'before-outage' })).isError).toBe(false);
      await c.stop('fast');
      const down = await s.call('ensure_workspace', { project_id: 'during-outage' });
      expect(down.isError).toBe(true);
      expect(down.text).toContain('Cannot reach the database');
      await c.start();
      const back = await s.call('ensure_workspace', { project_id: 'after-outage' });
      expect(back.data).toMatchObject({ created: true });
    } finally {
      await s.close();
    }
    // At start: the server comes up without its database and boots once it is there.
    await c.stop('fast');
    const early = await startServerProcess(serverArgs(), { DATABASE_URL: url });
    try {
      const down = await early.call('list_workspaces', {});
      expect(down.isError).toBe(true);
      expect(down.text).toContain('Cannot reach the database');
      await c.start();
      const listed = await early.call('list_workspaces', {});
      expect(listed.isError).toBe(false);
      expect((listed.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id)).toEqual(['after-outage', 'before-outage']);
    } finally {
      await early.close();
      if (!(await c.sql('SELECT 1').then(() => true, () => false))) await c.start();
    }
  }, 90_000);

  it('a role without CREATE on the database gets the GRANT that fixes it at boot', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('nogrant');
    const database = new URL(url).pathname.slice(1);
    await c.sql(`DROP ROLE IF EXISTS weak_role`).catch(() => undefined);
    await c.sql(`CREATE ROLE weak_role LOGIN`);
    await c.sql(`REVOKE CREATE ON DATABASE "${database}" FROM PUBLIC`);
    // Boot on an empty database: the installer cannot create the registry schema.
    const s = await startServerProcess(serverArgs(), { DATABASE_URL: c.url(database, 'weak_role') });
    try {
      const failure = await s.call('ensure_workspace', { project_id: 'weak' });
      expect(failure.isError).toBe(true);
      expect(failure.text).toContain('permission denied');
      expect(failure.text).toContain(`GRANT CREATE ON DATABASE "${database}" TO "weak_role";`);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('a second role with the README grants is told to share the registry owner\'s rights, which then suffice both ways', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('second');
    const database = new URL(url).pathname.slice(1);
    const [first, second] = [`first_${database}`, `second_${database}`];
    const admin = new PostgresDatabase({ connectionString: url });
    await admin.exec(`CREATE ROLE ${first} LOGIN; CREATE ROLE ${second} LOGIN;
      GRANT CREATE ON DATABASE "${database}" TO ${first}, ${second}; GRANT CREATE ON SCHEMA public TO ${first}, ${second};`);
    const call = async (role: string, args: string[], projectId: string) => {
      const s = await startServerProcess(args, { DATABASE_URL: c.url(database, role) });
      try {
        return await s.call('ensure_workspace', { project_id: projectId });
      } finally {
        await s.close();
      }
    };
    // A later install adds a workspace migration: re-running the schema files and upgrading
    // a workspace both need the owner's rights.
    const upgrade = await writeExtension(await tempDir(), { id: 'later' }, {
      'schema.sql': 'CREATE OR REPLACE VIEW public.later_view AS SELECT 1 AS one;',
      'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS later (id int);',
      'workspace/migrations/0001_note.sql': 'ALTER TABLE later ADD COLUMN IF NOT EXISTS note text;',
    });
    try {
      expect((await call(first, serverArgs(), 'by-first')).isError).toBe(false);
      const refused = await call(second, serverArgs(), 'by-second');
      expect(refused.isError).toBe(true);
      expect(refused.text).toContain('permission denied for schema project_registry');
      expect(refused.text).toContain(`GRANT "${first}" TO "${second}";`);
      expect(refused.text).toContain(`ALTER ROLE "${second}" SET role = '${first}';`);
      expect(refused.text).not.toContain('GRANT CREATE ON DATABASE');

      await admin.exec(`GRANT "${first}" TO "${second}"; ALTER ROLE "${second}" SET role = '${first}';`);
      expect((await call(second, serverArgs(), 'by-second')).data).toMatchObject({ created: true });
      // The second role installs the change and upgrades the first role's workspace ...
      const upgraded = await call(second, ['--extensions', upgrade, ...serverArgs()], 'by-first');
      expect(upgraded.isError, upgraded.text).toBe(false);
      expect(upgraded.data['tables']).toContain('later');
      // ... and the first role upgrades the one the second role made: one owner throughout.
      const back = await call(first, ['--extensions', upgrade, ...serverArgs()], 'by-second');
      expect(back.isError, back.text).toBe(false);
      expect(await admin.query(`SELECT DISTINCT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname LIKE 'project\\_%'`)).toEqual([{ owner: first }]);
    } finally {
      await admin.close();
    }
  }, 120_000);

  it('a role without CREATE on schema public is told exactly that, not to grant what it has', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('nopublic');
    const database = new URL(url).pathname.slice(1);
    const role = `nopublic_${database}`;
    await c.sql(`CREATE ROLE ${role} LOGIN`);
    await c.sql(`GRANT CREATE ON DATABASE "${database}" TO ${role}`);
    const admin = new PostgresDatabase({ connectionString: url });
    // PostgreSQL 15 already revokes it from PUBLIC; older servers did not.
    await admin.exec('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
    try {
      const s = await startServerProcess(serverArgs(), { DATABASE_URL: c.url(database, role) });
      const failure = await s.call('ensure_workspace', { project_id: 'nopublic' }).finally(() => s.close());
      expect(failure.isError).toBe(true);
      expect(failure.text).toContain('permission denied for schema public');
      expect(failure.text).toContain(`lacks CREATE on schema "public"`);
      expect(failure.text).toContain(`GRANT CREATE ON SCHEMA "public" TO "${role}";`);
      expect(failure.text).not.toContain('GRANT CREATE ON DATABASE');

      await admin.exec(`GRANT CREATE ON SCHEMA public TO ${role}`);
      const again = await startServerProcess(serverArgs(), { DATABASE_URL: c.url(database, role) });
      const made = await again.call('ensure_workspace', { project_id: 'nopublic' }).finally(() => again.close());
      expect(made.data).toMatchObject({ created: true });
    } finally {
      await admin.close();
    }
  }, 60_000);

  it('uses an extension an administrator installed, and says who must install a missing one', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('roles');
    const database = new URL(url).pathname.slice(1);
    const ext = await writeExtension(await tempDir(), { id: 'inspect', requires: ['pageinspect'] });
    const admin = new PostgresDatabase({ connectionString: url });
    await admin.exec(`DROP ROLE IF EXISTS app_role; CREATE ROLE app_role LOGIN;
      GRANT CREATE ON DATABASE "${database}" TO app_role; GRANT CREATE ON SCHEMA public TO app_role;`);
    const asApp = ['--extensions', ext, ...serverArgs()];
    const appUrl = c.url(database, 'app_role');
    try {
      // pageinspect needs a superuser to create: the app role cannot, and is told who can.
      const refused = await startServerProcess(asApp, { DATABASE_URL: appUrl });
      const failure = await refused.call('list_workspaces', {});
      await refused.close();
      expect(failure.isError).toBe(true);
      expect(failure.text).toContain('Ask an administrator to run CREATE EXTENSION pageinspect');

      await admin.exec('CREATE EXTENSION pageinspect');
      const s = await startServerProcess(asApp, { DATABASE_URL: appUrl });
      try {
        const made = await s.call('ensure_workspace', { project_id: 'by-app-role' });
        expect(made.isError, made.text).toBe(false);
        expect(made.data).toMatchObject({ created: true });
      } finally {
        await s.close();
      }
    } finally {
      await admin.close();
    }
  }, 60_000);

  /**
   * One extension per phase, each with a statement that stalls inside that phase's transaction
   * (a pg_sleep, or for structural DDL a lock the test holds), so the test can SIGKILL the
   * booting server right there and check that the phase left nothing behind.
   */
  const crashPoints = {
    structural: {
      files: { 'schema.sql': 'CREATE TABLE IF NOT EXISTS public.crash_child (id int REFERENCES public.crash_blocker (id));' },
      stalled: '%crash_child%',
      leftovers: `SELECT to_regclass('public.crash_child') AS leftover`,
    },
    migrations: {
      files: { 'migrations/0001_sleepy.sql': `CREATE TABLE public.crash_migrated (id int); SELECT pg_sleep(2);` },
      stalled: '%pg_sleep(2)%',
      leftovers: `SELECT to_regclass('public.crash_migrated')::text AS leftover
                  UNION ALL SELECT name FROM project_registry.schema_migrations WHERE extension_id = 'crashy'`,
    },
    dependent: {
      files: { 'schema.sql': 'CREATE OR REPLACE VIEW public.crash_view AS SELECT 1 AS one; DO $$ BEGIN PERFORM pg_sleep(2); END $$;' },
      stalled: '%pg_sleep(2)%',
      leftovers: `SELECT to_regclass('public.crash_view') AS leftover`,
    },
    seeds: {
      files: {
        'schema.sql': 'CREATE TABLE IF NOT EXISTS public.crash_seeded (id int PRIMARY KEY);',
        // A seed may only upsert (a bare SELECT is refused), so the sleep sits in the second insert.
        'seeds/slow.sql':
          'INSERT INTO public.crash_seeded VALUES (1) ON CONFLICT DO NOTHING;\n' +
          'INSERT INTO public.crash_seeded SELECT 2 FROM pg_sleep(2) ON CONFLICT DO NOTHING;',
      },
      stalled: '%pg_sleep(2)%',
      leftovers: `SELECT id::text AS leftover FROM public.crash_seeded`,
    },
  } as const;

  for (const [phase, point] of Object.entries(crashPoints)) {
    it(`a server killed in the ${phase} phase leaves nothing of that phase, and the next boot completes`, async (ctx) => {
      const c = server(ctx);
      const url = await c.createDatabase(`crash_${phase}`);
      const db = new PostgresDatabase({ connectionString: url });
      const blocker = new PostgresDatabase({ connectionString: url });
      await db.exec('CREATE TABLE public.crash_blocker (id int PRIMARY KEY)');
      let unblock = () => {};
      const blocked = blocker.transaction(async (tx) => {
        if (phase !== 'structural') return;
        await tx.exec('LOCK TABLE public.crash_blocker IN ACCESS EXCLUSIVE MODE');
        await new Promise<void>((resolve) => (unblock = resolve));
      });
      const ext = await writeExtension(await tempDir(), { id: 'crashy' }, point.files);
      const args = ['--extensions', ext, ...serverArgs()];
      const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, DATABASE_URL: url }, stdio: ['pipe', 'ignore', 'ignore'] });
      // A client's handshake: boot starts once the client says it is initialized.
      child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'crash', version: '1' } } })}\n`);
      child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
      try {
        let stalled = false;
        for (let i = 0; i < 400 && !stalled; i++) {
          const [row] = await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE $1 AND query NOT LIKE '%pg_stat_activity%'`,
            [point.stalled],
          );
          stalled = (row?.n ?? 0) > 0;
          if (!stalled) await new Promise((r) => setTimeout(r, 25));
        }
        expect(stalled).toBe(true);
        child.kill('SIGKILL');
        await new Promise((r) => child.on('exit', r));
        unblock();
        await blocked;
        expect((await db.query<{ leftover: string | null }>(point.leftovers)).filter((r) => r.leftover !== null)).toEqual([]);

        // The dead server's session may still hold the install lock until its backend notices.
        const next = await startServerProcess(args, { DATABASE_URL: url, PG_WORKSPACE_LOCK_TIMEOUT_MS: '20000' });
        try {
          const made = await next.call('ensure_workspace', { project_id: 'after-crash' });
          expect(made.isError, made.text).toBe(false);
        } finally {
          await next.close();
        }
        expect((await db.query<{ leftover: string | null }>(point.leftovers)).filter((r) => r.leftover !== null)).not.toEqual([]);
      } finally {
        child.kill('SIGKILL');
        unblock();
        await blocker.close();
        await db.close();
      }
    }, 60_000);
  }

  it('a server killed while creating a workspace leaves no half-made workspace', async (ctx) => {
    const url = await server(ctx).createDatabase('crash_ws');
    const ext = await writeExtension(await tempDir(), { id: 'slow-ws' }, {
      'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS slow_items (id int); DO $$ BEGIN PERFORM pg_sleep(2); END $$;',
    });
    const args = ['--extensions', ext, ...serverArgs()];
    const first = await startServerProcess(args, { DATABASE_URL: url });
    const db = new PostgresDatabase({ connectionString: url });
    // Schema and registry row read in one statement, so under one snapshot.
    const state = async () =>
      (
        await db.query<{ schema: boolean; registered: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'project_half_made') AS schema,
                  EXISTS (SELECT 1 FROM project_registry.workspace_config WHERE project_id = 'half-made') AS registered`,
        )
      )[0]!;
    try {
      // The script is a parameter of create_workspace(), not query text: the session is found
      // by what it is doing, sleeping inside the workspace DDL.
      const pending = first.call('ensure_workspace', { project_id: 'half-made' }).catch(() => undefined);
      let backend: number | undefined;
      for (let i = 0; i < 400 && backend === undefined; i++) {
        [backend] = (await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'`)).map((r) => r.pid);
        if (backend === undefined) await new Promise((r) => setTimeout(r, 25));
      }
      expect(backend).toBeDefined();
      process.kill(first.pid, 'SIGKILL');
      await pending;
      // The creation is one statement: PostgreSQL either rolls it back or finishes and commits
      // it, client or no client. Watched until the killed client's backend is gone, the schema
      // and its registry row exist together or not at all.
      for (let i = 0; i < 200; i++) {
        const { schema, registered } = await state();
        expect(schema).toBe(registered);
        const [alive] = await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [backend]);
        if (!alive) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const after = await state();
      expect(after.schema).toBe(after.registered);
      const next = await startServerProcess(args, { DATABASE_URL: url });
      try {
        expect((await next.call('ensure_workspace', { project_id: 'half-made' })).data).toMatchObject({
          created: !after.registered,
          tables: ['items', 'slow_items'],
        });
        expect(await state()).toEqual({ schema: true, registered: true });
      } finally {
        await next.close();
      }
    } finally {
      await first.close().catch(() => undefined);
      await db.close();
    }
  }, 60_000);
});

describe('through PgBouncer in transaction pooling mode', () => {
  const through = async (ctx: TestContext) => {
    const c = server(ctx);
    if (!bouncer) ctx.skip();
    const direct = await c.createDatabase('bounced');
    return (bouncer as PgBouncer).url(new URL(direct).pathname.slice(1));
  };

  it('concurrent installs and provisioning stay exactly-once', async (ctx) => {
    const url = await through(ctx);
    const plan = await planFor([extensionDir], ['codebase']);
    const dbs = Array.from({ length: 12 }, () => new PostgresDatabase({ connectionString: url, maxConnections: 3 }));
    try {
      const reports = await Promise.all(dbs.map((db) => install(db, plan)));
      expect(reports.filter((r) => r.outcome === 'installed')).toHaveLength(1);
      const managers = dbs.map((db, i) => new WorkspaceManager(db, plan, reports[i]!.searchPathSchemas, silentLogger));
      const results = await Promise.all(managers.flatMap((m, n) => [m.ensure('pooled'), m.ensure(`pooled-${n}`)]));
      expect(results.filter((r) => r.created)).toHaveLength(13);
      expect(await dbs[0]!.query(`SELECT extension_id, name, count(*)::int AS n FROM project_registry.schema_migrations GROUP BY 1, 2 ORDER BY 2`)).toEqual([
        { extension_id: 'core', name: '0001_create_workspace_lock_timeout', n: 1 },
        { extension_id: 'relia', name: '0001_first', n: 1 },
        { extension_id: 'relia', name: '0002_second', n: 1 },
        { extension_id: 'core', name: '0002_workspace_snapshots', n: 1 },
        { extension_id: 'core', name: '0003_workspace_role_name', n: 1 },
        { extension_id: 'core', name: '0004_mark_workspace_schemas', n: 1 },
        { extension_id: 'core', name: '0005_snapshot_role_name', n: 1 },
        { extension_id: 'core', name: '0006_deferred_indexes', n: 1 },
        { extension_id: 'core', name: '0007_snapshot_readings', n: 1 },
        { extension_id: 'core', name: '0008_transient_memberships', n: 1 },
        { extension_id: 'core', name: '0009_ingest_staging', n: 1 },
        { extension_id: 'core', name: '0010_ingest_staging_storage', n: 1 },
        { extension_id: 'core', name: '0011_workspace_databases', n: 1 },
      ]);
      expect(await dbs[0]!.query(`SELECT count(*)::int AS n FROM project_registry.workspace_config`)).toEqual([{ n: 13 }]);
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
    }
  }, 60_000);

  it('the built server boots and provisions through it', async (ctx) => {
    const url = await through(ctx);
    const servers = await Promise.all(Array.from({ length: 4 }, () => startServerProcess(serverArgs(), { DATABASE_URL: url })));
    try {
      const results = await Promise.all(servers.map((s) => s.call('ensure_workspace', { project_id: 'via-bouncer' })));
      expect(results.filter((r) => r.isError)).toEqual([]);
      expect(results.filter((r) => r.data['created'] === true)).toHaveLength(1);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  }, 60_000);
});
