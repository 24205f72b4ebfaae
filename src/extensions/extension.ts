/** An extension as the installer sees it: its manifest plus the SQL files of its directory. */

export interface SqlFile {
  /** Shown in errors, relative to the extension directory's parent (e.g. `codebase/schema.sql`). */
  readonly path: string;
  readonly sql: string;
}

export interface Migration extends SqlFile {
  /** File name without `.sql`, e.g. `0002_add_language`; the ledger key within the extension. */
  readonly name: string;
  readonly checksum: string;
}

export interface Extension {
  readonly id: string;
  readonly version: string;
  readonly directory: string;
  /** PostgreSQL extensions to CREATE EXTENSION before this extension's DDL, e.g. `vector`. */
  readonly requires: readonly string[];
  /** `schema.table` keys are global tables checked at boot; bare keys are workspace tables. */
  readonly requiredColumns: Readonly<Record<string, readonly string[]>>;
  /** Tables this extension reads but another enabled extension must create. */
  readonly usesTables: readonly string[];
  readonly schema: SqlFile | undefined;
  readonly migrations: readonly Migration[];
  readonly seeds: readonly SqlFile[];
  readonly workspaceSchema: SqlFile | undefined;
  readonly workspaceMigrations: readonly Migration[];
}

/**
 * Applied migrations are immutable: the refusal of `migration` when the ledger row applying it
 * (`applied`, by extension and name) has another checksum, else undefined. `appliedTo` says
 * where, for the message (" to workspaces", or "" for the global install).
 */
export function migrationDrift(
  extensionId: string,
  migration: Migration,
  applied: readonly { extension_id: string; name: string; checksum: string }[],
  appliedTo = '',
): string | undefined {
  const row = applied.find((a) => a.extension_id === extensionId && a.name === migration.name);
  if (!row || row.checksum === migration.checksum) return undefined;
  return (
    `${migration.path} was changed after it was applied${appliedTo} (checksum in the ledger ${row.checksum}, ` +
    `file now ${migration.checksum}). Applied migrations are immutable: restore the file and put the change in a new migration.`
  );
}
