import { firstRow, type Queryable } from '../db/database.js';

/*
 * The registry SQL the workspace lifecycle (drop, rename, snapshots, forks) shares with repair,
 * each statement named for what it does.
 */

const CURRENT_DATABASE = 'SELECT current_database()::text AS database';

/** A workspace's registry row and schema, re-read under its lock before a repair changes anything. */
const WORKSPACE_PRESENCE = `
  SELECT EXISTS (SELECT FROM project_registry.workspace_config w WHERE w.project_id = $1) AS registered,
         EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = $2) AS schema_exists,
         (SELECT pg_catalog.pg_has_role(n.nspowner, 'USAGE') FROM pg_catalog.pg_namespace n WHERE n.nspname = $2) AS acts_as_owner,
         (SELECT pg_catalog.pg_get_userbyid(n.nspowner)::text FROM pg_catalog.pg_namespace n WHERE n.nspname = $2) AS owner`;

const DELETE_WORKSPACE_LEDGER = `
  WITH gone AS (DELETE FROM project_registry.workspace_migrations WHERE project_id = $1 RETURNING 1)
  SELECT count(*)::int AS n FROM gone`;

const DELETE_WORKSPACE_ROW = `
  WITH gone AS (DELETE FROM project_registry.workspace_config WHERE project_id = $1 RETURNING 1)
  SELECT count(*)::int AS n FROM gone`;

/**
 * Moves a workspace's registry row, ledger rows and snapshot rows to a new id and schema names in
 * one statement: an UPDATE in place keeps every column of the row, including ones added after
 * this was written, and the foreign keys (no ON UPDATE CASCADE) are checked at the end of the
 * statement, when every side carries the new id.
 */
const RENAME_WORKSPACE_ROWS = `
  WITH ledger AS (
    UPDATE project_registry.workspace_migrations SET project_id = $2 WHERE project_id = $1 RETURNING 1
  ), registry AS (
    UPDATE project_registry.workspace_config SET project_id = $2, schema_name = $3 WHERE project_id = $1 RETURNING 1
  ), snapshots AS (
    UPDATE project_registry.workspace_snapshots s SET project_id = $2, schema_name = m.schema_name
      FROM unnest($4::int[], $5::text[]) AS m(snapshot, schema_name)
     WHERE s.project_id = $1 AND s.snapshot = m.snapshot RETURNING 1
  )
  SELECT (SELECT count(*)::int FROM registry) AS registry_rows, (SELECT count(*)::int FROM ledger) AS ledger_rows,
         (SELECT count(*)::int FROM snapshots) AS snapshot_rows`;

const ROLE_EXISTS = 'SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1) AS present';

export interface WorkspacePresence {
  registered: boolean;
  schema_exists: boolean;
  /** Null when the schema does not exist. */
  acts_as_owner: boolean | null;
  owner: string | null;
}

export async function currentDatabase(q: Queryable): Promise<string> {
  return (await firstRow<{ database: string }>(q, CURRENT_DATABASE)).database;
}

/** Every registered workspace with its recorded role (null: none recorded yet). */
export const workspacePresence = (tx: Queryable, projectId: string, schemaName: string) =>
  firstRow<WorkspacePresence>(tx, WORKSPACE_PRESENCE, [projectId, schemaName]);

/** Deletes a workspace's ledger rows, then its registry row; how many of each went. */
export async function deleteWorkspaceRows(tx: Queryable, projectId: string): Promise<{ ledgerRows: number; registryRows: number }> {
  const ledger = await firstRow<{ n: number }>(tx, DELETE_WORKSPACE_LEDGER, [projectId]);
  const registry = await firstRow<{ n: number }>(tx, DELETE_WORKSPACE_ROW, [projectId]);
  return { ledgerRows: ledger.n, registryRows: registry.n };
}

/** Moves a workspace's registry, ledger and snapshot rows to a new id, its snapshots to their new schema names. */
export async function renameWorkspaceRows(
  tx: Queryable,
  from: string,
  to: string,
  schemaName: string,
  snapshots: readonly { snapshot: number; schemaName: string }[],
): Promise<{ registryRows: number; ledgerRows: number; snapshotRows: number }> {
  const moved = await firstRow<{ registry_rows: number; ledger_rows: number; snapshot_rows: number }>(tx, RENAME_WORKSPACE_ROWS, [
    from,
    to,
    schemaName,
    snapshots.map((s) => s.snapshot),
    snapshots.map((s) => s.schemaName),
  ]);
  return { registryRows: moved.registry_rows, ledgerRows: moved.ledger_rows, snapshotRows: moved.snapshot_rows };
}

export async function roleExists(q: Queryable, roleName: string): Promise<boolean> {
  return (await firstRow<{ present: boolean }>(q, ROLE_EXISTS, [roleName])).present;
}
