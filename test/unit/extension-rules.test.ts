import { describe, expect, it } from 'vitest';
import { writeExtension } from '../../harness/extension-dirs.js';
import { tempDir } from '../../harness/temp-dirs.js';
import { builtinExtensionDirs } from '../../src/extensions/builtin-extensions.js';
import { loadExtensions } from '../../src/extensions/load-extensions.js';
import { ExtensionRuleError } from '../../src/installer/extension-rules.js';
import { prepareInstallPlan } from '../../src/installer/install-plan.js';

type Fixture = [manifest: Record<string, unknown> & { id: string }, files: Record<string, string>];

/** Another extension's global table, next to the built-ins' (core's registry, codebase's chunks). */
const OWNER: Fixture = [{ id: 'owner' }, { 'schema.sql': 'CREATE TABLE IF NOT EXISTS public.owner_items (id int PRIMARY KEY, label text);' }];
const MINE = 'CREATE TABLE IF NOT EXISTS public.mine (id int PRIMARY KEY, label text);';

/** Plans the built-in extensions, `owner` and the given ones, as boot does. */
async function plan(...fixtures: Fixture[]) {
  const root = await tempDir('pgw-unit-rules-');
  const dirs = [];
  for (const [manifest, files] of [OWNER, ...fixtures]) dirs.push(await writeExtension(root, manifest, files));
  return prepareInstallPlan(await loadExtensions([...builtinExtensionDirs, ...dirs]));
}

async function refusal(...fixtures: Fixture[]): Promise<string> {
  const error = await plan(...fixtures).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ExtensionRuleError);
  return (error as Error).message;
}

const seeded = (seed: string, schema = MINE, manifest: Record<string, unknown> = {}): Fixture => [
  { id: 'seedy', ...manifest },
  { 'schema.sql': schema, 'seeds/data.sql': `-- seed\n${seed}` },
];

describe('seed rules', () => {
  it("passes the documented example extension (docs/extensions.md)", async () => {
    const notes: Fixture = [
      { id: 'notes', requires: ['pg_trgm'], required_columns: { notes: ['id', 'body'], 'public.note_kinds': ['kind'] }, uses_tables: ['chunks'] },
      {
        'schema.sql': 'CREATE TABLE IF NOT EXISTS public.note_kinds (kind text PRIMARY KEY);',
        'seeds/kinds.sql': "INSERT INTO public.note_kinds (kind) VALUES ('todo'), ('idea') ON CONFLICT (kind) DO NOTHING;",
        'workspace/schema.sql':
          'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL,\n' +
          '                                  chunk_id bigint REFERENCES chunks ON DELETE SET NULL);\n' +
          'CREATE INDEX IF NOT EXISTS notes_body_trgm ON notes USING gin (body gin_trgm_ops);',
        'workspace/migrations/0001_add_pinned.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS pinned boolean NOT NULL DEFAULT false;',
      },
    ];
    await expect(plan(notes)).resolves.toBeDefined();
  });

  it('accepts idempotent upserts into the extension own tables, with built-in functions and reads it declares', async () => {
    const good = seeded(
      [
        "INSERT INTO public.mine VALUES (1, 'one') ON CONFLICT DO NOTHING;",
        "INSERT INTO mine (id, label) VALUES (2, lower('TWO')) ON CONFLICT (id) DO UPDATE SET label = excluded.label;",
        'INSERT INTO mine (id) SELECT id FROM public.owner_items ON CONFLICT (id) DO NOTHING;',
        "WITH fresh AS (SELECT 3 AS id) INSERT INTO mine (id, label) SELECT id, 'three' FROM fresh ON CONFLICT DO NOTHING;",
      ].join('\n'),
      MINE,
      { uses_tables: ['public.owner_items'] },
    );
    const planned = await plan(good);
    expect(planned.extensions.find((p) => p.extension.id === 'seedy')?.seeds).toHaveLength(4);
  });

  it('refuses an INSERT without ON CONFLICT, naming extension, file, statement and the fix', async () => {
    expect(await refusal(seeded("INSERT INTO public.mine VALUES (1, 'one');"))).toBe(
      `Extension "seedy", seedy/seeds/data.sql statement 1 (line 2): INSERT INTO public.mine VALUES (1, 'one')\n` +
        'An INSERT without ON CONFLICT loads once, then fails with "duplicate key value violates unique constraint". ' +
        'Seeds run again every time the install changes (an extension added, removed or edited), not once, so every later install would fail.\n' +
        'Fix: add ON CONFLICT (key) DO NOTHING, or ON CONFLICT (key) DO UPDATE SET ... to keep the seeded values current.',
    );
  });

  it('refuses ON CONFLICT into a table with no key to conflict on', async () => {
    const message = await refusal(seeded("INSERT INTO keyless VALUES ('x') ON CONFLICT DO NOTHING;", 'CREATE TABLE IF NOT EXISTS keyless (v text);'));
    expect(message).toContain('public.keyless has no PRIMARY KEY, UNIQUE or EXCLUDE constraint');
    expect(message).toContain('every install inserts the rows again');
  });

  it('counts a unique index or a constraint added later as a key', async () => {
    for (const schema of [
      'CREATE TABLE IF NOT EXISTS keyed (v text);\nCREATE UNIQUE INDEX IF NOT EXISTS keyed_v ON keyed (v);',
      'CREATE TABLE IF NOT EXISTS keyed (v text, CONSTRAINT keyed_v UNIQUE (v));',
    ]) {
      await expect(plan(seeded("INSERT INTO keyed VALUES ('x') ON CONFLICT DO NOTHING;", schema))).resolves.toBeDefined();
    }
  });

  it("refuses an insert into another extension's table, or into a table no extension creates", async () => {
    expect(await refusal(seeded('INSERT INTO public.owner_items VALUES (1) ON CONFLICT DO NOTHING;'))).toContain(
      'It inserts into public.owner_items, a table of extension "owner"; a seed fills only its own extension\'s tables.\nFix: move this seed to "owner"',
    );
    expect(await refusal(seeded('INSERT INTO project_registry.workspace_config (project_id) VALUES (1) ON CONFLICT DO NOTHING;'))).toContain(
      'a table of extension "core"',
    );
    expect(await refusal(seeded('INSERT INTO nobody VALUES (1) ON CONFLICT DO NOTHING;'))).toContain(
      'It inserts into public.nobody, which no enabled extension creates',
    );
  });

  it('refuses DDL, removals, rewrites and what cannot be inspected, each with its own fix', async () => {
    const cases: [string, string, string][] = [
      ['DROP TABLE public.owner_items;', 'this is DROP TABLE.', 'put DDL in schema.sql'],
      ['ALTER TABLE mine ADD COLUMN IF NOT EXISTS x int;', 'this is ALTER TABLE.', 'put DDL in schema.sql'],
      ['CREATE INDEX IF NOT EXISTS m ON mine (label);', 'this is CREATE INDEX.', 'put DDL in schema.sql'],
      ['DELETE FROM mine WHERE id = 1;', 'this is a DELETE.', 'remove data once, in a migration'],
      ['TRUNCATE mine;', 'this is a TRUNCATE.', 'remove data once, in a migration'],
      ["UPDATE mine SET label = 'x' WHERE id = 1;", 'this is an UPDATE.', 'to keep seeded rows current, use INSERT ... ON CONFLICT (key) DO UPDATE SET'],
      ["MERGE INTO mine USING (SELECT 1 AS id) s ON mine.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'x');", 'this is a MERGE.', 'to keep seeded rows current, use INSERT ... ON CONFLICT (key) DO UPDATE SET'],
      ["DO $$ BEGIN INSERT INTO mine VALUES (1, 'x'); END $$;", 'this is a DO block', 'write the data as INSERT ... ON CONFLICT'],
      ['SELECT pg_sleep(0);', 'this is a SELECT', 'write the data as INSERT ... ON CONFLICT'],
      ['CALL anything();', 'this is a CALL', 'write the data as INSERT ... ON CONFLICT'],
      ["SET search_path = 'x';", 'this is SET SEARCH_PATH.', 'put DDL in schema.sql'],
    ];
    for (const [sql, problem, fix] of cases) {
      const message = await refusal(seeded(sql));
      expect(message, sql).toContain(`seedy/seeds/data.sql statement 1 (line 2): ${sql.replace(/;$/, "").slice(0, 60)}`);
      expect(message, sql).toContain(problem);
      expect(message, sql).toContain(`Fix: ${fix}`);
    }
  });

  it('inspects data-modifying WITH clauses too', async () => {
    const message = await refusal(
      seeded('WITH gone AS (DELETE FROM public.owner_items RETURNING id) INSERT INTO mine (id) SELECT id FROM gone ON CONFLICT DO NOTHING;'),
    );
    expect(message).toContain('Its WITH clause deletes from public.owner_items: seeds may only insert.');
    const inserting = await refusal(seeded('WITH x AS (INSERT INTO mine VALUES (9) RETURNING id) INSERT INTO mine (id) SELECT id + 1 FROM x ON CONFLICT DO NOTHING;'));
    expect(inserting).toContain('An INSERT without ON CONFLICT');
  });

  it('refuses reading another extension\'s table unless uses_tables lists it', async () => {
    const message = await refusal(seeded('INSERT INTO mine (id) SELECT id FROM owner_items ON CONFLICT DO NOTHING;'));
    expect(message).toContain('It reads public.owner_items, a table of extension "owner", which "seedy" does not list in uses_tables.');
    expect(message).toContain('Fix: add "public.owner_items" to "uses_tables" in seedy\'s extension.json');
  });

  it('refuses calls of volatile functions the extensions create, not of stable ones', async () => {
    const functions = `${MINE}
      CREATE OR REPLACE FUNCTION wipe() RETURNS int LANGUAGE sql AS 'DELETE FROM public.owner_items RETURNING 1';
      CREATE OR REPLACE FUNCTION shout(t text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT upper(t)';`;
    const message = await refusal(seeded('INSERT INTO mine VALUES (wipe(), null) ON CONFLICT DO NOTHING;', functions));
    expect(message).toContain('It calls wipe(), a VOLATILE function of extension "seedy"');
    expect(message).toContain('Fix: declare wipe() IMMUTABLE or STABLE');
    await expect(plan(seeded("INSERT INTO mine VALUES (1, shout('x')) ON CONFLICT DO NOTHING;", functions))).resolves.toBeDefined();
  });
});

describe("migration and schema rules: another extension's tables", () => {
  const migrating = (sql: string, where = 'migrations/0001_change.sql', manifest: Record<string, unknown> = {}): Fixture => [
    { id: 'mover', ...manifest },
    { 'schema.sql': MINE, 'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY);', [where]: sql },
  ];

  it('lets an extension change its own tables and read declared ones', async () => {
    await expect(
      plan(
        migrating(
          [
            'ALTER TABLE mine ADD COLUMN IF NOT EXISTS extra int;',
            'CREATE INDEX IF NOT EXISTS mine_label ON public.mine (label);',
            "UPDATE mine SET label = 'x' WHERE label IS NULL;",
            'INSERT INTO mine (id) SELECT id FROM public.owner_items ON CONFLICT DO NOTHING;',
            "COMMENT ON TABLE mine IS 'mine';",
            'DROP TABLE IF EXISTS public.mine_old;',
          ].join('\n'),
          'migrations/0001_change.sql',
          { uses_tables: ['public.owner_items'] },
        ),
      ),
    ).resolves.toBeDefined();
  });

  it("refuses a global migration altering another extension's table, naming the owner and the fix", async () => {
    expect(await refusal(migrating('\nALTER TABLE project_registry.workspace_config ADD COLUMN IF NOT EXISTS mine int;'))).toBe(
      'Extension "mover", mover/migrations/0001_change.sql statement 1 (line 2): ALTER TABLE project_registry.workspace_config ADD COLUMN IF NOT EXISTS mine int\n' +
        'It alters project_registry.workspace_config, a table of extension "core". ' +
        'An extension changes only the tables its own SQL creates; `uses_tables` declares reads, not writes.\n' +
        'Fix: ask "core" to make this change in its own SQL, or give "mover" its own table ' +
        '(a foreign key to project_registry.workspace_config, with "project_registry.workspace_config" in uses_tables, links the two).',
    );
  });

  it("refuses a workspace migration altering another extension's workspace table", async () => {
    const message = await refusal(migrating('ALTER TABLE chunks ADD COLUMN IF NOT EXISTS tag text;', 'workspace/migrations/0001_tag.sql'));
    expect(message).toContain('mover/workspace/migrations/0001_tag.sql statement 1 (line 1)');
    expect(message).toContain('It alters chunks, a table of extension "codebase".');
  });

  it('refuses every kind of change to another extension\'s table, in migrations and schema files alike', async () => {
    // [sql, what the message says it does, where it may appear: schema files hold only some DDL, workspace files no data]
    const everywhere = ['migrations/0001_change.sql', 'workspace/migrations/0001_change.sql', 'schema.sql'];
    const migrations = everywhere.slice(0, 2);
    const global = everywhere.slice(0, 1);
    const cases: [string, string, string[]][] = [
      ['DROP TABLE IF EXISTS public.mine, public.owner_items;', 'drops public.owner_items', migrations],
      ['ALTER TABLE owner_items RENAME TO taken;', 'renames public.owner_items', migrations],
      ['ALTER TABLE owner_items RENAME COLUMN label TO name;', 'renames part of public.owner_items', migrations],
      ['ALTER TABLE public.owner_items SET SCHEMA elsewhere;', 'moves to another schema public.owner_items', migrations],
      ['CREATE INDEX IF NOT EXISTS theirs ON owner_items (label);', 'creates an index on public.owner_items', everywhere],
      ['CREATE TRIGGER t BEFORE INSERT ON owner_items FOR EACH ROW EXECUTE FUNCTION f();', 'creates a trigger on public.owner_items', everywhere],
      ['DROP TRIGGER IF EXISTS t ON public.owner_items;', 'drops a trigger of public.owner_items', migrations],
      ['CREATE POLICY p ON owner_items USING (true);', 'creates a policy on public.owner_items', everywhere],
      ["COMMENT ON TABLE owner_items IS 'mine now';", 'comments on public.owner_items', everywhere],
      ["COMMENT ON COLUMN public.owner_items.label IS 'x';", 'comments on part of public.owner_items', everywhere],
      ['GRANT SELECT ON owner_items TO PUBLIC;', 'changes privileges on public.owner_items', everywhere],
      ['CREATE TABLE IF NOT EXISTS public.mine_child () INHERITS (owner_items);', 'adds an inheriting table to public.owner_items', global],
      ['TRUNCATE mine, owner_items;', 'truncates public.owner_items', global],
      ["UPDATE owner_items SET label = 'x';", 'updates public.owner_items', global],
      ['DELETE FROM owner_items;', 'deletes from public.owner_items', global],
      ['INSERT INTO owner_items VALUES (1);', 'inserts into public.owner_items', global],
      ['WITH gone AS (DELETE FROM owner_items RETURNING id) SELECT count(*) FROM gone;', 'deletes from public.owner_items', global],
      // In a schema file, two CREATEs of one table are refused by the ownership check already.
      ['CREATE TABLE IF NOT EXISTS public.owner_items (id int);', 'creates public.owner_items', global],
    ];
    for (const [sql, verb, files] of cases) {
      for (const where of files) {
        // A workspace file names a global table schema-qualified.
        const text = where.startsWith('workspace/') ? sql.replace(/(?<![.\w])owner_items/g, 'public.owner_items').replace('public.public.', 'public.') : sql;
        const [manifest, base] = migrating(text, where, { uses_tables: ['public.owner_items'] });
        const fixture: Fixture = [manifest, where === 'schema.sql' ? { ...base, 'schema.sql': `${MINE}\n${text}` } : base];
        const message = await refusal(fixture);
        expect(message, `${where}: ${text}`).toContain(`It ${verb}, a table of extension "owner".`);
      }
    }
  });

  it("refuses dropping or renaming a schema that holds another extension's tables", async () => {
    expect(await refusal(migrating('DROP SCHEMA IF EXISTS project_registry CASCADE;'))).toContain(
      'It drops the schema project_registry, which holds project_registry.',
    );
    expect(await refusal(migrating('ALTER SCHEMA project_registry RENAME TO gone;'))).toContain('It renames the schema project_registry');
  });

  it("refuses reading another extension's table undeclared, in migrations and schema files", async () => {
    expect(await refusal(migrating('INSERT INTO mine (id) SELECT id FROM owner_items;'))).toContain(
      'It reads public.owner_items, a table of extension "owner", which "mover" does not list in uses_tables.',
    );
    expect(await refusal(migrating('CREATE OR REPLACE VIEW peek AS SELECT * FROM chunks;', 'workspace/migrations/0001_peek.sql'))).toContain(
      'It reads chunks, a table of extension "codebase"',
    );
    await expect(
      plan(migrating('CREATE OR REPLACE VIEW peek AS SELECT * FROM chunks;', 'workspace/migrations/0001_peek.sql', { uses_tables: ['chunks'] })),
    ).resolves.toBeDefined();
  });
});
