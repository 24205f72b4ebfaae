import type { Queryable } from '../db/database.js';
import type { EmbeddingSpace } from '../embeddings/embedder.js';

/*
 * Every statement sent to core's project_registry.embedding_spaces (extensions/core/schema.sql):
 * the space each workspace vector column is pinned to, and `reembed`'s progress moving it.
 */

/** A workspace vector column filled from text. */
export interface SpaceColumn {
  projectId: string;
  table: string;
  column: string;
}

export interface PinnedRow {
  project_id: string;
  table_name: string;
  column_name: string;
  text_column: string;
  provider: EmbeddingSpace['provider'];
  model: string;
  dimensions: number;
  query_prefix: string;
  document_prefix: string;
  target: EmbeddingSpace | null;
  reembed_cursor: string | null;
  reembed_done: string;
  reembed_total: string;
}

const COLUMNS = `project_id, table_name, column_name, text_column, provider, model, dimensions, query_prefix, document_prefix,
                 target, reembed_cursor, reembed_done::text, reembed_total::text`;

/**
 * Records the column's space if it has none; either way returns the row as it stands, locked
 * (FOR SHARE) to the end of the caller's transaction so that `reembed` cannot switch the column
 * to another space between this check and the caller's write.
 */
export async function insertOrReadPin(q: Queryable, c: SpaceColumn, textColumn: string, s: EmbeddingSpace): Promise<PinnedRow> {
  await q.query(
    `INSERT INTO project_registry.embedding_spaces
            (project_id, table_name, column_name, text_column, provider, model, dimensions, query_prefix, document_prefix)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (project_id, table_name, column_name) DO NOTHING`,
    [c.projectId, c.table, c.column, textColumn, s.provider, s.model, s.dimensions, s.queryPrefix, s.documentPrefix],
  );
  const [row] = await q.query<PinnedRow>(
    `SELECT ${COLUMNS} FROM project_registry.embedding_spaces
      WHERE project_id = $1 AND table_name = $2 AND column_name = $3 FOR SHARE`,
    [c.projectId, c.table, c.column],
  );
  if (!row) throw new Error(`the pin of ${c.table}.${c.column} vanished as it was written`);
  return row;
}

/**
 * The first statement of a transaction that writes vectors of space `s` into the column (run as
 * the server, before the writes, in the same transaction): locks the pin FOR SHARE to the end of
 * the transaction, so `reembed` cannot begin moving the column (an UPDATE of the pin, which waits)
 * before the write commits, and fails (22P02, invalid input for int4: plain SQL has no RAISE)
 * unless `s` is the space the column takes now: its target while a move runs, else its pinned one.
 * The check before embedding (insertOrReadPin) ran in an earlier transaction: a move may have
 * begun since.
 */
export function holdPinStatement(c: SpaceColumn, s: EmbeddingSpace): { sql: string; params: string[] } {
  return {
    sql: `SELECT (coalesce((
        SELECT CASE WHEN coalesce(p.target, jsonb_build_object('provider', p.provider, 'model', p.model, 'dimensions', p.dimensions,
                                                               'queryPrefix', p.query_prefix, 'documentPrefix', p.document_prefix)) = $4::jsonb
                    THEN '0' ELSE 'the embedding space of ' || p.table_name || '.' || p.column_name || ' changed before this write' END
          FROM project_registry.embedding_spaces p
         WHERE p.project_id = $1 AND p.table_name = $2 AND p.column_name = $3
           FOR SHARE), 'the embedding space pin of this column is gone'))::int4`,
    params: [c.projectId, c.table, c.column, JSON.stringify(s)],
  };
}

export async function readPin(q: Queryable, c: SpaceColumn): Promise<PinnedRow | undefined> {
  const [row] = await q.query<PinnedRow>(
    `SELECT ${COLUMNS} FROM project_registry.embedding_spaces WHERE project_id = $1 AND table_name = $2 AND column_name = $3`,
    [c.projectId, c.table, c.column],
  );
  return row;
}

/** The pinned columns of one workspace, or of all (projectId undefined), in a stable order. */
export async function listPins(q: Queryable, projectId: string | undefined): Promise<PinnedRow[]> {
  return q.query<PinnedRow>(
    `SELECT ${COLUMNS} FROM project_registry.embedding_spaces
      WHERE $1::text IS NULL OR project_id = $1
      ORDER BY project_id, table_name, column_name`,
    [projectId ?? null],
  );
}

/**
 * Starts moving the column to `target`, or resumes: a run towards the same target keeps its
 * cursor and count; towards another (the settings changed again) it starts over.
 */
export async function beginReembed(q: Queryable, c: SpaceColumn, target: EmbeddingSpace, total: number): Promise<PinnedRow> {
  const [row] = await q.query<PinnedRow>(
    `UPDATE project_registry.embedding_spaces
        SET reembed_cursor = CASE WHEN target = $4::jsonb THEN reembed_cursor END,
            reembed_done = CASE WHEN target = $4::jsonb THEN reembed_done ELSE 0 END,
            reembed_total = $5,
            target = $4::jsonb
      WHERE project_id = $1 AND table_name = $2 AND column_name = $3
      RETURNING ${COLUMNS}`,
    [c.projectId, c.table, c.column, JSON.stringify(target), total],
  );
  if (!row) throw new Error(`${c.table}.${c.column} of workspace "${c.projectId}" is no longer pinned`);
  return row;
}

/** One batch done: rows up to `cursor` (in key order) hold vectors of the target space. */
export async function advanceReembed(q: Queryable, c: SpaceColumn, target: EmbeddingSpace, cursor: string, rows: number): Promise<void> {
  await q.query(
    `UPDATE project_registry.embedding_spaces SET reembed_cursor = $5, reembed_done = reembed_done + $6
      WHERE project_id = $1 AND table_name = $2 AND column_name = $3 AND target = $4::jsonb`,
    [c.projectId, c.table, c.column, JSON.stringify(target), cursor, rows],
  );
}

/** Every row is in the target space: it becomes the column's space. False when the move was taken over meanwhile. */
export async function finishReembed(q: Queryable, c: SpaceColumn, target: EmbeddingSpace): Promise<boolean> {
  const rows = await q.query(
    `UPDATE project_registry.embedding_spaces
        SET provider = $5, model = $6, dimensions = $7, query_prefix = $8, document_prefix = $9, pinned_at = now(),
            target = NULL, reembed_cursor = NULL, reembed_done = 0, reembed_total = 0
      WHERE project_id = $1 AND table_name = $2 AND column_name = $3 AND target = $4::jsonb
      RETURNING 1`,
    [c.projectId, c.table, c.column, JSON.stringify(target), target.provider, target.model, target.dimensions, target.queryPrefix, target.documentPrefix],
  );
  return rows.length === 1;
}

/**
 * Columns a `reembed` run left mid-move (interrupted or failed), for doctor; none on a database
 * installed before embedding_spaces existed.
 */
export async function columnsBeingReembedded(q: Queryable): Promise<PinnedRow[]> {
  const [present] = await q.query<{ exists: boolean }>("SELECT to_regclass('project_registry.embedding_spaces') IS NOT NULL AS exists");
  if (!present?.exists) return [];
  return q.query<PinnedRow>(
    `SELECT ${COLUMNS} FROM project_registry.embedding_spaces WHERE target IS NOT NULL ORDER BY project_id, table_name, column_name`,
  );
}
