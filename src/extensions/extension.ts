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
