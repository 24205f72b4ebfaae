import { afterEach, describe, expect, it } from 'vitest';
import { PGliteDatabase } from '../src/db/pglite-database.js';
import { tempDir, writeExtension } from './support/fixtures.js';
import { startServerProcess, type ServerProcess } from './support/server-process.js';

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
