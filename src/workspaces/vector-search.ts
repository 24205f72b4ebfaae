import type { Database, Queryable } from '../db/database.js';
import type { AgentParam } from '../sandbox/agent-statement.js';
import type { RowsResult } from '../sandbox/workspace-sandbox.js';
import { quoteIdent, validateIdentifier } from '../db/identifiers.js';
import { IS_REGISTERED } from '../registry/registry-sql.js';
import { schemaNameFor } from './project-id.js';
import { TableNotFoundError } from './workspace-description.js';
import { WorkspaceNotFoundError } from './workspace-errors.js';

/** pgvector's distance operators; inner_product's `<#>` is the negated inner product, so smaller is nearer. */
export const METRICS = { l2: '<->', cosine: '<=>', inner_product: '<#>' } as const;
export type Metric = keyof typeof METRICS;

export const SEARCH_K_DEFAULT = 10;
export const SEARCH_K_MAX = 100;
/** pgvector's own limit on vector dimensions. */
export const VECTOR_MAX_DIMENSIONS = 16_000;
/** pgvector's default `hnsw.ef_search`. */
const HNSW_DEFAULT_EF_SEARCH = 40;

export type FilterValue = string | number | boolean | null;

export interface VectorSearchInput {
  projectId: string;
  table: string;
  column: string;
  vector: readonly number[];
  k?: number | undefined;
  metric?: Metric | undefined;
  filter?: Readonly<Record<string, FilterValue>> | undefined;
  columns?: readonly string[] | undefined;
}

export interface VectorSearchResult {
  table: string;
  column: string;
  metric: Metric;
  /** Where the metric came from: the column's index, the caller, or the l2 fallback. */
  metric_source: 'index' | 'argument' | 'default';
  k: number;
  columns: string[];
  matches: Array<{ distance: number; row: Record<string, unknown> }>;
  /** Set when the rows reached the server's byte budget per result before k. */
  truncated_reason?: string;
}

export class VectorSearchError extends Error {
  override name = 'VectorSearchError';
}

export interface CatalogColumn {
  name: string;
  type: string;
  /** pg_type.typname, for deciding how a value travels as JSON. */
  base: string;
  /** One of pgvector's vector types. */
  vector: boolean;
  typmod: number;
}

export interface CatalogRow {
  registered: boolean;
  table_exists: boolean;
  /** pg_class.relkind: r table, p partitioned, v view, m materialized view, f foreign. */
  relkind: string | null;
  vector_schema: string | null;
  iterative_scan: boolean;
  columns: CatalogColumn[] | null;
  index_opclass: string | null;
}

/**
 * What the search needs from pg_catalog, in one statement that also starts the statement timeout
 * (transaction-local) and, on pgvector 0.8+, lets HNSW keep scanning past rows a filter rejects,
 * so a filtered search still finds k rows. Defaults for the index opclass: the first valid index
 * whose first key is the column.
 */
const CATALOG = `
  WITH ext AS (
    SELECT e.extnamespace, n.nspname,
           string_to_array(e.extversion, '.')::int[] >= '{0,8,0}' AS iterative_scan
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'vector'
  ), rel AS (
    SELECT c.oid, c.relkind FROM pg_catalog.pg_class c
     WHERE c.relname = $3 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $2)
  )
  SELECT ${IS_REGISTERED}
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = $2) AS registered,
         EXISTS (SELECT 1 FROM rel) AS table_exists,
         (SELECT relkind FROM rel) AS relkind,
         (SELECT nspname FROM ext) AS vector_schema,
         coalesce((SELECT iterative_scan FROM ext), false) AS iterative_scan,
         (SELECT jsonb_agg(jsonb_build_object(
                   'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod), 'base', t.typname,
                   'vector', t.typname IN ('vector', 'halfvec', 'sparsevec') AND t.typnamespace = (SELECT extnamespace FROM ext),
                   'typmod', a.atttypmod) ORDER BY a.attnum)
            FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
           WHERE a.attrelid = (SELECT oid FROM rel) AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
         (SELECT o.opcname FROM pg_catalog.pg_index i
            JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            JOIN pg_catalog.pg_opclass o ON o.oid = i.indclass[0]
           WHERE i.indrelid = (SELECT oid FROM rel) AND a.attname = $4 AND i.indisvalid
           ORDER BY i.indexrelid LIMIT 1) AS index_opclass`;

/**
 * Runs a read of a table an agent controls as the workspace's own role (WorkspaceSandbox): views,
 * row-level security policies, casts and operators there are agent code.
 */
export interface WorkspaceReader {
  readonly maxRowsCap: number;
  /** Never makes the workspace (WorkspaceSandbox.readExisting). */
  readExisting(
    projectId: string,
    sql: string,
    params: readonly AgentParam[],
    maxRows: number,
    settings: Readonly<Record<string, string>>,
  ): Promise<RowsResult>;
}

/**
 * Nearest rows to `vector` in a workspace table's pgvector column, without SQL from the caller:
 * every name is checked against the catalog and quoted, every value is a parameter. The catalog
 * and the registry are read as the server (no agent code runs there); the search itself runs as
 * the workspace in its sandbox, read-only under the SQL tools' statement timeout: the table, its
 * policies and the types and operators of its columns belong to the agent, so as the server they
 * would run agent code with the server's privileges. Whatever changes between the two steps, the
 * search still runs as the workspace.
 */
export async function searchVectors(
  db: Database,
  sandbox: WorkspaceReader | undefined,
  input: VectorSearchInput,
): Promise<VectorSearchResult> {
  const schemaName = schemaNameFor(input.projectId);
  const table = validateIdentifier(input.table, 'table');
  const column = validateIdentifier(input.column, 'column');
  const k = input.k ?? SEARCH_K_DEFAULT;
  if (!Number.isInteger(k) || k < 1 || k > SEARCH_K_MAX) throw new VectorSearchError(`k must be an integer from 1 to ${SEARCH_K_MAX}, got ${k}.`);
  if (input.vector.length === 0 || input.vector.length > VECTOR_MAX_DIMENSIONS || !input.vector.every(Number.isFinite)) {
    throw new VectorSearchError(`vector must be 1 to ${VECTOR_MAX_DIMENSIONS} finite numbers.`);
  }
  const filter = Object.entries(input.filter ?? {});
  for (const [name] of filter) validateIdentifier(name, 'filter column');
  for (const name of input.columns ?? []) validateIdentifier(name, 'column');

  const catalog = await readTableCatalog(db, input.projectId, table, column);
  if (!catalog?.registered) throw new WorkspaceNotFoundError(input.projectId);
  if (!catalog.table_exists || !catalog.columns) throw new TableNotFoundError(input.projectId, table);
  const byName = new Map(catalog.columns.map((c) => [c.name, c]));
  const unknown = (name: string, what: string) =>
    new VectorSearchError(
      `${what} ${JSON.stringify(name)} is not a column of ${table}; its columns are: ${catalog.columns?.map((c) => c.name).join(', ')}.`,
    );
  const target = byName.get(column);
  if (!target) throw unknown(column, 'column');
  if (!catalog.vector_schema || !target.vector || target.base === 'sparsevec') {
    const vectors = catalog.columns.filter((c) => c.vector && c.base !== 'sparsevec').map((c) => c.name);
    throw new VectorSearchError(
      `Column ${table}.${column} is ${target.type}, not a pgvector vector or halfvec column` +
        (vectors.length > 0 ? `; this table's vector columns: ${vectors.join(', ')}.` : '; this table has none.'),
    );
  }
  // vector(n) and halfvec(n) keep n in the typmod; -1 means any dimension.
  if (target.typmod > 0 && target.typmod !== input.vector.length) {
    throw new VectorSearchError(
      `Column ${table}.${column} is ${target.type}: the vector must have ${target.typmod} dimensions, got ${input.vector.length}.`,
    );
  }
  for (const [name] of filter) if (!byName.has(name)) throw unknown(name, 'filter column');
  // By default no vectors, nor tsvectors (chunks.content_tsv): long, and derived from a column that is returned.
  const returned = input.columns ? [...new Set(input.columns)] : catalog.columns.filter((c) => !c.vector && c.base !== 'tsvector').map((c) => c.name);
  for (const name of returned) if (!byName.has(name)) throw unknown(name, 'column');
  // Never a weaker mode: without the sandbox (say, the server cannot create roles) there is no search.
  if (!sandbox) throw new VectorSearchError('search_vectors runs inside the SQL sandbox, which this server has not set up.');
  if (k > sandbox.maxRowsCap) throw new VectorSearchError(`k must be at most ${sandbox.maxRowsCap} here, this server's row cap (PG_WORKSPACE_MAX_ROWS).`);

  const fromIndex = metricOfOpclass(catalog.index_opclass);
  const metric = input.metric ?? fromIndex ?? 'l2';
  const ext = quoteIdent(catalog.vector_schema);
  // Qualified: the workspace's search path comes first, and it may define its own <->.
  const distance = `${quoteIdent(column)} OPERATOR(${ext}.${METRICS[metric]}) $1::${ext}.${target.base}`;
  const params: AgentParam[] = [[...input.vector], k];
  const conditions = [`${quoteIdent(column)} IS NOT NULL`];
  for (const [name, value] of filter) {
    if (value === null) conditions.push(`${quoteIdent(name)} IS NULL`);
    else conditions.push(`${quoteIdent(name)} OPERATOR(pg_catalog.=) $${params.push(value)}`);
  }
  // The HNSW default ef_search caps how many rows an index scan returns; on pgvector 0.8+ an
  // iterative scan goes on past rows a filter rejects, so a filtered search still finds k rows.
  const settings: Record<string, string> = { 'hnsw.ef_search': String(Math.max(HNSW_DEFAULT_EF_SEARCH, k)) };
  if (catalog.iterative_scan && filter.length > 0) settings['hnsw.iterative_scan'] = 'strict_order';
  // Columns by position: the distance is the last one, whatever the table's names.
  const select = returned.map((name) => quoteIdent(name));
  const result = await sandbox.readExisting(
    input.projectId,
    `SELECT ${[...select, distance].join(', ')}
       FROM ${quoteIdent(schemaName)}.${quoteIdent(table)}
      WHERE ${conditions.join(' AND ')}
      ORDER BY ${distance}
      LIMIT $2`,
    params,
    k,
    settings,
  );
  const kinds = returned.map((name) => byName.get(name) as CatalogColumn);
  return {
    table,
    column,
    metric,
    metric_source: input.metric ? 'argument' : fromIndex ? 'index' : 'default',
    k,
    columns: returned,
    matches: result.rows.map((values) => ({
      distance: Number(values[returned.length]),
      row: Object.fromEntries(returned.map((name, i) => [name, jsonValue(values[i], kinds[i] as CatalogColumn)])),
    })),
    ...(result.truncatedBy === 'max_bytes'
      ? {
          truncated_reason:
            `max_bytes: the nearest ${result.rowCount} rows reached this server's budget of bytes per result (PG_WORKSPACE_MAX_RESULT_BYTES) ` +
            'before k; pass columns to leave out large ones, or a smaller k.',
        }
      : {}),
  };
}

/**
 * A workspace table's columns and the opclass of the vector index on `indexedColumn`, read as the
 * server in a read-only transaction (catalog reads run no agent code); undefined for no row.
 */
export async function readTableCatalog(db: Database, projectId: string, table: string, indexedColumn: string): Promise<CatalogRow | undefined> {
  const [catalog] = await withReadOnlyTransaction(db, (tx) => tx.query<CatalogRow>(CATALOG, [projectId, schemaNameFor(projectId), table, indexedColumn]));
  return catalog;
}

export function metricOfOpclass(opclass: string | null): Metric | undefined {
  if (opclass?.endsWith('_l2_ops')) return 'l2';
  if (opclass?.endsWith('_cosine_ops')) return 'cosine';
  if (opclass?.endsWith('_ip_ops')) return 'inner_product';
  return undefined;
}

/**
 * The sandbox sends JSON (numbers of small numeric types as numbers; bigint and numeric as
 * strings): vectors become arrays of numbers, timestamptz values ISO 8601 in UTC.
 */
export function jsonValue(value: unknown, c: CatalogColumn): unknown {
  if (typeof value !== 'string') return value;
  if (c.vector && c.base !== 'sparsevec' && value.startsWith('[')) return JSON.parse(value) as number[];
  if (c.base === 'timestamptz') {
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? value : date.toISOString();
  }
  return value;
}

/** The catalog read: READ ONLY, always rolled back. */
async function withReadOnlyTransaction<T>(db: Database, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  return db.withSession(async (session) => {
    await session.query('BEGIN READ ONLY');
    try {
      return await fn(session);
    } finally {
      await session.query('ROLLBACK').catch(() => undefined);
    }
  });
}
