import type { Queryable } from '../db/database.js';

/*
 * Every statement sent to core's project_registry.deferred_indexes (extensions/core/schema.sql):
 * the vector indexes an ingest run dropped for its load, and the lease that says the load still
 * runs. The guards (record, claim) run as the server first in the transaction of the sandboxed DDL
 * they stand for (WorkspaceSandbox.writeAsWorkspace), so the row and the index change together.
 */

export interface DeferredIndexRow {
  project_id: string;
  table_name: string;
  index_name: string;
  definition: string;
  deferred_at: string;
  lease_until: string;
  /** The lease ran out: the load that deferred it stopped without creating it again. */
  expired: boolean;
}

const COLUMNS = `project_id, table_name, index_name, definition, deferred_at::text, lease_until::text, lease_until < pg_catalog.now() AS expired`;

/**
 * The vector indexes of a workspace table now (catalog only, no agent code: pg_get_indexdef
 * deparses): valid indexes of the access methods $3 on $1.$2, with their definitions.
 */
export async function vectorIndexesOf(q: Queryable, schemaName: string, table: string, methods: readonly string[]): Promise<Array<{ name: string; definition: string }>> {
  return q.query(
    `SELECT i.relname AS name, pg_catalog.pg_get_indexdef(i.oid) AS definition
       FROM pg_catalog.pg_index x
       JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
       JOIN pg_catalog.pg_am a ON a.oid = i.relam
      WHERE x.indrelid = pg_catalog.to_regclass(pg_catalog.quote_ident($1) || '.' || pg_catalog.quote_ident($2))
        AND x.indisvalid AND a.amname = ANY ($3::text[])
      ORDER BY i.relname`,
    [schemaName, table, [...methods]],
  );
}

/** The deferrals of a workspace (of one table of it, with `table`), oldest first. */
export async function deferredIndexes(q: Queryable, projectId: string, table?: string): Promise<DeferredIndexRow[]> {
  return q.query<DeferredIndexRow>(
    `SELECT ${COLUMNS} FROM project_registry.deferred_indexes
      WHERE project_id = $1 AND ($2::text IS NULL OR table_name = $2)
      ORDER BY deferred_at, index_name`,
    [projectId, table ?? null],
  );
}

/**
 * Every workspace's deferrals whose lease ran out (their load stopped), for doctor and repair;
 * none on a database installed before deferred_indexes existed.
 */
export async function expiredDeferrals(q: Queryable): Promise<DeferredIndexRow[]> {
  const [present] = await q.query<{ exists: boolean }>("SELECT pg_catalog.to_regclass('project_registry.deferred_indexes') IS NOT NULL AS exists");
  if (!present?.exists) return [];
  return q.query<DeferredIndexRow>(
    `SELECT ${COLUMNS} FROM project_registry.deferred_indexes WHERE lease_until < pg_catalog.now() ORDER BY project_id, deferred_at, index_name`,
  );
}

/**
 * The guard of the transaction that drops indexes `names` of $1's table $2: records each that
 * still exists, with its definition now, leased for `leaseMs`. Fails (23505) when another load has
 * deferred them meanwhile, and so the drop does not happen.
 */
export function recordDeferralGuard(projectId: string, schemaName: string, table: string, names: readonly string[], leaseMs: number): { sql: string; params: string[] } {
  return {
    sql: `INSERT INTO project_registry.deferred_indexes (project_id, table_name, index_name, definition, lease_until)
          SELECT $1, $2, i.relname, pg_catalog.pg_get_indexdef(i.oid), pg_catalog.now() + $5::int8 * interval '1 millisecond'
            FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
           WHERE x.indrelid = pg_catalog.to_regclass(pg_catalog.quote_ident($3) || '.' || pg_catalog.quote_ident($2))
             AND i.relname = ANY (ARRAY(SELECT pg_catalog.json_array_elements_text($4::json)))`,
    params: [projectId, table, schemaName, JSON.stringify(names), String(leaseMs)],
  };
}

/** A running load's renewal of the lease of its table's deferrals (a load that joined another's renews it too). */
export async function renewLease(q: Queryable, projectId: string, table: string, leaseMs: number): Promise<void> {
  await q.query(
    `UPDATE project_registry.deferred_indexes SET lease_until = pg_catalog.now() + $3::int8 * interval '1 millisecond'
      WHERE project_id = $1 AND table_name = $2`,
    [projectId, table, leaseMs],
  );
}

/**
 * The guard of the transaction that creates deferred indexes `names` again: deletes their rows,
 * so row and index change together. Fails (22P02: plain SQL has no RAISE) unless it took every
 * one: another process holds them (creating them now, its rows locked: SKIP LOCKED never waits
 * for it), did so already, or, with `expiredOnly`, the load that deferred them still runs.
 */
export function claimDeferralGuard(projectId: string, names: readonly string[], expiredOnly: boolean): { sql: string; params: string[] } {
  return {
    sql: `WITH claimed AS (
            DELETE FROM project_registry.deferred_indexes d
             WHERE (d.project_id, d.index_name) IN (
                     SELECT project_id, index_name FROM project_registry.deferred_indexes
                      WHERE project_id = $1 AND index_name = ANY (ARRAY(SELECT pg_catalog.json_array_elements_text($2::json)))
                        AND (NOT $3::boolean OR lease_until < pg_catalog.now())
                        FOR UPDATE SKIP LOCKED)
            RETURNING 1)
          SELECT (CASE WHEN (SELECT pg_catalog.count(*) FROM claimed) = pg_catalog.json_array_length($2::json) THEN '0'
                       ELSE 'these deferred indexes are being created again, or were, by another process' END)::int4`,
    params: [projectId, JSON.stringify(names), String(expiredOnly)],
  };
}
