import { beforeAll, describe, expect, it } from 'vitest';
import { writeExtension } from '../../harness/extension-dirs.js';
import { tempDir } from '../../harness/temp-dirs.js';
import { loadExtension } from '../../src/extensions/load-extensions.js';
import { prepareInstallPlan, type InstallPlan } from '../../src/installer/install-plan.js';
import type { AppliedMigration } from '../../src/registry/registry-sql.js';
import { buildWorkspaceScript, WorkspaceMigrationDriftError } from '../../src/workspaces/workspace-ddl.js';

let plan: InstallPlan;

beforeAll(async () => {
  const root = await tempDir('pgw-unit-ddl-');
  const dirs = [
    await writeExtension(root, { id: 'alpha' }, {
      'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS a (id int);\nCREATE INDEX IF NOT EXISTS a_id ON a (id);',
      'workspace/migrations/0001_x.sql': 'ALTER TABLE a ADD COLUMN IF NOT EXISTS x int;',
      'workspace/migrations/0002_y.sql': 'ALTER TABLE a ADD COLUMN IF NOT EXISTS y int;',
    }),
    await writeExtension(root, { id: 'beta' }, { 'workspace/schema.sql': 'CREATE VIEW b_view AS SELECT 1 AS one;\nCREATE TABLE IF NOT EXISTS b (id int);' }),
  ];
  plan = await prepareInstallPlan(await Promise.all(dirs.map(loadExtension)));
});

const migration = (name: string) => plan.extensions[0]?.workspace.migrations.find((m) => m.migration.name === name)?.migration;
const applied = (name: string, checksum = migration(name)?.checksum ?? ''): AppliedMigration => ({ extension_id: 'alpha', name, checksum });

describe('buildWorkspaceScript', () => {
  it('creates the schema, sets search_path, then runs every structural statement, the pending migrations, then the dependent ones', () => {
    const script = buildWorkspaceScript('project_client_a', ['public', 'project_client_a', 'ext'], plan.extensions, [], { schemaFiles: true });
    expect(script.prelude).toBe('CREATE SCHEMA IF NOT EXISTS "project_client_a";\nSET LOCAL search_path TO "project_client_a", "public", "ext";\n');
    expect(script.sql).toBe(
      script.prelude +
        [
          'CREATE TABLE IF NOT EXISTS a (id int)',
          'CREATE TABLE IF NOT EXISTS b (id int)',
          'ALTER TABLE a ADD COLUMN IF NOT EXISTS x int',
          'ALTER TABLE a ADD COLUMN IF NOT EXISTS y int',
          'CREATE INDEX IF NOT EXISTS a_id ON a (id)',
          'CREATE VIEW b_view AS SELECT 1 AS one',
        ]
          .map((s) => `${s};\n`)
          .join(''),
    );
    expect(script.migrations).toEqual({
      extensionIds: ['alpha', 'alpha'],
      names: ['0001_x', '0002_y'],
      checksums: [migration('0001_x')?.checksum, migration('0002_y')?.checksum],
    });
  });

  it('records where each statement starts, so an error position names its statement', () => {
    const script = buildWorkspaceScript('project_a', [], plan.extensions, [], { schemaFiles: true });
    expect(script.starts).toHaveLength(6);
    for (const { at, statement } of script.starts) expect(script.sql.slice(at, at + statement.sql.length)).toBe(statement.sql);
    expect(script.starts[0]?.at).toBe(script.prelude.length);
  });

  it('leaves out applied migrations, and the schema files when they have not changed', () => {
    const script = buildWorkspaceScript('project_a', [], plan.extensions, [applied('0001_x')], { schemaFiles: false });
    expect(script.sql).toBe(`${script.prelude}ALTER TABLE a ADD COLUMN IF NOT EXISTS y int;\n`);
    expect(script.migrations.names).toEqual(['0002_y']);
    const current = buildWorkspaceScript('project_a', [], plan.extensions, [applied('0001_x'), applied('0002_y')], { schemaFiles: false });
    expect(current.sql).toBe(current.prelude);
    expect(current.migrations).toEqual({ extensionIds: [], names: [], checksums: [] });
  });

  it('refuses a migration changed after it was applied, naming the file and both checksums', () => {
    const build = () => buildWorkspaceScript('project_a', [], plan.extensions, [applied('0001_x', 'f'.repeat(64))], { schemaFiles: true });
    expect(build).toThrow(WorkspaceMigrationDriftError);
    expect(build).toThrow(
      `alpha/workspace/migrations/0001_x.sql was changed after it was applied to workspaces (checksum in the ledger ${'f'.repeat(64)}, ` +
        `file now ${migration('0001_x')?.checksum}). Applied migrations are immutable: restore the file and put the change in a new migration.`,
    );
  });
});
