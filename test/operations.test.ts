import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import type { Database } from '../src/db/database.js';
import { PGliteDatabase } from '../src/db/embedded/pglite-database.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { INSTALL_LOCK_KEY } from '../src/installer/install-lock.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { diagnose, FINDING_CODES, type DoctorReport } from '../src/operations/doctor.js';
import { repair, type RepairOptions } from '../src/operations/repair.js';
import { roleNameFor } from '../src/sandbox/sandbox-ddl.js';
import { WorkspaceFleet } from '../src/workspaces/workspace-fleet.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { holdInstallLock, install, recording, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { BACKEND_KINDS, backendPerKind } from './support/backend-per-kind.js';

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 60_000);
afterAll(async () => cluster?.destroy());

const NOTES = 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);';
const V0 = {
  'schema.sql': 'CREATE TABLE IF NOT EXISTS public.note_kinds (kind text PRIMARY KEY);',
  'migrations/0001_kind_label.sql': 'ALTER TABLE public.note_kinds ADD COLUMN IF NOT EXISTS label text;',
  'workspace/schema.sql': NOTES,
  'workspace/migrations/0001_tags.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS tags text[];',
};
/** v1 adds a workspace migration: workspaces made by v0 lag behind it. */
const V1 = { ...V0, 'workspace/migrations/0002_pinned.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS pinned boolean NOT NULL DEFAULT false;' };
/** v1 with an applied global and an applied workspace migration edited in place. */
const V1_EDITED = {
  ...V1,
  'migrations/0001_kind_label.sql': 'ALTER TABLE public.note_kinds ADD COLUMN IF NOT EXISTS label text; -- reviewed',
  'workspace/migrations/0001_tags.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS tags text[]; -- reviewed',
};

const plan = async (files: Record<string, string>) => planFor([await writeExtension(await tempDir(), { id: 'notes' }, files)], ['codebase']);

/** The engine's services on `db` for `p`, as a server builds them (installing first). */
async function services(db: Database, p: InstallPlan) {
  const report = await install(db, p);
  const { workspaces: manager, sandbox: sql } = sandboxedWorkspaces(db, p, report.searchPathSchemas, silentLogger);
  return { manager, sql, fleet: new WorkspaceFleet(db, p, manager, sql) };
}

const codes = (r: DoctorReport) =>
  r.findings.map((f) => `${f.code}:${String(f.details['project_id'] ?? f.details['migration'] ?? f.details['role'] ?? '')}`).sort();
const FIXES: RepairOptions = { adoptOrphans: false, forgetMissing: false, restoreIndexes: false, acceptMigrations: [], dryRun: false };

/** Holds the install lock as a booting server would, until `release`. */
async function holdLock(db: Database, url: string | undefined): Promise<{ pid: number; release(): Promise<void> }> {
  if (url) return holdInstallLock(url);
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let held!: () => void;
  const holding = new Promise<void>((resolve) => (held = resolve));
  const done = db.tryExclusive(INSTALL_LOCK_KEY, { nameHolders: () => false, decide: (d) => d.locked }, async () => {
    held();
    await released;
  });
  await holding;
  return { pid: process.pid, release: () => (release(), done.then(() => undefined)) };
}

for (const kind of BACKEND_KINDS) {
  describe(`doctor and repair on ${kind}`, () => {
    const available = backendPerKind(kind, () => cluster);

    it('reports, with the same REVOKE, exactly what makes the SQL tools refuse to run', async (ctx) => {
      const db = await available(ctx).fresh();
      try {
        const v1 = await plan(V1);
        const { manager, sql } = await services(db, v1);
        await manager.ensure('open-check');
        expect((await diagnose(db, v1)).findings.filter((f) => f.code === 'privilege-missing')).toEqual([]);
        // A table outside the workspaces every role may reference: the tools refuse, and doctor says why.
        await db.exec('CREATE TABLE public.doctor_open (id int PRIMARY KEY); GRANT REFERENCES ON public.doctor_open TO PUBLIC');
        const refusal = await sql.query('open-check', 'SELECT 1', []).then(
          () => '',
          (error: unknown) => String(error),
        );
        const revoke = 'REVOKE REFERENCES, TRIGGER ON TABLE public.doctor_open FROM PUBLIC;';
        expect(refusal).toContain(revoke);
        const findings = (await diagnose(db, v1)).findings.filter((f) => f.code === 'privilege-missing');
        expect(findings.map((f) => f.details['grants'])).toEqual([[revoke]]);
        expect(findings[0]?.fix).toContain(revoke);
        // Fixed, both agree again.
        await db.exec(revoke);
        await expect(sql.query('open-check', 'SELECT 1 AS one', [])).resolves.toMatchObject({ rows: [[1]] });
        expect((await diagnose(db, v1)).findings.filter((f) => f.code === 'privilege-missing')).toEqual([]);
      } finally {
        await db.close();
      }
    });

    it('finds each planted fault, repair mends each on request, and doctor is clean afterwards', async (ctx) => {
      const backend = available(ctx);
      const url = kind === 'postgres' ? await backend.freshUrl?.() : undefined;
      const db = url ? new PostgresDatabase({ connectionString: url }) : await backend.fresh();
      try {
        const [v0, v1, edited] = [await plan(V0), await plan(V1), await plan(V1_EDITED)];
        const before = await diagnose(db, v1);
        expect(codes(before)).toEqual(['not-installed:']);
        expect(before.healthy).toBe(false);

        // ws-old is made by v0, the rest by v1: ws-old lags behind 0002_pinned.
        await (await services(db, v0)).manager.ensure('ws-old');
        const { manager, sql, fleet } = await services(db, v1);
        for (const id of ['ws-a', 'ws-lost', 'ws-orphan', 'ws-vanished']) await manager.ensure(id);
        // The SQL tools give each its role.
        for (const id of ['ws-lost', 'ws-orphan', 'ws-vanished']) await sql.execute(id, "INSERT INTO notes (body) VALUES ('kept')", []);
        const [{ database } = { database: '' }] = await db.query<{ database: string }>('SELECT current_database()::text AS database');
        const lostRole = roleNameFor(database, 'ws-lost');
        const vanishedRole = roleNameFor(database, 'ws-vanished');

        // Plant: a lost schema, an orphan that matches the workspace DDL, one that does not, a
        // workspace removed by hand but for its role, the lock held.
        await db.exec('DROP SCHEMA project_ws_lost CASCADE');
        await db.exec(`DROP SCHEMA project_ws_vanished CASCADE; DELETE FROM project_registry.workspace_config WHERE project_id = 'ws-vanished'`);
        await db.query(`DELETE FROM project_registry.workspace_config WHERE project_id = 'ws-orphan'`);
        await db.exec('CREATE SCHEMA project_junk; CREATE TABLE project_junk.notes (id int);');
        const lock = await holdLock(db, url);
        let faulty: DoctorReport;
        try {
          faulty = await diagnose(db, v1);
        } finally {
          await lock.release();
        }
        expect(codes(faulty)).toEqual([
          'install-lock-held:',
          'lost-schema:ws-lost',
          `orphan-role:${vanishedRole}`,
          'orphan-schema:junk',
          'orphan-schema:ws-orphan',
          'workspaces-lagging:',
        ]);
        expect(faulty.healthy).toBe(false);
        expect(faulty.install_lock.holders.map((h) => h.pid)).toEqual([lock.pid]);
        const lagging = faulty.findings.find((f) => f.code === 'workspaces-lagging');
        expect(lagging?.details).toMatchObject({ count: 1, project_ids: ['ws-old'] });
        expect(lagging?.message).toBe('1 of 3 workspace(s) lag behind the workspace DDL and migrations (ws-old); pending: notes/0002_pinned in 1.');
        // doctor and workspace_status share the fleet status computation, and agree.
        const status = await fleet.fleetStatus();
        expect(faulty.fleet).toEqual({ workspaces: status.workspaces, up_to_date: status.upToDate, lagging: status.lagging, pending: status.pending });
        expect(faulty.fleet).toMatchObject({ workspaces: 3, lagging: 1, pending: [{ migration: 'notes/0002_pinned', workspaces: 1 }] });
        for (const f of faulty.findings) expect(FINDING_CODES).toContain(f.code);

        // A dry run reports what it would do and changes nothing.
        const dry = await repair(db, v1, { ...FIXES, adoptOrphans: true, forgetMissing: true, dryRun: true });
        expect(dry.map((a) => `${a.fix}:${a.subject}:${a.outcome}`)).toEqual([
          'forget-missing:ws-lost:changed',
          `forget-missing:${vanishedRole}:changed`,
          'adopt-orphan:junk:refused',
          'adopt-orphan:ws-orphan:changed',
        ]);
        expect(codes(await diagnose(db, v1))).toEqual([
          'lost-schema:ws-lost',
          `orphan-role:${vanishedRole}`,
          'orphan-schema:junk',
          'orphan-schema:ws-orphan',
          'workspaces-lagging:',
        ]);

        const mended = await repair(db, v1, { ...FIXES, adoptOrphans: true, forgetMissing: true });
        const junk = mended.find((a) => a.subject === 'junk');
        expect(junk?.reason).toContain('notes.body is missing');
        expect(mended.find((a) => a.subject === 'ws-lost')?.changes.join('\n')).toMatch(/deleted 1 registry row and 2 ledger row\(s\)[\s\S]*dropped its role/);
        const roles = await db.query<{ rolname: string }>('SELECT rolname::text FROM pg_roles WHERE rolname = ANY ($1::text[])', [[lostRole, vanishedRole]]);
        expect(roles).toEqual([]);
        // The adopted workspace is a workspace again: current, with its data, usable by the SQL tools.
        const fresh = await services(db, v1);
        expect(await fresh.manager.ensure('ws-orphan')).toMatchObject({ created: false });
        expect((await fresh.sql.query('ws-orphan', 'SELECT body FROM notes', [])).rows).toEqual([['kept']]);
        expect(await fresh.fleet.status('ws-orphan')).toMatchObject({ upToDate: true, pending: [] });

        // What is left is for the operator (drop the junk) and migrate-workspaces (the lagging one).
        expect(codes(await diagnose(db, v1))).toEqual(['orphan-schema:junk', 'workspaces-lagging:']);
        await db.exec('DROP SCHEMA project_junk CASCADE');
        expect(await fresh.fleet.upgrade({ concurrency: 1 })).toMatchObject({ upgraded: 1, failed: 0 });
        const clean = await diagnose(db, v1);
        expect(clean.findings).toEqual([]);
        expect(clean.healthy).toBe(true);

        // Edited migrations: drift in both ledgers; boot refuses until they are accepted.
        const drifted = await diagnose(db, edited);
        expect(codes(drifted)).toEqual([
          'install-outdated:',
          'migration-drift:notes/0001_kind_label',
          'workspace-migration-drift:notes/0001_tags',
          'workspaces-lagging:',
        ]);
        await expect(install(db, edited)).rejects.toThrow(/was changed after it was applied/);
        const accepted = await repair(db, edited, { ...FIXES, acceptMigrations: ['notes/0001_kind_label', 'notes/0001_tags'] });
        expect(accepted.map((a) => `${a.subject}:${a.outcome}`)).toEqual(['notes/0001_kind_label:changed', 'notes/0001_tags:changed']);
        expect(accepted[1]?.changes).toEqual([expect.stringMatching(/^3 workspace ledger row\(s\) re-stamped/)]);
        expect(codes(await diagnose(db, edited))).toEqual(['install-outdated:', 'workspaces-lagging:']);
        const next = await services(db, edited);
        expect(await next.fleet.upgrade({ concurrency: 1 })).toMatchObject({ upgraded: 3, failed: 0 });
        expect((await diagnose(db, edited)).findings).toEqual([]);
        await expect(repair(db, edited, { ...FIXES, acceptMigrations: ['notes/0009_nope'] })).rejects.toThrow(/no enabled extension has a migration of that name/);
      } finally {
        if (url) await db.close();
      }
    }, 120_000);

    it('adopts an orphan behind on workspace migrations at the level it matches, and migrate-workspaces applies the rest', async (ctx) => {
      const backend = available(ctx);
      const db = await backend.fresh();
      // A second extension, so each one's level is found on its own: tasks is at its full level.
      const tasks = await writeExtension(await tempDir(), { id: 'tasks' }, {
        'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS tasks (id int);',
        'workspace/migrations/0001_done.sql': 'ALTER TABLE tasks ADD COLUMN IF NOT EXISTS done boolean;',
        'workspace/migrations/0002_due.sql': 'ALTER TABLE tasks ADD COLUMN IF NOT EXISTS due date;',
      });
      const withTasks = async (files: Record<string, string>) => planFor([await writeExtension(await tempDir(), { id: 'notes' }, files), tasks], ['codebase']);
      const [v0, v1] = [await withTasks(V0), await withTasks(V1)];
      // Restored from a backup taken under v0: made by v0 (notes/0001_tags, no 0002_pinned), its registry row gone.
      await (await services(db, v0)).manager.ensure('ws-restored');
      await db.exec(`INSERT INTO project_ws_restored.notes (body, tags) VALUES ('kept', '{a}')`);
      await db.query(`DELETE FROM project_registry.workspace_config WHERE project_id = 'ws-restored'`);
      // Matches no level: notes has no body at any of them.
      await db.exec('CREATE SCHEMA project_nomatch; CREATE TABLE project_nomatch.notes (id bigint, tags text[]); CREATE TABLE project_nomatch.tasks (id int);');
      const { fleet, sql } = await services(db, v1);

      // No SQL tool has run in this database: the adoption writes the shared sandbox body its function calls.
      const actions = await repair(db, v1, { ...FIXES, adoptOrphans: true });
      expect(actions.map((a) => `${a.subject}:${a.outcome}`)).toEqual(['nomatch:refused', 'ws-restored:changed']);
      expect(actions[0]?.reason).toContain('notes.body is missing');
      const adopted = actions[1]?.changes.join('\n');
      expect(adopted).toContain('with 3 ledger row(s)');
      expect(adopted).toContain('adopted at the level before notes/0002_pinned');
      expect(await fleet.status('ws-restored')).toMatchObject({ upToDate: false, applied: ['notes/0001_tags', 'tasks/0001_done', 'tasks/0002_due'], pending: ['notes/0002_pinned'] });

      expect(await fleet.upgrade({ concurrency: 1 })).toMatchObject({ upgraded: 1, failed: 0 });
      expect(await fleet.status('ws-restored')).toMatchObject({ upToDate: true, pending: [] });
      expect(await db.query(`SELECT body, tags, pinned FROM project_ws_restored.notes`)).toEqual([{ body: 'kept', tags: ['a'], pinned: false }]);
      expect(codes(await diagnose(db, v1))).toEqual(['orphan-schema:nomatch']);
      expect((await sql.query('ws-restored', 'SELECT body, pinned FROM notes', [])).rows).toEqual([['kept', false]]);
    }, 120_000);

    it('reports a snapshot schema no snapshot is registered for (a copy that never finished), and no registered one', async (ctx) => {
      const db = await available(ctx).fresh();
      const v1 = await plan(V1);
      const { manager } = await services(db, v1);
      await manager.ensure('snappy');
      const taken = await manager.snapshot('snappy');
      // What a Citus snapshot leaves when its process stops between its steps: the prepared schema, no row.
      await db.exec('CREATE SCHEMA project_snappy__snap_7');
      const leftovers = async () => (await diagnose(db, v1)).findings.filter((f) => f.code === 'snapshot-leftover');
      const [found, ...more] = await leftovers();
      expect(more).toEqual([]);
      expect(found?.details).toEqual({ project_id: 'snappy', schema_name: 'project_snappy__snap_7', snapshot: 7 });
      expect(found?.fix).toContain('DROP SCHEMA "project_snappy__snap_7" CASCADE');
      await db.exec('DROP SCHEMA project_snappy__snap_7 CASCADE');
      expect(await leftovers()).toEqual([]);
      expect((await manager.listSnapshots('snappy')).map((s) => s.snapshot)).toEqual([taken.snapshot]);
    }, 120_000);

    it('reads in one read-only transaction, so PostgreSQL refuses any write in it', async (ctx) => {
      const backend = available(ctx);
      const db = await backend.fresh();
      const v1 = await plan(V1);
      await (await services(db, v1)).manager.ensure('ws-a');
      const { db: recorded, calls } = recording(db);
      expect((await diagnose(recorded, v1)).healthy).toBe(true);
      expect(calls.slice(0, 2)).toEqual(['BEGIN', 'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY']);
      // Every statement doctor sent ran inside it: none before BEGIN, and (one transaction) no other BEGIN.
      expect(calls.filter((c) => c === 'BEGIN')).toHaveLength(1);
      await expect(
        db.transaction(async (tx) => {
          await tx.query(calls[1] as string);
          await tx.query('DELETE FROM project_registry.workspace_config');
        }),
      ).rejects.toThrow(/read-only transaction/);
    });
  });
}

describe('the install lock of the embedded store', () => {
  it('is not reported held when its holder was killed (its pid stays in the lock file, the kernel freed the lock)', async () => {
    const dir = await tempDir();
    const db = await PGliteDatabase.open(dir);
    try {
      const v1 = await plan(V1);
      await install(db, v1);
      // What a holder killed mid-install leaves behind: the file's text, no lock.
      await writeFile(path.join(dir, `lock-${INSTALL_LOCK_KEY.toString(16)}`), `999999 ${Date.now() - 60_000}\n`);
      const report = await diagnose(db, v1);
      expect(report.install_lock).toEqual({ held: false, holders: [] });
      expect(report.healthy).toBe(true);
    } finally {
      await db.close();
    }
  });
});

describe('repair --forget-missing racing ensure_workspace on PostgreSQL', () => {
  it('one wins cleanly each time: the workspace ends whole (registry row, schema, ledger), never forgotten while it exists', async (ctx) => {
    if (!cluster) ctx.skip();
    const db = new PostgresDatabase({ connectionString: await (cluster as PgCluster).createDatabase('race'), maxConnections: 6 });
    try {
      const v1 = await plan(V1);
      const report = await install(db, v1);
      const outcomes = new Set<string>();
      for (let round = 0; round < 6; round++) {
        await new WorkspaceManager(db, v1, report.searchPathSchemas, silentLogger).ensure('contested');
        await db.exec('DROP SCHEMA project_contested CASCADE');
        // A manager with an empty cache, as another server process would have.
        const other = new WorkspaceManager(db, v1, report.searchPathSchemas, silentLogger);
        const [actions, ensured] = await Promise.all([repair(db, v1, { ...FIXES, forgetMissing: true }), other.ensure('contested')]);
        outcomes.add(`${actions[0]?.outcome}`);
        expect(ensured.created).toBe(true);
        const [state] = await db.query<{ registered: boolean; schema: boolean; ledger: number }>(
          `SELECT EXISTS (SELECT FROM project_registry.workspace_config WHERE project_id = 'contested') AS registered,
                  to_regnamespace('project_contested') IS NOT NULL AS schema,
                  (SELECT count(*)::int FROM project_registry.workspace_migrations WHERE project_id = 'contested') AS ledger`,
        );
        // Whoever went first, ensure's workspace is whole: forgetting comes before it or not at all.
        expect(state).toEqual({ registered: true, schema: true, ledger: 2 });
        expect((await diagnose(db, v1)).findings).toEqual([]);
      }
      // Forgot first (changed), found it re-created under the lock (unchanged), or listed nothing lost (undefined): never failed.
      expect([...outcomes].filter((o) => !['changed', 'unchanged', 'undefined'].includes(o))).toEqual([]);
    } finally {
      await db.close();
    }
  }, 120_000);
});

describe('doctor on PostgreSQL: extensions and privileges', () => {
  it('reports a required extension not created or not available, and each privilege the role lacks with the statement that grants it', async (ctx) => {
    if (!cluster) ctx.skip();
    const c = cluster as PgCluster;
    const url = await c.createDatabase('doctor');
    const database = new URL(url).pathname.slice(1);
    const admin = new PostgresDatabase({ connectionString: url });
    const limited = new PostgresDatabase({ connectionString: c.url(database, 'doctor_limited') });
    try {
      const root = await tempDir();
      const needy = await planFor(
        [
          await writeExtension(root, { id: 'trgm-user', requires: ['pg_trgm'] }),
          await writeExtension(root, { id: 'exotic', requires: ['no_such_extension'] }),
        ],
        ['codebase'],
      );
      const missing = (await diagnose(admin, needy)).findings.filter((f) => f.code === 'pg-extension-missing');
      expect(missing.map((f) => [f.details['extension'], f.severity])).toEqual([
        ['no_such_extension', 'error'],
        ['pg_trgm', 'warning'],
      ]);
      expect(missing[0]?.fix).toContain('--disable exotic');

      const v1 = await plan(V1);
      await install(admin, v1);
      await c.sql(`DROP ROLE IF EXISTS doctor_limited; CREATE ROLE doctor_limited LOGIN`);
      await admin.exec(`GRANT USAGE ON SCHEMA project_registry TO doctor_limited;
        GRANT SELECT ON ALL TABLES IN SCHEMA project_registry TO doctor_limited;`);
      const report = await diagnose(limited, v1);
      const privileges = report.findings.filter((f) => f.code === 'privilege-missing');
      expect(privileges.map((f) => f.details['privilege'])).toEqual([
        'CREATE on database',
        'the rights of the registry owner "postgres"',
        'CREATEROLE',
      ]);
      expect(privileges.flatMap((f) => f.details['grants'] as string[])).toEqual([
        `GRANT CREATE ON DATABASE "${database}" TO "doctor_limited";`,
        expect.stringContaining('"postgres" is a superuser, whose rights a server should not share'),
        'ALTER ROLE "doctor_limited" CREATEROLE;',
      ]);
      expect(report.healthy).toBe(false);
      await c.sql(`GRANT CREATE ON DATABASE "${database}" TO doctor_limited; ALTER ROLE doctor_limited CREATEROLE`);
      expect((await diagnose(limited, v1)).findings.map((f) => f.details['privilege'])).toEqual(['the rights of the registry owner "postgres"']);
    } finally {
      await limited.close();
      await admin.close();
      await c.sql('DROP OWNED BY doctor_limited CASCADE; DROP ROLE IF EXISTS doctor_limited').catch(() => undefined);
    }
  }, 60_000);
});
