import type { Queryable } from './database.js';

export interface ColumnCheck {
  tableExists: boolean;
  present: string[];
  missing: string[];
}

/**
 * Which of `columns` exist on `schema.table`, by core's project_registry.table_columns(): index
 * probes of pg_namespace, pg_class and pg_attribute (never a scan of information_schema) whose
 * plans each session caches. Core's schema is installed before anything asks.
 */
export async function checkColumns(
  q: Queryable,
  schema: string,
  table: string,
  columns: readonly string[],
): Promise<ColumnCheck> {
  const [row] = await q.query<{ present: string[] | null }>('SELECT project_registry.table_columns($1, $2, $3) AS present', [
    schema,
    table,
    columns,
  ]);
  if (!row?.present) return { tableExists: false, present: [], missing: [...columns] };
  const found = new Set(row.present);
  const present = columns.filter((c) => found.has(c));
  return { tableExists: true, present, missing: columns.filter((c) => !found.has(c)) };
}
