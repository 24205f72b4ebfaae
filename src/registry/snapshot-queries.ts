import type { Queryable } from '../db/database.js';

/*
 * Every statement about workspace snapshots (core's project_registry.workspace_snapshots,
 * extensions/core/schema.sql), named by what it does. Sizes and counts come back as numbers.
 */

/** The workspace migration level a schema is at: what a restore puts back in the registry. */
export interface MigrationLevel {
  workspace_fingerprint: string;
  workspace_schema_fingerprint: string | null;
  /** [{extension_id, name, checksum}] */
  migrations: { extension_id: string; name: string; checksum: string }[];
  /** The workspace's embedding_spaces rows (without project_id): which space wrote each vector column. */
  embedding_spaces: Record<string, unknown>[];
}

export interface SnapshotRow extends MigrationLevel {
  snapshot: number;
  schema_name: string;
  label: string | null;
  created_at: Date;
  size_bytes: number;
  origin: 'snapshot' | 'restore';
}

const SNAPSHOT_COLUMNS = `snapshot, schema_name, label, created_at, size_bytes::float8 AS size_bytes, origin,
       workspace_fingerprint, workspace_schema_fingerprint, migrations, embedding_spaces`;

export async function listSnapshots(q: Queryable, projectId: string): Promise<SnapshotRow[]> {
  return q.query<SnapshotRow>(
    `SELECT ${SNAPSHOT_COLUMNS} FROM project_registry.workspace_snapshots WHERE project_id = $1 ORDER BY snapshot`,
    [projectId],
  );
}

export async function findSnapshot(q: Queryable, projectId: string, snapshot: number): Promise<SnapshotRow | undefined> {
  const [row] = await q.query<SnapshotRow>(
    `SELECT ${SNAPSHOT_COLUMNS} FROM project_registry.workspace_snapshots WHERE project_id = $1 AND snapshot = $2`,
    [projectId, snapshot],
  );
  return row;
}

/** How many snapshots a workspace has, their bytes, and the number the next one gets. */
export async function snapshotTotals(q: Queryable, projectId: string): Promise<{ count: number; bytes: number; next: number }> {
  const [row] = await q.query<{ count: number; bytes: number; next: number }>(
    `SELECT count(*)::int AS count, coalesce(sum(size_bytes), 0)::float8 AS bytes, coalesce(max(snapshot), 0) + 1 AS next
       FROM project_registry.workspace_snapshots WHERE project_id = $1`,
    [projectId],
  );
  return row ?? { count: 0, bytes: 0, next: 1 };
}

/**
 * The bytes a schema's tables, materialized views and sequences take, indexes and TOAST
 * included: catalog functions only, nothing of the agent's runs. On Citus a distributed table's
 * bytes are its shards' (citus_total_relation_size), not the coordinator's empty shell's.
 */
export async function schemaSize(q: Queryable, schemaName: string, citus: boolean): Promise<number> {
  const size = citus
    ? `CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = c.oid)
            THEN pg_catalog.citus_total_relation_size(c.oid) ELSE pg_catalog.pg_total_relation_size(c.oid) END`
    : 'pg_catalog.pg_total_relation_size(c.oid)';
  const [row] = await q.query<{ bytes: number }>(
    `SELECT coalesce(sum(${size}), 0)::float8 AS bytes
       FROM pg_catalog.pg_class c
      WHERE c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND c.relkind IN ('r', 'm', 'S')`,
    [schemaName],
  );
  return row?.bytes ?? 0;
}

/** A registered workspace's migration level: its fingerprints and its ledger. */
export async function workspaceLevel(q: Queryable, projectId: string): Promise<MigrationLevel> {
  const [row] = await q.query<MigrationLevel>(
    `SELECT w.workspace_fingerprint, w.workspace_schema_fingerprint,
            coalesce((SELECT jsonb_agg(jsonb_build_object('extension_id', m.extension_id, 'name', m.name, 'checksum', m.checksum)
                                       ORDER BY m.extension_id, m.name)
                        FROM project_registry.workspace_migrations m WHERE m.project_id = w.project_id), '[]') AS migrations,
            coalesce((SELECT jsonb_agg(to_jsonb(e) - 'project_id' ORDER BY e.table_name, e.column_name)
                        FROM project_registry.embedding_spaces e WHERE e.project_id = w.project_id), '[]') AS embedding_spaces
       FROM project_registry.workspace_config w WHERE w.project_id = $1`,
    [projectId],
  );
  if (!row) throw new Error(`workspace ${projectId} is not registered`);
  return row;
}

export async function insertSnapshot(
  tx: Queryable,
  projectId: string,
  s: Pick<SnapshotRow, 'snapshot' | 'schema_name' | 'label' | 'size_bytes' | 'origin'> & MigrationLevel,
): Promise<SnapshotRow> {
  const [row] = await tx.query<SnapshotRow>(
    `INSERT INTO project_registry.workspace_snapshots
       (project_id, snapshot, schema_name, label, size_bytes, origin, workspace_fingerprint, workspace_schema_fingerprint, migrations, embedding_spaces)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     RETURNING ${SNAPSHOT_COLUMNS}`,
    [
      projectId,
      s.snapshot,
      s.schema_name,
      s.label,
      Math.round(s.size_bytes),
      s.origin,
      s.workspace_fingerprint,
      s.workspace_schema_fingerprint,
      JSON.stringify(s.migrations),
      JSON.stringify(s.embedding_spaces),
    ],
  );
  if (!row) throw new Error(`recording snapshot ${s.snapshot} of ${projectId} returned no row`);
  return row;
}

export async function deleteSnapshot(tx: Queryable, projectId: string, snapshot: number): Promise<void> {
  await tx.query('DELETE FROM project_registry.workspace_snapshots WHERE project_id = $1 AND snapshot = $2', [projectId, snapshot]);
}

/**
 * Puts a workspace's registry row, ledger and embedding-space pins at `level` (a restored
 * snapshot's): the next ensure_workspace or migrate-workspaces then upgrades it as any lagging
 * workspace, and search_vectors queries each column in the space that wrote its vectors.
 */
export async function setWorkspaceLevel(tx: Queryable, projectId: string, level: MigrationLevel): Promise<void> {
  await tx.query(
    `WITH config AS (
       UPDATE project_registry.workspace_config SET workspace_fingerprint = $2, workspace_schema_fingerprint = $3 WHERE project_id = $1
     ), gone AS (
       DELETE FROM project_registry.workspace_migrations WHERE project_id = $1
     )
     SELECT 1`,
    [projectId, level.workspace_fingerprint, level.workspace_schema_fingerprint],
  );
  await insertLedger(tx, projectId, level);
}

/** Registers a fork's new workspace at its source's level. */
export async function registerFork(tx: Queryable, projectId: string, schemaName: string, level: MigrationLevel): Promise<Date> {
  const [row] = await tx.query<{ created_at: Date }>(
    `INSERT INTO project_registry.workspace_config (project_id, schema_name, workspace_fingerprint, workspace_schema_fingerprint)
     VALUES ($1, $2, $3, $4) RETURNING created_at`,
    [projectId, schemaName, level.workspace_fingerprint, level.workspace_schema_fingerprint],
  );
  await insertLedger(tx, projectId, level);
  if (!row) throw new Error(`registering ${projectId} returned no row`);
  return row.created_at;
}

async function insertLedger(tx: Queryable, projectId: string, level: MigrationLevel): Promise<void> {
  // The pins go with the data they describe: every column of the table, whatever it holds then.
  await tx.query('DELETE FROM project_registry.embedding_spaces WHERE project_id = $1', [projectId]);
  await tx.query(
    `INSERT INTO project_registry.embedding_spaces
     SELECT (jsonb_populate_record(NULL::project_registry.embedding_spaces, e || jsonb_build_object('project_id', $1::text))).*
       FROM jsonb_array_elements($2::jsonb) e`,
    [projectId, JSON.stringify(level.embedding_spaces)],
  );
  await tx.query(
    `INSERT INTO project_registry.workspace_migrations (project_id, extension_id, name, checksum)
     SELECT $1, m.extension_id, m.name, m.checksum FROM jsonb_to_recordset($2::jsonb) AS m(extension_id text, name text, checksum text)`,
    [projectId, JSON.stringify(level.migrations)],
  );
}
