import type { Database } from '../db/database.js';
import { validateIdentifier } from '../db/identifiers.js';
import type { Embedder } from '../embeddings/embedder.js';
import { assertSearchable } from '../embeddings/embedding-spaces.js';
import type { AgentParam } from '../sandbox/agent-statement.js';
import { schemaNameFor, validateProjectId } from '../workspaces/project-id.js';
import {
  jsonValue,
  metricOfOpclass,
  readTableCatalog,
  SEARCH_K_MAX,
  type CatalogColumn,
  type CatalogRow,
  type FilterValue,
  type WorkspaceReader,
} from '../workspaces/vector-search.js';
import { TableNotFoundError } from '../workspaces/workspace-description.js';
import { WorkspaceNotFoundError } from '../workspaces/workspace-errors.js';
import { agentTableRelation, CHUNK_FILTERS, chunksRelation, searchStatement, SCORE_COLUMNS, type SearchMode, type SearchRelation } from './search-sql.js';

export type { SearchMode } from './search-sql.js';
export const SEARCH_MODES: readonly SearchMode[] = ['hybrid', 'vector', 'text'];
export const SEARCH_DEFAULT_K = 10;
export const SEARCH_QUERY_MAX_CHARS = 4000;
/** The configuration `chunks.content_tsv` is generated with (extensions/codebase/workspace). */
export const CHUNKS_TEXT_LANGUAGE = 'english';
/** Each ranking of a hybrid search contributes this many candidates per result asked for (at least 40). */
const CANDIDATES_PER_RESULT = 4;
const MIN_CANDIDATES = 40;
/** pgvector's default hnsw.ef_search, which caps an HNSW scan's rows. */
const HNSW_DEFAULT_EF_SEARCH = 40;

export interface SearchInput {
  projectId: string;
  query: string;
  /** Default `chunks` (the codebase extension's). */
  table?: string | undefined;
  /** For an agent's table: the text column searched (default: its only text column). */
  textColumn?: string | undefined;
  /** For an agent's table: the vector column (default: its only vector column, if any). */
  vectorColumn?: string | undefined;
  k?: number | undefined;
  filter?: Readonly<Record<string, FilterValue>> | undefined;
  mode?: SearchMode | undefined;
  /** A PostgreSQL text search configuration, e.g. `simple` or `english`. */
  language?: string | undefined;
}

export interface SearchHit {
  /** Higher is better; what it is depends on the mode (see docs/search.md). */
  score: number;
  text_rank: number | null;
  text_score: number | null;
  vector_rank: number | null;
  distance: number | null;
  /** The text that matched. */
  content: string | null;
  /** Where the row came from: for chunks the file (or document source) and its lines. */
  source: { table: string; id: string | null; path: string | null; start_line: number | null; end_line: number | null; repository: string | null };
  metadata: unknown;
  /** An agent table's other columns (not vectors). */
  row?: Record<string, unknown>;
}

export interface SearchResult {
  mode: SearchMode;
  table: string;
  k: number;
  language: string;
  /** Set when the search did less than it could (no provider configured, a mode it fell back from). */
  note?: string;
  results: SearchHit[];
}

export class SearchError extends Error {
  override name = 'SearchError';
}

const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar']);
const LANGUAGE = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Finds rows of a workspace table by text: PostgreSQL full text search, nearest neighbours of
 * the query's embedding, or both fused by reciprocal rank (hybrid). Every name is checked
 * against the catalog (read as the server: no agent code runs there) and quoted; the search
 * itself runs as the workspace's role in its sandbox, read-only, like `query`.
 */
export async function searchWorkspace(db: Database, sandbox: WorkspaceReader | undefined, embedder: Embedder | undefined, input: SearchInput, signal?: AbortSignal): Promise<SearchResult> {
  const projectId = validateProjectId(input.projectId);
  const schemaName = schemaNameFor(projectId);
  const query = input.query.trim();
  if (query.length === 0) throw new SearchError('query must contain some text to search for.');
  if (query.length > SEARCH_QUERY_MAX_CHARS) throw new SearchError(`query must be at most ${SEARCH_QUERY_MAX_CHARS} characters, got ${query.length}.`);
  const k = input.k ?? SEARCH_DEFAULT_K;
  if (!Number.isInteger(k) || k < 1 || k > SEARCH_K_MAX) throw new SearchError(`k must be a whole number from 1 to ${SEARCH_K_MAX}, got ${k}.`);
  const table = validateIdentifier(input.table ?? 'chunks', 'table');
  const filter = Object.entries(input.filter ?? {});
  for (const [name] of filter) validateIdentifier(name, 'filter column');
  const language = input.language ?? CHUNKS_TEXT_LANGUAGE;
  if (!LANGUAGE.test(language)) throw new SearchError(`language must be the name of a PostgreSQL text search configuration such as "simple" or "english", got ${JSON.stringify(language)}.`);

  let mode: SearchMode = input.mode ?? (embedder ? 'hybrid' : 'text');
  let note: string | undefined;
  if (!embedder && mode !== 'text') {
    if (mode === 'vector') {
      throw new SearchError(
        'mode "vector" needs an embedding provider, and this server has none configured: use mode "text" (full-text search), ' +
          'or start the server with --embeddings (see docs/search.md).',
      );
    }
    mode = 'text';
    note = 'No embedding provider is configured on this server: this is a full-text search only (see docs/search.md to configure one).';
  } else if (!embedder) {
    note = 'Full-text search only: no embedding provider is configured on this server (see docs/search.md).';
  }

  const vectorColumnName = input.vectorColumn ?? (table === 'chunks' ? 'embedding' : '');
  const catalog = await readTableCatalog(db, projectId, table, vectorColumnName);
  if (!catalog?.registered) throw new WorkspaceNotFoundError(projectId);
  if (!catalog.table_exists || !catalog.columns) throw new TableNotFoundError(projectId, table);
  const columns = catalog.columns;
  const byName = new Map(columns.map((c) => [c.name, c]));
  const isChunks = table === 'chunks' && input.textColumn === undefined && byName.has('content_tsv') && byName.has('file_id');

  // The vector side: the column, its metric, and whether it can take the provider's vectors.
  let vector: SearchRelation['vector'];
  let vectorColumn: string | undefined;
  if (mode !== 'text') {
    const column = resolveVectorColumn(catalog, table, input.vectorColumn ?? (isChunks ? 'embedding' : undefined));
    if (!column) {
      if (input.mode) throw new SearchError(`mode "${mode}" needs a vector column, and ${table} has none: use mode "text", or add a vector column and fill it.`);
      mode = 'text';
      note = `${table} has no vector column: this is a full-text search only.`;
    } else {
      const dimensions = embedder?.space.dimensions;
      if (column.typmod > 0 && dimensions !== undefined && column.typmod !== dimensions) {
        throw new SearchError(
          `Column ${table}.${column.name} is ${column.type}, but the configured embedding model (${embedder?.space.model}) makes ${dimensions}-dimensional vectors: ` +
            'they cannot be compared. Use mode "text", or configure a model of that dimension.',
        );
      }
      vectorColumn = column.name;
      vector = {
        column: `s.${quoteName(column.name)}`,
        extensionSchema: catalog.vector_schema as string,
        type: column.base,
        metric: metricOfOpclass(input.vectorColumn === undefined || input.vectorColumn === column.name ? catalog.index_opclass : null) ?? 'l2',
      };
    }
  }

  let relation: SearchRelation;
  const filterSql: string[] = [];
  const params: AgentParam[] = [query, language, 0, k, null, usesOperators(query)];
  const select: string[] = [];
  if (isChunks) {
    const tsvector = language === CHUNKS_TEXT_LANGUAGE ? 's.content_tsv' : 'pg_catalog.to_tsvector($2::pg_catalog.regconfig, s.content)';
    relation = chunksRelation(schemaName, vector, tsvector);
    for (const [name, value] of filter) {
      const column = CHUNK_FILTERS[name];
      if (!column) throw new SearchError(`filter ${JSON.stringify(name)} is not one chunks take; use ${Object.keys(CHUNK_FILTERS).join(', ')}.`);
      filterSql.push(value === null ? `${column} IS NULL` : `${column}::text OPERATOR(pg_catalog.=) $${params.push(String(value))}`);
    }
  } else {
    if (catalog.relkind === 'v' || catalog.relkind === 'f') {
      throw new SearchError(`${table} is a ${catalog.relkind === 'v' ? 'view' : 'foreign table'}: search takes tables and materialized views; read a view with query.`);
    }
    const textColumn = resolveTextColumn(columns, table, input.textColumn);
    for (const [name, value] of filter) {
      if (!byName.has(name)) throw new SearchError(`filter column ${JSON.stringify(name)} is not a column of ${table}; its columns are: ${columns.map((c) => c.name).join(', ')}.`);
      filterSql.push(value === null ? `s.${quoteName(name)} IS NULL` : `s.${quoteName(name)} OPERATOR(pg_catalog.=) $${params.push(value)}`);
    }
    select.push(...columns.filter((c) => !c.vector && c.base !== 'tsvector').map((c) => c.name));
    relation = agentTableRelation(schemaName, table, textColumn.name, vector, select);
    // The text column's value is the result's content.
    relation.select.push(`s.${quoteName(textColumn.name)}`);
  }
  if (!sandbox) throw new SearchError('search runs inside the SQL sandbox, which this server has not set up.');
  if (k > sandbox.maxRowsCap) throw new SearchError(`k must be at most ${sandbox.maxRowsCap} here, this server's row cap (PG_WORKSPACE_MAX_ROWS).`);

  const candidates = mode === 'text' ? k : Math.max(MIN_CANDIDATES, k * CANDIDATES_PER_RESULT);
  params[2] = candidates;
  if (mode !== 'text') {
    const space = (embedder as Embedder).space;
    // A column pinned to another embedding space (or being moved by reembed) cannot be compared with this query.
    await assertSearchable(db, { projectId, table, column: vectorColumn as string }, space);
    params[4] = (await (embedder as Embedder).embedQuery(query, signal)).vector;
  }
  const settings: Record<string, string> = {};
  if (mode !== 'text') settings['hnsw.ef_search'] = String(Math.max(HNSW_DEFAULT_EF_SEARCH, candidates));
  if (mode !== 'text' && catalog.iterative_scan && filterSql.length > 0) settings['hnsw.iterative_scan'] = 'relaxed_order';
  const result = await sandbox.readExisting(projectId, searchStatement(relation, mode, filterSql), params, k, settings);

  const results = result.rows.map((values): SearchHit => {
    const [score, textRank, textScore, vectorRank, distance] = values.slice(0, SCORE_COLUMNS.length).map((v) => (v === null ? null : Number(v)));
    const rest = values.slice(SCORE_COLUMNS.length);
    const scores = { score: score ?? 0, text_rank: textRank ?? null, text_score: textScore ?? null, vector_rank: vectorRank ?? null, distance: distance ?? null };
    if (isChunks) {
      const [id, content, path, startLine, endLine, metadata, repository] = rest;
      return {
        ...scores,
        content: content as string,
        source: { table, id: String(id), path: path as string, start_line: Number(startLine), end_line: Number(endLine), repository: repository as string },
        metadata: metadata ?? null,
      };
    }
    const row = Object.fromEntries(select.map((name, i) => [name, jsonValue(rest[i], byName.get(name) as CatalogColumn)]));
    return {
      ...scores,
      content: (rest[select.length] as string | null) ?? null,
      source: { table, id: null, path: null, start_line: null, end_line: null, repository: null },
      metadata: null,
      row,
    };
  });
  return { mode, table, k, language, ...(note ? { note } : {}), results };
}

/**
 * websearch_to_tsquery ANDs plain words, so a question ("how do I back up the store") would
 * match only rows holding every word. A query with websearch operators (quotes, a leading minus,
 * "or") is taken as written; any other matches rows holding any of its informative words (see
 * search-sql.ts).
 */
export function usesOperators(query: string): boolean {
  return /"|(^|\s)-\S|\sor\s/i.test(query);
}

const quoteName = (name: string) => `"${name.replaceAll('"', '""')}"`;

function resolveTextColumn(columns: readonly CatalogColumn[], table: string, named: string | undefined): CatalogColumn {
  const texts = columns.filter((c) => TEXT_TYPES.has(c.base));
  if (named !== undefined) {
    validateIdentifier(named, 'text column');
    const column = columns.find((c) => c.name === named);
    if (!column) throw new SearchError(`text_column ${JSON.stringify(named)} is not a column of ${table}; its text columns are: ${texts.map((c) => c.name).join(', ') || 'none'}.`);
    if (!TEXT_TYPES.has(column.base)) throw new SearchError(`Column ${table}.${named} is ${column.type}, not text: name a text or varchar column in text_column (${texts.map((c) => c.name).join(', ') || 'none here'}).`);
    return column;
  }
  if (texts.length === 1) return texts[0] as CatalogColumn;
  throw new SearchError(
    texts.length === 0
      ? `${table} has no text column to search.`
      : `${table} has ${texts.length} text columns (${texts.map((c) => c.name).join(', ')}): say which one in text_column.`,
  );
}

function resolveVectorColumn(catalog: CatalogRow, table: string, named: string | undefined): CatalogColumn | undefined {
  const vectors = (catalog.columns ?? []).filter((c) => c.vector && c.base !== 'sparsevec');
  if (named !== undefined) {
    validateIdentifier(named, 'vector column');
    const column = catalog.columns?.find((c) => c.name === named);
    if (!column) throw new SearchError(`vector_column ${JSON.stringify(named)} is not a column of ${table}; its vector columns are: ${vectors.map((c) => c.name).join(', ') || 'none'}.`);
    if (!column.vector || column.base === 'sparsevec') throw new SearchError(`Column ${table}.${named} is ${column.type}, not a pgvector vector or halfvec column.`);
    return column;
  }
  if (vectors.length === 1) return vectors[0];
  if (vectors.length > 1) throw new SearchError(`${table} has ${vectors.length} vector columns (${vectors.map((c) => c.name).join(', ')}): say which one in vector_column.`);
  return undefined;
}
