import type { Extension, Migration, SqlFile } from '../extensions/extension.js';
import type { PreparedExtension, PreparedMigration } from './prepared-extension.js';
import { sha256 } from '../extensions/load-extensions.js';
import { checkExtensionRules } from './extension-rules.js';
import {
  parseStatements,
  rejectInstallerOwnedStatements,
  SqlFileError,
  type Statement,
} from '../extensions/extension-sql.js';

export class InstallPlanError extends Error {
  override name = 'InstallPlanError';
}

export interface InstallPlan {
  readonly extensions: readonly PreparedExtension[];
  /** PostgreSQL extensions needed, with the extension ids that need them. */
  readonly pgExtensions: ReadonlyMap<string, readonly string[]>;
  /** Identity of everything the global install applies: equal fingerprints mean nothing to do. */
  readonly fingerprint: string;
  /** Identity of what a workspace schema holds; stored per workspace in the registry. */
  readonly workspaceFingerprint: string;
  /** Identity of the workspace schema files alone: while it matches, an upgrade runs only migrations. */
  readonly workspaceSchemaFingerprint: string;
  /** The tables a workspace has once its DDL and migrations ran, from the parsed statements. */
  readonly workspaceTables: readonly string[];
  /** Every schema the global DDL, migrations and seeds name, with the extensions naming it. */
  readonly globalSchemas: ReadonlyMap<string, readonly string[]>;
  /** The global tables the enabled extensions create, as `schema.table` (unqualified means public). */
  readonly globalTables: readonly string[];
}

/** Bumped when the installer's own behaviour changes, so every database re-runs the install. */
const INSTALLER_FORMAT = 1;

export async function prepareInstallPlan(extensions: readonly Extension[]): Promise<InstallPlan> {
  const prepared = await Promise.all(extensions.map(prepareExtension));
  validateTableOwnership(prepared);
  checkExtensionRules(prepared);
  const pgExtensions = new Map<string, string[]>();
  for (const { extension } of prepared) {
    for (const name of extension.requires) pgExtensions.set(name, [...(pgExtensions.get(name) ?? []), extension.id]);
  }
  return {
    extensions: prepared,
    pgExtensions,
    workspaceTables: declaredWorkspaceTables(prepared),
    globalSchemas: namedGlobalSchemas(prepared),
    globalTables: declaredGlobalTables(prepared),
    fingerprint: sha256(
      JSON.stringify([
        INSTALLER_FORMAT,
        extensions.map((e) => [
          e.id,
          e.version,
          e.requires,
          e.requiredColumns,
          e.usesTables,
          e.schema?.sql ?? null,
          e.migrations.map((m) => [m.name, m.checksum]),
          e.seeds.map((s) => [s.path, s.sql]),
        ]),
      ]),
    ),
    workspaceSchemaFingerprint: sha256(
      JSON.stringify([INSTALLER_FORMAT, extensions.map((e) => [e.id, e.workspaceSchema?.sql ?? null, e.requiredColumns])]),
    ),
    workspaceFingerprint: sha256(
      JSON.stringify([
        INSTALLER_FORMAT,
        extensions.map((e) => [
          e.id,
          e.workspaceSchema?.sql ?? null,
          e.workspaceMigrations.map((m) => [m.name, m.checksum]),
          e.requiredColumns,
        ]),
      ]),
    ),
  };
}

function declaredWorkspaceTables(prepared: readonly PreparedExtension[]): string[] {
  const tables = new Set<string>();
  for (const p of prepared) {
    const statements = [...p.workspace.structural, ...p.workspace.migrations.flatMap((m) => m.statements)];
    for (const s of statements) {
      if (s.createsTable) tables.add(s.createsTable.name);
      for (const dropped of s.dropsTables ?? []) tables.delete(dropped);
    }
  }
  return [...tables].sort();
}

function namedGlobalSchemas(prepared: readonly PreparedExtension[]): Map<string, string[]> {
  const schemas = new Map<string, string[]>();
  for (const p of prepared) {
    const statements = [...p.structural, ...p.dependent, ...p.migrations.flatMap((m) => m.statements), ...p.seeds];
    for (const schema of new Set(statements.flatMap((s) => s.schemas))) {
      schemas.set(schema, [...(schemas.get(schema) ?? []), p.extension.id]);
    }
  }
  return schemas;
}

function declaredGlobalTables(prepared: readonly PreparedExtension[]): string[] {
  const tables = new Set<string>();
  for (const p of prepared) {
    for (const s of [...p.structural, ...p.migrations.flatMap((m) => m.statements)]) {
      if (s.createsTable) tables.add(`${s.createsTable.schema ?? 'public'}.${s.createsTable.name}`);
    }
  }
  return [...tables].sort();
}

async function prepareExtension(extension: Extension): Promise<PreparedExtension> {
  const schema = await parseSchemaFile(extension.schema, 'global');
  const workspace = await parseSchemaFile(extension.workspaceSchema, 'workspace');
  const requiredColumns = [];
  const workspaceRequiredColumns = [];
  for (const [name, columns] of Object.entries(extension.requiredColumns)) {
    const [schemaName, table] = name.split('.');
    if (table === undefined) workspaceRequiredColumns.push({ table: name, columns });
    else requiredColumns.push({ schema: schemaName as string, table, columns });
  }
  return {
    extension,
    structural: schema.structural,
    dependent: schema.dependent,
    migrations: await Promise.all(extension.migrations.map(prepareMigration)),
    seeds: (await Promise.all(extension.seeds.map(parseChecked))).flat(),
    workspace: {
      ...workspace,
      migrations: await Promise.all(extension.workspaceMigrations.map(prepareMigration)),
    },
    requiredColumns,
    workspaceRequiredColumns,
  };
}

async function parseChecked(file: SqlFile): Promise<Statement[]> {
  const statements = await parseStatements(file);
  rejectInstallerOwnedStatements(statements);
  return statements;
}

async function prepareMigration(migration: Migration): Promise<PreparedMigration> {
  return { migration, statements: await parseChecked(migration) };
}

async function parseSchemaFile(file: SqlFile | undefined, scope: 'global' | 'workspace') {
  const statements = file ? await parseChecked(file) : [];
  for (const s of statements) {
    if (s.role === 'other') {
      throw new SqlFileError(
        s.file,
        `statement ${s.number} (line ${s.line}) is a ${s.kind}, which does not belong in a schema file: ` +
          `put data in seeds/*.sql and changes to existing objects in migrations/NNNN_*.sql.`,
      );
    }
    if (scope === 'workspace' && s.createsTable?.schema !== undefined) {
      throw new SqlFileError(
        s.file,
        `statement ${s.number} (line ${s.line}) creates ${s.createsTable.schema}.${s.createsTable.name}: ` +
          `workspace DDL uses unqualified names so that it lands in each workspace's own schema.`,
      );
    }
  }
  return {
    structural: statements.filter((s) => s.role === 'structural'),
    dependent: statements.filter((s) => s.role === 'dependent'),
  };
}

/**
 * Ownership comes from the parsed CREATE TABLE statements, never from a declaration, so two
 * extensions cannot silently share a table. Global tables are keyed `schema.table` (unqualified
 * means `public`), workspace tables by their bare name, matching the `uses_tables` notation.
 */
function validateTableOwnership(prepared: readonly PreparedExtension[]): void {
  const owners = new Map<string, string>();
  for (const p of prepared) {
    const tables = [
      ...p.structural.map((s) => s.createsTable && `${s.createsTable.schema ?? 'public'}.${s.createsTable.name}`),
      ...p.workspace.structural.map((s) => s.createsTable?.name),
    ];
    for (const table of tables) {
      if (!table) continue;
      const owner = owners.get(table);
      if (owner && owner !== p.extension.id) {
        throw new InstallPlanError(
          `Extensions "${owner}" and "${p.extension.id}" both create table ${table}. A table has one owner: ` +
            `drop the CREATE TABLE from one of them and list "${table}" in its extension.json "uses_tables".`,
        );
      }
      owners.set(table, p.extension.id);
    }
  }
  for (const { extension } of prepared) {
    for (const table of extension.usesTables) {
      const owner = owners.get(table);
      if (!owner || owner === extension.id) {
        throw new InstallPlanError(
          `Extension "${extension.id}" lists "${table}" in uses_tables, but ` +
            (owner
              ? 'creates it itself: remove it from uses_tables.'
              : 'no other enabled extension creates it: enable the extension that owns it, or fix the name ' +
                '(`schema.table` for a global table, a bare name for a workspace table).'),
        );
      }
    }
  }
}
