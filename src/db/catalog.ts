import type { Queryable } from './database.js';

export interface ColumnCheck {
  tableExists: boolean;
  present: string[];
  missing: string[];
}

/**
 * Which of `columns` exist on `schema.table`, by core's project_registry.table_columns(): index
 * probes of pg_namespace, pg_class and pg_attribute (never a scan of information_schema) whose
 * plans each session caches. Core's schema is installed before anything asks. Whether the schema
 * exists comes from the same statement, so both answers read one snapshot: a workspace being
 * created meanwhile is seen whole or not at all.
 */
export async function checkColumns(
  q: Queryable,
  schema: string,
  table: string,
  columns: readonly string[],
): Promise<ColumnCheck & { schemaExists: boolean }> {
  const [row] = await q.query<{ present: string[] | null; schema_exists: boolean }>(
    `SELECT project_registry.table_columns($1, $2, $3) AS present,
            EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1) AS schema_exists`,
    [schema, table, columns],
  );
  const schemaExists = row?.schema_exists ?? false;
  if (!row?.present) return { schemaExists, tableExists: false, present: [], missing: [...columns] };
  const found = new Set(row.present);
  const present = columns.filter((c) => found.has(c));
  return { schemaExists, tableExists: true, present, missing: columns.filter((c) => !found.has(c)) };
}
