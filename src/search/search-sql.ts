import { quoteIdent } from '../db/identifiers.js';
import { METRICS, type Metric } from '../workspaces/vector-search.js';

/**
 * Every statement the search tool sends, built from names the caller has checked against the
 * catalog (quoted here) and values that stay parameters: $1 the query text, $2 the text search
 * configuration, $3 how many candidates each ranking contributes, $4 k, $5 the query vector
 * (vector and hybrid modes), then the filter values.
 */

/** Where the rows come from, with alias `s` for the searched table. */
export interface SearchRelation {
  /** FROM items; the searched table is aliased `s`. */
  from: string;
  /** Conditions every row must meet, besides the caller's filter. */
  where: string[];
  /** What identifies a row of `from` (joins the two rankings, then the rows back). */
  key: string[];
  /** The tsvector of a row, e.g. `s.content_tsv` or `to_tsvector($2::regconfig, s.body)`. */
  tsvector: string;
  /** The vector column, qualified; absent: the relation has none. */
  vector?: { column: string; extensionSchema: string; type: string; metric: Metric };
  /** The columns each result carries, after the scores. */
  select: string[];
}

export type SearchMode = 'hybrid' | 'vector' | 'text';

/** RRF's k: 60 in Cormack et al. (2009) and in most systems since; docs/search.md has our measurement. */
export const RRF_K = 60;

/** The columns every result row starts with, in this order. */
export const SCORE_COLUMNS = ['score', 'text_rank', 'text_score', 'vector_rank', 'distance'] as const;

const TEXT_QUERY = `SELECT pg_catalog.websearch_to_tsquery($2::pg_catalog.regconfig, $1) AS q`;

export function searchStatement(relation: SearchRelation, mode: SearchMode, filter: readonly string[]): string {
  const where = [...relation.where, ...filter];
  const and = (conditions: string[]) => (conditions.length > 0 ? ` AND ${conditions.join(' AND ')}` : '');
  const keys = relation.key.map((k, i) => `${k} AS k${i}`).join(', ');
  const keyNames = relation.key.map((_, i) => `k${i}`);
  const ctes: string[] = [];
  if (mode !== 'vector') {
    const rank = `pg_catalog.ts_rank_cd(${relation.tsvector}, q.q)`;
    ctes.push(
      `q AS MATERIALIZED (${TEXT_QUERY})`,
      `text_hits AS (SELECT ${keys}, ${rank}::float8 AS text_score FROM ${relation.from}, q
         WHERE ${relation.tsvector} OPERATOR(pg_catalog.@@) q.q${and(where)} ORDER BY text_score DESC LIMIT $3)`,
      `text_ranked AS (SELECT *, pg_catalog.row_number() OVER (ORDER BY text_score DESC) AS text_rank FROM text_hits)`,
    );
  }
  if (mode !== 'text') {
    const v = relation.vector;
    if (!v) throw new Error('a vector search needs the relation to have a vector column');
    const distance = `${v.column} OPERATOR(${quoteIdent(v.extensionSchema)}.${METRICS[v.metric]}) $5::${quoteIdent(v.extensionSchema)}.${v.type}`;
    ctes.push(
      `vector_hits AS (SELECT ${keys}, (${distance})::float8 AS distance FROM ${relation.from}
         WHERE ${v.column} IS NOT NULL${and(where)} ORDER BY ${distance} LIMIT $3)`,
      `vector_ranked AS (SELECT *, pg_catalog.row_number() OVER (ORDER BY distance) AS vector_rank FROM vector_hits)`,
    );
  }
  const rrf = (rank: string) => `coalesce(1.0::float8 / (${RRF_K} + ${rank}), 0)`;
  let fused: string;
  if (mode === 'hybrid') {
    const on = keyNames.map((k) => `t.${k} OPERATOR(pg_catalog.=) v.${k}`).join(' AND ');
    fused = `SELECT ${keyNames.map((k) => `coalesce(t.${k}, v.${k}) AS ${k}`).join(', ')},
             ${rrf('t.text_rank')} + ${rrf('v.vector_rank')} AS score, t.text_rank, t.text_score, v.vector_rank, v.distance
        FROM text_ranked t FULL JOIN vector_ranked v ON ${on}`;
  } else if (mode === 'text') {
    fused = `SELECT ${keyNames.join(', ')}, text_score AS score, text_rank, text_score, NULL::int8 AS vector_rank, NULL::float8 AS distance FROM text_ranked`;
  } else {
    // Higher is better in every mode: cosine similarity, or the negated distance.
    const score = relation.vector?.metric === 'cosine' ? '1 - distance' : '-distance';
    fused = `SELECT ${keyNames.join(', ')}, ${score} AS score, NULL::int8 AS text_rank, NULL::float8 AS text_score, vector_rank, distance FROM vector_ranked`;
  }
  ctes.push(`fused AS (${fused} ORDER BY score DESC, ${keyNames.join(', ')} LIMIT $4)`);
  const join = relation.key.map((k, i) => `${k} OPERATOR(pg_catalog.=) fused.k${i}`).join(' AND ');
  return `WITH ${ctes.join(',\n')}
SELECT fused.score, fused.text_rank::int4, fused.text_score, fused.vector_rank::int4, fused.distance, ${relation.select.join(', ')}
  FROM fused JOIN ${relation.from} ON ${join}${and(relation.where)}
 ORDER BY fused.score DESC, ${keyNames.map((k) => `fused.${k}`).join(', ')}`;
}

/** The codebase extension's chunks, with their file's path and metadata. */
export function chunksRelation(schemaName: string, vector: SearchRelation['vector'] | undefined, tsvector: string): SearchRelation {
  const schema = quoteIdent(schemaName);
  return {
    from: `${schema}.chunks s JOIN ${schema}.files f ON f.id OPERATOR(pg_catalog.=) s.file_id JOIN ${schema}.repositories r ON r.id OPERATOR(pg_catalog.=) f.repository_id`,
    where: ['f.deleted_at IS NULL'],
    key: ['s.id'],
    tsvector,
    ...(vector ? { vector } : {}),
    select: ['s.id', 's.content', 'f.path', 's.start_line', 's.end_line', 'f.metadata', 'r.path AS repository'],
  };
}

/** What a filter key of the chunks search names. */
export const CHUNK_FILTERS: Readonly<Record<string, string>> = {
  path: 'f.path',
  language: 'f.language',
  repository: 'r.path',
  file_id: 's.file_id',
};

/**
 * An agent's table: rows are told apart by their physical address (tables, partitioned tables
 * and materialized views have one, views do not: the caller refuses those).
 */
export function agentTableRelation(
  schemaName: string,
  table: string,
  textColumn: string,
  vector: SearchRelation['vector'] | undefined,
  select: readonly string[],
): SearchRelation {
  return {
    from: `${quoteIdent(schemaName)}.${quoteIdent(table)} s`,
    where: [],
    key: ['s.tableoid', 's.ctid'],
    tsvector: `pg_catalog.to_tsvector($2::pg_catalog.regconfig, s.${quoteIdent(textColumn)})`,
    ...(vector ? { vector } : {}),
    select: select.map((c) => `s.${quoteIdent(c)}`),
  };
}
