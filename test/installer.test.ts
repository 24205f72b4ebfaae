import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { InstallError } from '../src/installer/install-error.js';
import { InstallLockTimeoutError } from '../src/installer/install-lock.js';
import { InstallPlanError } from '../src/installer/install-plan.js';
import { holdInstallLock, install, planFor, recording, tempDir, writeExtension } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { pgliteWithoutPgvector } from './support/pglite-without-pgvector.js';
import { BACKEND_KINDS, backendPerKind } from './support/backend-per-kind.js';

let cluster: PgCluster | null = null;

beforeAll(async () => {
  cluster = await startPgCluster();
}, 60_000);

afterAll(async () => {
  await cluster?.destroy();
});

/** Two user extensions exercising every phase: b reads a's table through uses_tables. */
async function phasedExtensions(root: string) {
  const a = await writeExtension(
    root,
    { id: 'alpha', required_columns: { 'public.alpha_items': ['id', 'extra'] } },
    {
      'schema.sql': `CREATE TABLE IF NOT EXISTS alpha_items (id int PRIMARY KEY, name text);
                     -- the index needs the column that migration 0001 adds: dependent DDL runs after migrations
                     CREATE INDEX IF NOT EXISTS alpha_items_extra_idx ON alpha_items (extra);`,
      'migrations/0001_add_extra.sql': 'ALTER TABLE alpha_items ADD COLUMN IF NOT EXISTS extra int;',
      'migrations/0002_backfill.sql': 'UPDATE alpha_items SET extra = 0 WHERE extra IS NULL;',
      'seeds/items.sql': `INSERT INTO alpha_items (id, name, extra) VALUES (1, 'seeded', 1) ON CONFLICT (id) DO NOTHING;`,
    },
  );
  const b = await writeExtension(
    root,
    { id: 'beta', uses_tables: ['public.alpha_items'] },
    {
      'schema.sql': `CREATE OR REPLACE VIEW beta_view AS SELECT id, extra FROM alpha_items;
                     CREATE TABLE IF NOT EXISTS beta_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);`,
    },
  );
  return [a, b];
}

for (const kind of BACKEND_KINDS) {
  describe(`extension installer on ${kind}`, () => {
    // Debian's PostgreSQL 15 has no pgvector: the real-server runs go without `codebase`.
    const disabled = kind === 'postgres' ? ['codebase'] : [];

    const available = backendPerKind(kind, () => cluster);

    it('runs structural DDL, migrations, dependent DDL, column checks and seeds in that order', async (ctx) => {
      const root = await tempDir();
      const plan = await planFor(await phasedExtensions(root), disabled);
      const { db, calls } = recording(await available(ctx).fresh());

      const report = await install(db, plan);

      expect(report.outcome).toBe('installed');
      const at = (needle: string) => calls.findIndex((sql) => sql.includes(needle));
      expect(at('CREATE TABLE IF NOT EXISTS alpha_items')).toBeGreaterThan(-1);
      expect(at('CREATE TABLE IF NOT EXISTS beta_log')).toBeLessThan(at('ADD COLUMN IF NOT EXISTS extra'));
      expect(at('ADD COLUMN IF NOT EXISTS extra')).toBeLessThan(at('UPDATE alpha_items'));
      expect(at('UPDATE alpha_items')).toBeLessThan(at('CREATE INDEX IF NOT EXISTS alpha_items_extra_idx'));
      expect(at('CREATE INDEX IF NOT EXISTS alpha_items_extra_idx')).toBeLessThan(at('CREATE OR REPLACE VIEW beta_view'));
      expect(at('CREATE OR REPLACE VIEW beta_view')).toBeLessThan(at('INSERT INTO alpha_items'));

      const alpha = report.extensions.find((e) => e.id === 'alpha');
      expect(alpha?.phases.migrations).toMatchObject({ status: 'applied', applied: ['0001_add_extra', '0002_backfill'] });
      expect(alpha?.phases.seeds).toMatchObject({ status: 'applied', statements: 1 });
      expect(await db.query('SELECT id, name, extra FROM alpha_items')).toEqual([{ id: 1, name: 'seeded', extra: 1 }]);
      // One ledger row per migration applied: alpha's two, and core's own, whatever they are now.
      const coreMigrations = plan.extensions.find((p) => p.extension.id === 'core')?.migrations.map((m) => m.migration.name) ?? [];
      expect(coreMigrations.length).toBeGreaterThan(0);
      expect(await db.query('SELECT extension_id, name FROM project_registry.schema_migrations ORDER BY 1, 2')).toEqual([
        { extension_id: 'alpha', name: '0001_add_extra' },
        { extension_id: 'alpha', name: '0002_backfill' },
        ...coreMigrations.sort().map((name) => ({ extension_id: 'core', name })),
      ]);
    });

    it('does no DDL on a warm boot: one query, no lock', async (ctx) => {
      const root = await tempDir();
      const plan = await planFor(await phasedExtensions(root), disabled);
      const fresh = await available(ctx).fresh();
      await install(fresh, plan);

      const { db, calls } = recording(fresh);
      const report = await install(db, plan);

      expect(report.outcome).toBe('up-to-date');
      // One query, which also tells whether the database is a Citus coordinator.
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatch(/^SELECT fingerprint, search_path_schemas,[^;]* FROM project_registry\.install_state$/s);
    });

    it('re-runs the install when an extension changes, applying only what is new', async (ctx) => {
      const root = await tempDir();
      const dirs = await phasedExtensions(root);
      const db = await available(ctx).fresh();
      await install(db, await planFor(dirs, disabled));
      await writeFile(path.join(dirs[0] as string, 'migrations/0003_more.sql'), 'ALTER TABLE alpha_items ADD COLUMN IF NOT EXISTS more int;');

      const report = await install(db, await planFor(dirs, disabled));

      expect(report.outcome).toBe('installed');
      expect(report.extensions.find((e) => e.id === 'alpha')?.phases.migrations?.applied).toEqual(['0003_more']);
    });

    it('refuses to boot when an applied migration was edited, naming the file and both checksums', async (ctx) => {
      const root = await tempDir();
      const dirs = await phasedExtensions(root);
      const db = await available(ctx).fresh();
      const before = await planFor(dirs, disabled);
      await install(db, before);
      const oldChecksum = before.extensions.find((p) => p.extension.id === 'alpha')?.migrations[0]?.migration.checksum;
      await writeFile(path.join(dirs[0] as string, 'migrations/0001_add_extra.sql'), 'ALTER TABLE alpha_items ADD COLUMN IF NOT EXISTS extra bigint;');
      const after = await planFor(dirs, disabled);
      const newChecksum = after.extensions.find((p) => p.extension.id === 'alpha')?.migrations[0]?.migration.checksum;

      const failure = await install(db, after).catch((e: unknown) => e);

      expect(failure).toBeInstanceOf(InstallError);
      expect((failure as Error).message).toContain('alpha/migrations/0001_add_extra.sql');
      expect((failure as Error).message).toContain(String(oldChecksum));
      expect((failure as Error).message).toContain(String(newChecksum));
      expect(oldChecksum).not.toBe(newChecksum);
    });

    it('rolls back a failed phase and names the extension, file, statement, SQL and PostgreSQL message', async (ctx) => {
      const root = await tempDir();
      const dir = await writeExtension(root, { id: 'broken' }, {
        'schema.sql': `CREATE TABLE IF NOT EXISTS broken_ok (id int PRIMARY KEY);\n\nCREATE TABLE IF NOT EXISTS broken_bad (id int REFERENCES missing_table (id));\n`,
      });
      const db = await available(ctx).fresh();

      const failure = await install(db, await planFor([dir], disabled)).catch((e: unknown) => e);

      expect(failure).toBeInstanceOf(InstallError);
      const message = (failure as Error).message;
      expect(message).toContain('Extension "broken", structural phase');
      expect(message).toContain('broken/schema.sql statement 2/2 (line 3)');
      expect(message).toContain('relation "missing_table" does not exist (SQLSTATE 42P01)');
      expect(message).toContain('REFERENCES missing_table');
      expect(await db.query(`SELECT to_regclass('public.broken_ok') AS t`)).toEqual([{ t: null }]);
    });

    it('fails the column phase when a required column is missing', async (ctx) => {
      const root = await tempDir();
      const dir = await writeExtension(root, { id: 'needy', required_columns: { 'public.needy_t': ['id', 'absent'] } }, {
        'schema.sql': 'CREATE TABLE IF NOT EXISTS needy_t (id int);',
      });
      const failure = await install(await available(ctx).fresh(), await planFor([dir], disabled)).catch((e: unknown) => e);
      expect((failure as Error).message).toContain('Extension "needy", columns phase: required columns missing from public.needy_t: absent');
    });
  });
}

describe('install plan', () => {
  it('fails boot when two extensions create the same table, naming both', async () => {
    const root = await tempDir();
    const one = await writeExtension(root, { id: 'one' }, { 'schema.sql': 'CREATE TABLE IF NOT EXISTS shared_t (id int);' });
    const two = await writeExtension(root, { id: 'two' }, { 'schema.sql': 'CREATE TABLE IF NOT EXISTS public.shared_t (id int);' });

    const failure = await planFor([one, two]).catch((e: unknown) => e);

    expect(failure).toBeInstanceOf(InstallPlanError);
    expect((failure as Error).message).toMatch(/"one" and "two" both create table public\.shared_t/);
  });

  it('fails boot when uses_tables names a table no other enabled extension owns', async () => {
    const root = await tempDir();
    const reader = await writeExtension(root, { id: 'reader', uses_tables: ['public.nobody_owns_this'] });

    const failure = await planFor([reader]).catch((e: unknown) => e);

    expect(failure).toBeInstanceOf(InstallPlanError);
    expect((failure as Error).message).toContain('"reader" lists "public.nobody_owns_this" in uses_tables');
  });
});

describe('extension installer on a database without pgvector', () => {
  // Without a built template PGlite's initdb takes seconds, more on a loaded machine.
  it('names the extension that needs pgvector and how to get it', { timeout: 240_000 }, async () => {
    // PGlite without its pgvector bundle lacks `vector`, whatever the machine has installed.
    const db = await pgliteWithoutPgvector();
    try {
      const failure = await install(db, await planFor([])).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(InstallError);
      const message = (failure as Error).message;
      expect(message).toContain('Extension "codebase"');
      expect(message).toContain('"vector"');
      expect(message).toContain('pgvector/pgvector');
      expect(message).toContain('postgresql-<major>-pgvector');
      expect(message).toContain('PG_WORKSPACE_DISABLED_EXTENSIONS=codebase');
      expect(await db.query(`SELECT to_regnamespace('project_registry') AS s`)).toEqual([{ s: null }]);
    } finally {
      await db.close();
    }
  });
});

describe('extension installer on a real PostgreSQL server', () => {
  const server = (ctx: TestContext) => {
    if (!cluster) ctx.skip();
    return cluster as PgCluster;
  };

  it('names a PostgreSQL extension the server does not have and the extension that needs it, before any DDL', { timeout: 120_000 }, async (ctx) => {
    // An extension no server can have: the condition holds whatever this server has installed.
    const needy = await writeExtension(await tempDir(), { id: 'needs-missing', requires: ['pgw_no_such_extension'] });
    const db = new PostgresDatabase({ connectionString: await server(ctx).createDatabase('noext') });
    try {
      const failure = await install(db, await planFor([needy], ['codebase'])).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(InstallError);
      const message = (failure as Error).message;
      expect(message).toContain('Extension "needs-missing"');
      expect(message).toContain('needs the PostgreSQL extension "pgw_no_such_extension", which this server does not have');
      expect(message).toContain('Install "pgw_no_such_extension" on the server.');
      // The check comes before any DDL: nothing was created.
      expect(await db.query(`SELECT to_regnamespace('project_registry') AS s`)).toEqual([{ s: null }]);
    } finally {
      await db.close();
    }
  });

  it('20 concurrent installs apply each migration exactly once', async (ctx) => {
    const cluster = server(ctx);
    const root = await tempDir();
    const dir = await writeExtension(root, { id: 'slow' }, {
      'schema.sql': 'CREATE TABLE IF NOT EXISTS slow_t (id int PRIMARY KEY);',
      // pg_sleep widens the window in which the other installers pile up on the lock.
      'migrations/0001_first.sql': 'SELECT pg_sleep(0.05); ALTER TABLE slow_t ADD COLUMN IF NOT EXISTS a int;',
      'migrations/0002_second.sql': 'SELECT pg_sleep(0.05); INSERT INTO slow_t (id, a) VALUES (1, 1);',
      'migrations/0003_third.sql': 'UPDATE slow_t SET a = a + 1;',
    });
    const plan = await planFor([dir], ['codebase']);
    const url = await cluster.createDatabase('concurrent');
    const dbs = Array.from({ length: 20 }, () => new PostgresDatabase({ connectionString: url }));
    try {
      const reports = await Promise.all(dbs.map((db) => install(db, plan)));
      expect(reports.filter((r) => r.outcome === 'installed')).toHaveLength(1);
      expect(reports.filter((r) => r.outcome === 'up-to-date')).toHaveLength(19);
      const ledger = await dbs[0]!.query(
        `SELECT extension_id, name, count(*)::int AS n FROM project_registry.schema_migrations GROUP BY 1, 2 ORDER BY 1, 2`,
      );
      // Every migration of the plan (slow's three and core's own) has exactly one ledger row.
      const planned = plan.extensions
        .flatMap((p) => p.migrations.map((m) => ({ extension_id: p.extension.id, name: m.migration.name, n: 1 })))
        .sort((a, b) => `${a.extension_id}/${a.name}`.localeCompare(`${b.extension_id}/${b.name}`));
      expect(planned.filter((m) => m.extension_id === 'slow')).toHaveLength(3);
      expect(ledger).toEqual(planned);
      // Exactly once shows in the data too: the UPDATE ran a single time.
      expect(await dbs[0]!.query('SELECT id, a FROM slow_t')).toEqual([{ id: 1, a: 2 }]);
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
    }
  }, 60_000);

  it('waits for a held install lock, then fails with the holder named once the timeout passes', async (ctx) => {
    const url = await server(ctx).createDatabase('locked');
    const lock = await holdInstallLock(url);
    const db = new PostgresDatabase({ connectionString: url });
    try {
      const started = Date.now();
      const failure = await install(db, await planFor([], ['codebase']), 600).catch((e: unknown) => e);
      expect(Date.now() - started).toBeGreaterThanOrEqual(600);
      expect(failure).toBeInstanceOf(InstallLockTimeoutError);
      expect((failure as Error).message).toContain(`pid ${lock.pid} (pg-workspace-mcp`);
      expect((failure as Error).message).toContain('PG_WORKSPACE_LOCK_TIMEOUT_MS');

      await lock.release();
      expect((await install(db, await planFor([], ['codebase']), 600)).outcome).toBe('installed');
    } finally {
      await lock.release();
      await db.close();
    }
  });
});
