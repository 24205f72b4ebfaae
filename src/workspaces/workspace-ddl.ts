import { distributeSchemaSql, SHARDING_OFF } from '../db/postgres/citus.js';
import type { Database } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { migrationDrift } from '../extensions/extension.js';
import type { PreparedExtension } from '../installer/prepared-extension.js';
import type { AppliedMigration, LedgerRows } from '../registry/registry-sql.js';
import type { Statement } from '../extensions/extension-sql.js';

/** What one provisioning transaction runs inside a workspace schema, as a single script. */
export interface WorkspaceScript {
  sql: string;
  /** Creates the schema and points search_path at it; runs before every statement. */
  prelude: string;
  /** Where each statement starts in `sql` (characters, as PostgreSQL reports error positions). */
  starts: ReadonlyArray<{ at: number; statement: Statement }>;
  /** Ledger rows to record, in columns for one `unnest` insert. */
  migrations: LedgerRows;
  /** On Citus: the last statement of `sql`, which makes the schema a distributed schema. */
  distribute?: string;
}

export class WorkspaceMigrationDriftError extends Error {
  override name = 'WorkspaceMigrationDriftError';
}

/**
 * Builds the script in the installer's phase order (structural, pending migrations, dependent)
 * so that one round trip creates or upgrades a workspace. Schema files are idempotent, so the
 * same script serves a new workspace, a lagging one and a pre-existing schema being adopted;
 * `schemaFiles: false` (they have not changed since this workspace last ran them) leaves them
 * out, so an upgrade that only adds migrations runs only those. `create`: the schema must not
 * exist yet (a new workspace never runs in a schema someone made meanwhile).
 */
export function buildWorkspaceScript(
  schemaName: string,
  searchPathSchemas: readonly string[],
  extensions: readonly PreparedExtension[],
  applied: readonly AppliedMigration[],
  { schemaFiles, citus = false, create = false }: { schemaFiles: boolean; citus?: boolean; create?: boolean },
): WorkspaceScript {
  const path = [schemaName, ...searchPathSchemas.filter((s) => s !== schemaName)].map(quoteIdent).join(', ');
  // On Citus the schema is made plain and distributed with all its tables at the end (see db/postgres/citus.ts).
  const prelude =
    (citus ? `${SHARDING_OFF};\n` : '') +
    `CREATE SCHEMA ${create ? '' : 'IF NOT EXISTS '}${quoteIdent(schemaName)};\nSET LOCAL search_path TO ${path};\n`;
  let sql = prelude;
  const starts: WorkspaceScript['starts'][number][] = [];
  const migrations: WorkspaceScript['migrations'] = { extensionIds: [], names: [], checksums: [] };
  const add = (statement: Statement) => {
    starts.push({ at: sql.length, statement });
    sql += `${statement.sql};\n`;
  };

  if (schemaFiles) for (const p of extensions) p.workspace.structural.forEach(add);
  for (const p of extensions) {
    for (const { migration, statements } of p.workspace.migrations) {
      const drift = migrationDrift(p.extension.id, migration, applied, ' to workspaces');
      if (drift) throw new WorkspaceMigrationDriftError(drift);
      if (applied.some((a) => a.extension_id === p.extension.id && a.name === migration.name)) continue;
      statements.forEach(add);
      migrations.extensionIds.push(p.extension.id);
      migrations.names.push(migration.name);
      migrations.checksums.push(migration.checksum);
    }
  }
  if (schemaFiles) for (const p of extensions) p.workspace.dependent.forEach(add);
  if (!citus) return { sql, prelude, starts, migrations };
  const distribute = distributeSchemaSql(schemaName);
  return { sql: `${sql}${distribute};\n`, prelude, starts, migrations, distribute };
}

/**
 * Which statement of a failed script failed. PostgreSQL gives an error position for some errors
 * only (not, say, for a missing column in CREATE INDEX), so without one the script is replayed a
 * statement at a time in a transaction that is always rolled back: the failure path pays for
 * precise errors, the success path keeps its single round trip.
 */
export async function locateFailure(db: Database, script: WorkspaceScript, position: number): Promise<Statement | undefined> {
  if (Number.isFinite(position)) {
    let found: Statement | undefined;
    for (const { at, statement } of script.starts) if (at < position) found = statement;
    if (found) return found;
  }
  return db.withSession(async (session) => {
    await session.query('BEGIN');
    try {
      await session.exec(script.prelude);
      for (const { statement } of script.starts) {
        try {
          await session.exec(statement.sql);
        } catch {
          return statement;
        }
      }
      return undefined;
    } finally {
      await session.query('ROLLBACK');
    }
  });
}
