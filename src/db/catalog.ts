import type { Queryable } from './database.js';

export interface ColumnCheck {
  tableExists: boolean;
  present: string[];
  missing: string[];
}

/**
 * Which of `columns` exist on `schema.table`, read from pg_catalog so each lookup is an index
 * probe (pg_namespace, pg_class and pg_attribute by name), not a scan of information_schema.
 * The schema is resolved to its oid first so that pg_class is probed on (relname, relnamespace):
 * by name alone, a table that every workspace has would match once per workspace.
 */
export async function checkColumns(
  q: Queryable,
  schema: string,
  table: string,
  columns: readonly string[],
): Promise<ColumnCheck> {
  const [row] = await q.query<{ present: string[] }>(
    `SELECT coalesce(array_agg(a.attname::text) FILTER (WHERE a.attname IS NOT NULL), '{}') AS present
       FROM pg_catalog.pg_class c
       LEFT JOIN pg_catalog.pg_attribute a
              ON a.attrelid = c.oid AND a.attname = ANY ($3::text[]) AND a.attnum > 0 AND NOT a.attisdropped
      WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1)
        AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      GROUP BY c.oid`,
    [schema, table, columns],
  );
  if (!row) return { tableExists: false, present: [], missing: [...columns] };
  const present = columns.filter((c) => row.present.includes(c));
  return { tableExists: true, present, missing: columns.filter((c) => !present.includes(c)) };
}
