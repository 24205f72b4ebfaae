import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../harness/temp-dirs.js';
import { ExtensionLoadError, loadExtension, loadExtensions } from '../../src/extensions/load-extensions.js';
import { InstallPlanError, prepareInstallPlan } from '../../src/installer/install-plan.js';
import { SqlFileError } from '../../src/extensions/extension-sql.js';

let root: string;
let n = 0;
beforeAll(async () => {
  root = await tempDir('pgw-unit-ext-');
});

/** A fresh extension directory; unlike harness's writeExtension, `extension.json` is raw text, so it can be broken. */
async function extensionDir(files: Record<string, string>, name = `ext${++n}`): Promise<string> {
  const dir = path.join(root, `case${++n}`, name);
  for (const [relative, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, relative)), { recursive: true });
    await writeFile(path.join(dir, relative), text);
  }
  await mkdir(dir, { recursive: true });
  return dir;
}

const manifest = (fields: Record<string, unknown>) => JSON.stringify({ version: '1.0.0', ...fields });

async function loadError(directory: string): Promise<string> {
  const error = await loadExtension(directory).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ExtensionLoadError);
  return (error as Error).message;
}

describe('loadExtension', () => {
  it('reads the manifest and every SQL file, migrations in order with checksums', async () => {
    const dir = await extensionDir(
      {
        'extension.json': manifest({ id: 'notes', requires: ['pg_trgm'], required_columns: { notes: ['id'] }, uses_tables: ['chunks'] }),
        'schema.sql': 'CREATE TABLE IF NOT EXISTS public.kinds (k text);',
        'migrations/0002_b.sql': 'SELECT 2;',
        'migrations/0001_a.sql': 'SELECT 1;',
        'migrations/README.md': 'not SQL: ignored',
        'seeds/kinds.sql': "INSERT INTO public.kinds VALUES ('x');",
        'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id int);',
      },
      'notes',
    );
    const extension = await loadExtension(dir);
    expect(extension).toMatchObject({
      id: 'notes',
      version: '1.0.0',
      directory: dir,
      requires: ['pg_trgm'],
      requiredColumns: { notes: ['id'] },
      usesTables: ['chunks'],
      schema: { path: 'notes/schema.sql' },
      seeds: [{ path: 'notes/seeds/kinds.sql' }],
      workspaceSchema: { path: 'notes/workspace/schema.sql' },
      workspaceMigrations: [],
    });
    expect(extension.migrations.map((m) => [m.name, m.path])).toEqual([
      ['0001_a', 'notes/migrations/0001_a.sql'],
      ['0002_b', 'notes/migrations/0002_b.sql'],
    ]);
    expect(extension.migrations[0]?.checksum).toMatch(/^[0-9a-f]{64}$/);
  });

  it('needs an extension.json, and says so', async () => {
    const dir = await extensionDir({ 'schema.sql': 'SELECT 1;' });
    expect(await loadError(dir)).toBe(
      `${path.join(dir, 'extension.json')} cannot be read (ENOENT): every extension directory needs an extension.json.`,
    );
  });

  it('names the manifest that is not JSON', async () => {
    const dir = await extensionDir({ 'extension.json': '{"id": "x",' });
    expect(await loadError(dir)).toMatch(new RegExp(`^${escape(path.join(dir, 'extension.json'))} is not valid JSON: `));
  });

  it('names each invalid manifest field and what a good one looks like', async () => {
    // Each problem reads "✖ <what to do>" then "→ at <field>".
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ id: 'Notes' }, 'id', /use lower-case letters, digits and single hyphens/],
      [{ id: 'notes', version: '' }, 'version', /.+/],
      [{ id: 'notes', requires: ['Bad-Name'] }, 'requires[0]', /use lower-case letters, digits and underscores, starting with a letter/],
      [{ id: 'notes', required_columns: { 'a.b.c': ['id'] } }, 'required_columns["a.b.c"]', /^✖ use `schema\.table` for a global table or a bare `table` for a workspace table$/],
      [{ id: 'notes', required_columns: { notes: [] } }, 'required_columns.notes', /^✖ list at least one column$/],
      [{ id: 'notes', uses_tables: ['x y'] }, 'uses_tables[0]', /use `schema\.table` for a global table/],
      // Unknown keys are refused so that a typo does not silently turn a check off.
      [{ id: 'notes', required_column: {} }, '', /Unrecognized key: "required_column"/],
    ];
    for (const [fields, field, expected] of cases) {
      const dir = await extensionDir({ 'extension.json': manifest(fields) });
      const message = await loadError(dir);
      const [heading, problem, where] = message.split('\n');
      expect(heading, JSON.stringify(fields)).toBe(`${path.join(dir, 'extension.json')} is invalid:`);
      expect(problem, JSON.stringify(fields)).toMatch(/^✖ /);
      expect(problem, JSON.stringify(fields)).toMatch(expected);
      if (field) expect(where, JSON.stringify(fields)).toBe(`  → at ${field}`);
    }
  });

  it('refuses a migration file not named NNNN_description.sql, in either migrations directory', async () => {
    for (const where of ['migrations', 'workspace/migrations']) {
      const dir = await extensionDir({ 'extension.json': manifest({ id: 'notes' }), [`${where}/1_add.sql`]: 'SELECT 1;' }, 'notes');
      expect(await loadError(dir)).toBe(
        `notes/${where}/1_add.sql: migration files are named NNNN_description.sql (four digits, e.g. 0001_add_language.sql).`,
      );
    }
  });

  it('refuses two migrations with one number', async () => {
    const dir = await extensionDir(
      { 'extension.json': manifest({ id: 'notes' }), 'workspace/migrations/0001_a.sql': '', 'workspace/migrations/0001_b.sql': '' },
      'notes',
    );
    expect(await loadError(dir)).toBe(
      'notes/workspace/migrations/0001_b.sql and notes/workspace/migrations/0001_a.sql share the number 0001: renumber one.',
    );
  });
});

describe('loadExtensions', () => {
  const plain = (id: string) => extensionDir({ 'extension.json': manifest({ id }) });

  it('keeps the given order and drops the disabled ones', async () => {
    const loaded = await loadExtensions([await plain('core'), await plain('b'), await plain('a')], ['b']);
    expect(loaded.map((e) => e.id)).toEqual(['core', 'a']);
  });

  it('refuses to disable core, saying what it holds', async () => {
    await expect(loadExtensions([await plain('core')], ['core'])).rejects.toThrow(
      new ExtensionLoadError('The `core` extension cannot be disabled: it holds the workspace registry and the migration ledger.'),
    );
  });

  it('refuses two extensions with one id, naming both directories', async () => {
    const [first, second] = [await plain('same'), await plain('same')];
    await expect(loadExtensions([first, second])).rejects.toThrow(
      `Two extensions have the id "same": ${first} and ${second}. Rename one in its extension.json.`,
    );
  });

  it('refuses to disable an extension it does not know, listing the known ones', async () => {
    await expect(loadExtensions([await plain('core'), await plain('codebase')], ['codebse', 'other'])).rejects.toThrow(
      'Cannot disable unknown extension(s): codebse, other. Known: core, codebase.',
    );
  });
});

describe('prepareInstallPlan (the SQL checks made at boot)', () => {
  const planOf = async (...extensions: Record<string, string>[]) =>
    prepareInstallPlan(await Promise.all(extensions.map(async (files) => loadExtension(await extensionDir(files, JSON.parse(files['extension.json'] ?? '{}').id)))));
  const failureOf = (...extensions: Record<string, string>[]): Promise<Error> =>
    planOf(...extensions).then(
      () => {
        throw new Error('expected the plan to be refused');
      },
      (e: unknown) => e as Error,
    );

  it('refuses data statements in a schema file, pointing at seeds and migrations', async () => {
    const error = await failureOf({ 'extension.json': manifest({ id: 'notes' }), 'schema.sql': 'CREATE TABLE IF NOT EXISTS t (id int);\nINSERT INTO t VALUES (1);' });
    expect(error).toBeInstanceOf(SqlFileError);
    expect(error.message).toBe(
      'notes/schema.sql: statement 2 (line 2) is a InsertStmt, which does not belong in a schema file: ' +
        'put data in seeds/*.sql and changes to existing objects in migrations/NNNN_*.sql.',
    );
  });

  it('refuses a schema-qualified table in workspace DDL', async () => {
    const error = await failureOf({ 'extension.json': manifest({ id: 'notes' }), 'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS public.notes (id int);' });
    expect(error.message).toBe(
      "notes/workspace/schema.sql: statement 1 (line 1) creates public.notes: workspace DDL uses unqualified names so that it lands in each workspace's own schema.",
    );
  });

  it('refuses transaction control and CREATE EXTENSION in migrations and seeds too', async () => {
    const inMigration = await failureOf({ 'extension.json': manifest({ id: 'notes' }), 'workspace/migrations/0001_a.sql': 'BEGIN;' });
    expect(inMigration.message).toMatch(/^notes\/workspace\/migrations\/0001_a\.sql: statement 1 \(line 1\) controls the transaction/);
    const inSeed = await failureOf({ 'extension.json': manifest({ id: 'notes' }), 'seeds/a.sql': 'CREATE EXTENSION pg_trgm;' });
    expect(inSeed.message).toMatch(/^notes\/seeds\/a\.sql: statement 1 \(line 1\) creates a PostgreSQL extension; list it in extension\.json "requires"/);
  });

  it('names the file and line of a syntax error', async () => {
    const error = await failureOf({ 'extension.json': manifest({ id: 'notes' }), 'schema.sql': '\nCREATE TABLE t (;' });
    expect(error.message).toMatch(/^notes\/schema\.sql: syntax error at line 2: /);
  });

  it('refuses a table created by two extensions, saying how to share it', async () => {
    const error = await failureOf(
      { 'extension.json': manifest({ id: 'one' }), 'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS shared (id int);' },
      { 'extension.json': manifest({ id: 'two' }), 'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS shared (id int);' },
    );
    expect(error).toBeInstanceOf(InstallPlanError);
    expect(error.message).toBe(
      'Extensions "one" and "two" both create table shared. A table has one owner: drop the CREATE TABLE from one of them and list "shared" in its extension.json "uses_tables".',
    );
  });

  it('refuses uses_tables naming a table the extension creates itself', async () => {
    const error = await failureOf({
      'extension.json': manifest({ id: 'self', uses_tables: ['public.mine'] }),
      'schema.sql': 'CREATE TABLE IF NOT EXISTS mine (id int);',
    });
    expect(error.message).toBe('Extension "self" lists "public.mine" in uses_tables, but creates it itself: remove it from uses_tables.');
  });

  it('sorts statements into phases and lists the workspace tables, dropped ones left out', async () => {
    const plan = await planOf({
      'extension.json': manifest({ id: 'notes', required_columns: { notes: ['id'], 'public.kinds': ['k'] } }),
      'schema.sql': 'CREATE TABLE IF NOT EXISTS kinds (k text);\nCREATE INDEX IF NOT EXISTS kinds_k ON kinds (k);',
      'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id int);\nCREATE TABLE IF NOT EXISTS old (id int);',
      'workspace/migrations/0001_drop_old.sql': 'DROP TABLE IF EXISTS old;',
    });
    const [notes] = plan.extensions;
    expect(notes?.structural.map((s) => s.kind)).toEqual(['CreateStmt']);
    expect(notes?.dependent.map((s) => s.kind)).toEqual(['IndexStmt']);
    expect(notes?.requiredColumns).toEqual([{ schema: 'public', table: 'kinds', columns: ['k'] }]);
    expect(notes?.workspaceRequiredColumns).toEqual([{ table: 'notes', columns: ['id'] }]);
    expect(plan.workspaceTables).toEqual(['notes']);
    expect(plan.globalTables).toEqual(['public.kinds']);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
