import { quoteIdent } from '../db/identifiers.js';
import { METRICS, type Metric } from '../workspaces/vector-search.js';

/**
 * Every statement the search tool sends, built from names the caller has checked against the
 * catalog (quoted here) and values that stay parameters: $1 the query text, $2 the text search
 * configuration, $3 how many candidates each ranking contributes, $4 k, $5 the query vector
 * (vector and hybrid modes), $6 whether the query uses websearch operators, then the filter values.
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

/**
 * Hybrid scores are a convex combination of the two rankings' scores, each scaled to 0..1 by its
 * theoretical bounds, weighted equally (Bruch et al. 2023, "An Analysis of Fusion Functions for
 * Hybrid Retrieval"): on our labelled set it recalled more than reciprocal rank fusion (k = 60)
 * and than min-max scaling over the candidates (docs/search.md). A row only one ranking found
 * gets 0 from the other.
 */
export const TEXT_WEIGHT = 0.5;

/** The columns every result row starts with, in this order. */
export const SCORE_COLUMNS = ['score', 'text_rank', 'text_score', 'vector_rank', 'distance'] as const;

/**
 * The full-text ranking. A query's words (split at white space, so that "pg_dump" stays the
 * phrase 'pg' <-> 'dump'; excluded "-words" left out) are weighed by how rare they are among the rows searched
 * (inverse document frequency, as BM25 does; PostgreSQL's ts_rank counts occurrences, so a word in
 * every row, like "on" under 'simple', would outweigh the one word that matters). Candidates are
 * the rows holding any word that is in at most half of the rows (all words when none is), found
 * through the GIN index; a query with websearch operators ($6) selects rows as written instead.
 * Score: the sum of the weights of the query's words a row holds.
 */
function textHits(relation: SearchRelation, where: readonly string[], keys: string): string[] {
  const tsv = relation.tsvector;
  const and = where.length > 0 ? ` AND ${where.join(' AND ')}` : '';
  const whereAll = where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
  const match = (query: string) => `${tsv} OPERATOR(pg_catalog.@@) ${query}`;
  const orOf = (filter: string) =>
    `(SELECT pg_catalog.string_agg(w.tq::text, ' | ')::pg_catalog.tsquery FROM weights w WHERE ${filter})`;
  return [
    `terms AS MATERIALIZED (
       SELECT t.tq, (SELECT pg_catalog.count(*) FROM ${relation.from} WHERE ${match('t.tq')}${and})::float8 AS df
         FROM (SELECT DISTINCT pg_catalog.websearch_to_tsquery($2::pg_catalog.regconfig, w) AS tq
                 FROM pg_catalog.regexp_split_to_table($1, '\\s+') w WHERE w NOT LIKE '-%') t
        WHERE pg_catalog.numnode(t.tq) > 0)`,
    `total AS MATERIALIZED (SELECT pg_catalog.count(*)::float8 AS n FROM ${relation.from}${whereAll})`,
    `weights AS MATERIALIZED (
       SELECT terms.tq, pg_catalog.ln(1 + (total.n - terms.df + 0.5) / (terms.df + 0.5)) AS idf, terms.df <= total.n / 2 AS informative
         FROM terms, total WHERE terms.df > 0)`,
    `q AS MATERIALIZED (
       SELECT CASE WHEN $6::boolean THEN pg_catalog.websearch_to_tsquery($2::pg_catalog.regconfig, $1)
                   ELSE coalesce(${orOf('w.informative')}, ${orOf('true')}) END AS q)`,
    `text_hits AS (SELECT ${keys}, (SELECT pg_catalog.sum(w.idf) FROM weights w WHERE ${match('w.tq')})::float8 AS text_score
         FROM ${relation.from}, q WHERE ${match('q.q')}${and} ORDER BY text_score DESC NULLS LAST LIMIT $3)`,
  ];
}

export function searchStatement(relation: SearchRelation, mode: SearchMode, filter: readonly string[]): string {
  const where = [...relation.where, ...filter];
  const and = (conditions: string[]) => (conditions.length > 0 ? ` AND ${conditions.join(' AND ')}` : '');
  const keys = relation.key.map((k, i) => `${k} AS k${i}`).join(', ');
  const keyNames = relation.key.map((_, i) => `k${i}`);
  const ctes: string[] = [];
  if (mode !== 'vector') {
    ctes.push(
      ...textHits(relation, where, keys),
      `text_ranked AS (SELECT *, pg_catalog.row_number() OVER (ORDER BY text_score DESC) AS text_rank,
         pg_catalog.max(text_score) OVER () AS text_max, pg_catalog.min(text_score) OVER () AS text_min FROM text_hits)`,
    );
  }
  if (mode !== 'text') {
    const v = relation.vector;
    if (!v) throw new Error('a vector search needs the relation to have a vector column');
    const distance = `${v.column} OPERATOR(${quoteIdent(v.extensionSchema)}.${METRICS[v.metric]}) $5::${quoteIdent(v.extensionSchema)}.${v.type}`;
    ctes.push(
      `vector_hits AS (SELECT ${keys}, (${distance})::float8 AS distance FROM ${relation.from}
         WHERE ${v.column} IS NOT NULL${and(where)} ORDER BY ${distance} LIMIT $3)`,
      `vector_ranked AS (SELECT *, pg_catalog.row_number() OVER (ORDER BY distance) AS vector_rank,
         pg_catalog.max(distance) OVER () AS distance_max, pg_catalog.min(distance) OVER () AS distance_min FROM vector_hits)`,
    );
  }
  let fused: string;
  if (mode === 'hybrid') {
    const on = keyNames.map((k) => `t.${k} OPERATOR(pg_catalog.=) v.${k}`).join(' AND ');
    // Theoretical bounds where there are some: a text score out of the most a row can get (every
    // word of the query), a cosine distance as similarity. Otherwise min-max over the candidates
    // (a single candidate scales to 1).
    const text = `coalesce(t.text_score / NULLIF((SELECT pg_catalog.sum(w.idf) FROM weights w), 0), 0)`;
    const vector =
      relation.vector?.metric === 'cosine'
        ? 'coalesce(1 - v.distance, 0)'
        : 'coalesce((v.distance_max - v.distance) / NULLIF(v.distance_max - v.distance_min, 0), CASE WHEN v.distance IS NULL THEN 0 ELSE 1 END)';
    const score = `${TEXT_WEIGHT} * ${text} + ${1 - TEXT_WEIGHT} * ${vector}`;
    fused = `SELECT ${keyNames.map((k) => `coalesce(t.${k}, v.${k}) AS ${k}`).join(', ')},
             ${score} AS score, t.text_rank, t.text_score, v.vector_rank, v.distance
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
