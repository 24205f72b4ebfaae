import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PGliteDatabase } from '../src/db/embedded/pglite-database.js';
import { InstallError } from '../src/installer/install-error.js';
import { install, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { startServerProcess, type ServerProcess } from './support/server-process.js';
import { BACKEND_KINDS, backendPerKind } from './support/backend-per-kind.js';

/**
 * The rules of test/unit/extension-rules.test.ts, through the real boot (the built server on
 * the embedded store): a refused extension is named with its file, statement and fix, and the
 * database is left as the last good install made it. The rules run on the parsed SQL before
 * the database is opened, so what holds here holds for every backend.
 */
describe('extension rules at boot', () => {
  const servers: ServerProcess[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close().catch(() => undefined)));
  });

  const boot = async (dataDir: string, extensions: string[]) => {
    const server = await startServerProcess(['--data-dir', dataDir, ...extensions.flatMap((e) => ['--extensions', e])], {
      PG_WORKSPACE_LOG_LEVEL: 'warn',
    });
    servers.push(server);
    return server;
  };

  it("refuses an extension whose seed drops another's table, and installs nothing of it", { timeout: 180_000 }, async () => {
    const root = await tempDir();
    const dataDir = await tempDir('pgw-rules-');
    const owner = await writeExtension(root, { id: 'owner' }, {
      'schema.sql': 'CREATE TABLE IF NOT EXISTS public.owner_items (id int PRIMARY KEY, label text);',
      'seeds/items.sql': "INSERT INTO public.owner_items VALUES (1, 'kept') ON CONFLICT (id) DO NOTHING;",
    });
    const vandal = await writeExtension(root, { id: 'vandal' }, {
      'schema.sql': 'CREATE TABLE IF NOT EXISTS public.vandal_log (id int PRIMARY KEY);',
      'migrations/0001_start.sql': "INSERT INTO public.vandal_log VALUES (1);",
      'seeds/cleanup.sql': 'DROP TABLE IF EXISTS public.owner_items;',
    });

    const first = await boot(dataDir, [owner]);
    const made = await first.call('ensure_workspace', { project_id: 'before' });
    expect(made.isError, made.text).toBe(false);
    await first.close();

    const second = await boot(dataDir, [owner, vandal]);
    const refused = await second.call('ensure_workspace', { project_id: 'after' });
    expect(refused.isError).toBe(true);
    expect(refused.text).toContain('Extension "vandal", vandal/seeds/cleanup.sql statement 1 (line 1): DROP TABLE IF EXISTS public.owner_items');
    expect(refused.text).toContain('Seeds hold data only (INSERT ... ON CONFLICT), and this is DROP TABLE.');
    expect(refused.text).toContain('Fix: put DDL in schema.sql');
    await second.close();

    const db = await PGliteDatabase.open(dataDir);
    try {
      expect(await db.query('SELECT id, label FROM public.owner_items')).toEqual([{ id: 1, label: 'kept' }]);
      // Not even vandal's harmless parts ran: its table, its migration, the new workspace.
      expect(await db.query(`SELECT to_regclass('public.vandal_log')::text AS t`)).toEqual([{ t: null }]);
      expect(await db.query(`SELECT extension_id FROM project_registry.schema_migrations WHERE extension_id = 'vandal'`)).toEqual([]);
      expect(await db.query('SELECT project_id FROM project_registry.workspace_config ORDER BY 1')).toEqual([{ project_id: 'before' }]);
      const [state] = await db.query<{ extensions: { id: string }[] }>('SELECT extensions FROM project_registry.install_state');
      expect(state?.extensions.map((e) => e.id)).toEqual(['core', 'codebase', 'owner']);
    } finally {
      await db.close();
    }
  });
});

/**
 * What the parser accepts but a second run would break: seeds run twice in their transaction at
 * every install, so PostgreSQL refuses them now rather than on the next boot.
 */
let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 60_000);
afterAll(async () => {
  await cluster?.destroy();
});

for (const kind of BACKEND_KINDS) {
  describe(`seeds run twice at install, on ${kind}`, () => {
    // Debian's PostgreSQL 15 has no pgvector: the real-server runs go without `codebase`.
    const disabled = kind === 'postgres' ? ['codebase'] : [];
    const available = backendPerKind(kind, () => cluster);

    const seeding = async (schema: string, seed: string) =>
      planFor([await writeExtension(await tempDir(), { id: 'tags' }, { 'schema.sql': schema, 'seeds/tags.sql': seed })], disabled);

    it('refuses a seed whose ON CONFLICT names a key other than the one its rows collide on, keeping none of its rows', async (ctx) => {
      const db = await available(ctx).fresh();
      const plan = await seeding(
        'CREATE TABLE IF NOT EXISTS public.tags (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text UNIQUE);',
        "INSERT INTO public.tags (name) VALUES ('todo') ON CONFLICT (id) DO NOTHING;",
      );

      const failure = await install(db, plan).catch((e: unknown) => e);

      expect(failure).toBeInstanceOf(InstallError);
      const message = (failure as Error).message;
      expect(message).toContain('Extension "tags", seeds phase: tags/seeds/tags.sql statement 1/1 (line 1): the seeds are not idempotent');
      expect(message).toContain('Running it a second time, as the next install will, failed: duplicate key value violates unique constraint "tags_name_key"');
      expect(message).toContain('ON CONFLICT (that_key), or use ON CONFLICT DO NOTHING without a key.');
      expect(await db.query('SELECT count(*)::int AS n FROM public.tags')).toEqual([{ n: 0 }]);
      expect(await db.query(`SELECT to_regclass('project_registry.install_state') IS NULL OR NOT EXISTS (SELECT 1 FROM project_registry.install_state) AS none`)).toEqual([{ none: true }]);
    });

    it('refuses a seed whose ON CONFLICT never fires, as every install would add its rows again', async (ctx) => {
      const db = await available(ctx).fresh();
      const plan = await seeding(
        'CREATE TABLE IF NOT EXISTS public.tags (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);',
        "INSERT INTO public.tags (name) VALUES ('todo'), ('idea') ON CONFLICT DO NOTHING;",
      );

      const failure = await install(db, plan).catch((e: unknown) => e);

      expect(failure).toBeInstanceOf(InstallError);
      expect((failure as Error).message).toContain(
        'Running the seeds a second time, as the next install will, added 2 more row(s) to public.tags: their ON CONFLICT never fires.',
      );
      expect(await db.query('SELECT count(*)::int AS n FROM public.tags')).toEqual([{ n: 0 }]);
    });

    it('installs an upsert seed, which a second run leaves as it was', async (ctx) => {
      const db = await available(ctx).fresh();
      const plan = await seeding(
        'CREATE TABLE IF NOT EXISTS public.tags (name text PRIMARY KEY, label text);',
        "INSERT INTO public.tags VALUES ('todo', 'To do'), ('idea', 'Idea') ON CONFLICT (name) DO UPDATE SET label = excluded.label;",
      );

      const report = await install(db, plan);

      expect(report.extensions.find((e) => e.id === 'tags')?.phases.seeds).toMatchObject({ status: 'applied', statements: 1 });
      expect(await db.query('SELECT name, label FROM public.tags ORDER BY name')).toEqual([
        { name: 'idea', label: 'Idea' },
        { name: 'todo', label: 'To do' },
      ]);
    });
  });
}
