import type { Extension, Migration } from '../extensions/extension.js';
import type { Statement } from '../extensions/extension-sql.js';

/*
 * What the install plan makes of an extension: its own module, because both the plan
 * (install-plan.ts) and the rules it checks (extension-rules.ts) read it.
 */

export interface PreparedMigration {
  readonly migration: Migration;
  readonly statements: readonly Statement[];
}

/** One extension's SQL, parsed and sorted into the installer's phases. */
export interface PreparedExtension {
  readonly extension: Extension;
  readonly structural: readonly Statement[];
  readonly dependent: readonly Statement[];
  readonly migrations: readonly PreparedMigration[];
  readonly seeds: readonly Statement[];
  readonly workspace: {
    readonly structural: readonly Statement[];
    readonly dependent: readonly Statement[];
    readonly migrations: readonly PreparedMigration[];
  };
  /** Global tables as `schema.table`, checked at boot. */
  readonly requiredColumns: ReadonlyArray<{ schema: string; table: string; columns: readonly string[] }>;
  /** Workspace tables, checked inside each workspace when it is made or upgraded. */
  readonly workspaceRequiredColumns: ReadonlyArray<{ table: string; columns: readonly string[] }>;
}
