import { createHash } from 'node:crypto';
import type { Database, LockDecision, LockHolder, Queryable } from '../db/database.js';
import { quoteIdent, validateIdentifier } from '../db/identifiers.js';
import { advanceReembed, beginReembed, finishReembed, listPins, type PinnedRow, type SpaceColumn } from '../registry/embedding-space-sql.js';
import type { AgentParam } from '../sandbox/agent-statement.js';
import type { ExecuteResult, RowsResult } from '../sandbox/workspace-sandbox.js';
import { schemaNameFor } from '../workspaces/project-id.js';
import type { Embedder, EmbeddingSpace } from './embedder.js';
import { describeSpace, pinnedSpaceOf, sameSpace, spaceOf } from './embedding-spaces.js';

/*
 * `pg-workspace-mcp reembed`: moves pinned columns to the configured embedding space. Rows go in
 * primary-key order, a batch at a time; after each batch the registry records the last key done,
 * so an interrupted run resumes after it (at worst a batch whose write committed but whose
 * progress did not is embedded again). Until the last row is done the pin stays on the old space
 * with `target` set: searches of the column are refused ("being re-embedded, N of M done") and
 * only writes of the new space are taken; the pin switches once every row is done. One run at a
 * time moves a column: each holds the column's lock (an advisory lock on PostgreSQL, a file lock
 * on the embedded store, see Database.tryExclusive) while it moves it; another run skips it as busy.
 */

/** What the move needs of the database: queries, and the lock one run at a time holds per column. */
export type ReembedDatabase = Queryable & Pick<Database, 'tryExclusive'>;

/** What the move needs of the SQL sandbox: a workspace's rows are read and written as its own role. */
export interface WorkspaceRows {
  readAsWorkspace(projectId: string, sql: string, params: readonly AgentParam[], maxRows: number): Promise<RowsResult>;
  execute(projectId: string, sql: string, params: readonly AgentParam[], maxRows?: number): Promise<ExecuteResult>;
}

export interface ReembedProgress extends SpaceColumn {
  done: number;
  total: number;
}

export interface ReembedOutcome extends SpaceColumn {
  /** busy: another run was moving the column, so this one left it alone. */
  outcome: 'moved' | 'current' | 'interrupted' | 'failed' | 'busy';
  done: number;
  total: number;
  /** Texts embedded by this run. */
  embedded: number;
  /** Of those, texts longer than the provider's maximum, embedded from their beginning. */
  cut: number;
  error?: string;
}

export interface ReembedOptions {
  /** One workspace; undefined: every workspace with a pinned column. */
  projectId?: string | undefined;
  /** Rows read, embedded and written per step (the command: the embedder's batch size times its concurrency). */
  batchRows: number;
  /** The embedder's PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS: a longer text is read only that far (and one more, so it is reported as cut). */
  maxInputChars: number;
  signal?: AbortSignal | undefined;
  onProgress?: (p: ReembedProgress) => void;
}

export class ReembedError extends Error {
  override name = 'ReembedError';
}

interface TableShape {
  key: { name: string; type: string } | null;
  text_exists: boolean;
  vector_typmod: number | null;
  vector_type: string | null;
}

/** The table's one-column primary key, its text column, and its vector column's dimensions and type (schema-qualified). */
const TABLE_SHAPE = `
  WITH rel AS (
    SELECT c.oid FROM pg_catalog.pg_class c
     WHERE c.relname = $2 AND c.relkind IN ('r', 'p')
       AND c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1)
  )
  SELECT (SELECT jsonb_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod))
            FROM pg_catalog.pg_index i
            JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
           WHERE i.indrelid = (SELECT oid FROM rel) AND i.indisprimary AND i.indnatts = 1) AS key,
         EXISTS (SELECT FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = (SELECT oid FROM rel) AND a.attname = $4 AND NOT a.attisdropped) AS text_exists,
         (SELECT a.atttypmod FROM pg_catalog.pg_attribute a
           WHERE a.attrelid = (SELECT oid FROM rel) AND a.attname = $3 AND NOT a.attisdropped) AS vector_typmod,
         (SELECT quote_ident(n.nspname) || '.' || quote_ident(t.typname)
            FROM pg_catalog.pg_attribute a
            JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
            JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
           WHERE a.attrelid = (SELECT oid FROM rel) AND a.attname = $3 AND NOT a.attisdropped) AS vector_type`;

/** Moves every pinned column of one workspace (or all) to `embedder.space`, one column after another. */
export async function reembed(db: ReembedDatabase, rows: WorkspaceRows, embedder: Embedder, options: ReembedOptions): Promise<ReembedOutcome[]> {
  const outcomes: ReembedOutcome[] = [];
  for (const pinned of await listPins(db, options.projectId)) {
    const column = { projectId: pinned.project_id, table: pinned.table_name, column: pinned.column_name };
    if (options.signal?.aborted) {
      outcomes.push({ ...column, outcome: 'interrupted', done: Number(pinned.reembed_done), total: Number(pinned.reembed_total), embedded: 0, cut: 0 });
      continue;
    }
    let holders: LockHolder[] | undefined;
    const attempt = {
      nameHolders: () => true,
      decide: (decision: LockDecision) => {
        if (!decision.locked) holders = decision.holders;
        return true;
      },
    };
    const moved = await db.tryExclusive(columnLockKey(column), attempt, async () => {
      // Read again under the lock: the run that held it may have moved the column meanwhile.
      const now = (await listPins(db, column.projectId)).find((p) => p.table_name === column.table && p.column_name === column.column);
      return moveColumn(db, rows, embedder, now ?? pinned, options);
    });
    outcomes.push(moved ?? { ...column, outcome: 'busy', done: Number(pinned.reembed_done), total: Number(pinned.reembed_total), embedded: 0, cut: 0, error: busyMessage(holders) });
  }
  return outcomes;
}

/** The column's lock: 63 bits of sha256 of what names it, in a space of its own ("reembed"); not negative, as lockHolders reads keys. */
function columnLockKey(c: SpaceColumn): bigint {
  return createHash('sha256').update(JSON.stringify(['reembed', c.projectId, c.table, c.column])).digest().readBigUInt64BE(0) >> 1n;
}

function busyMessage(holders: readonly LockHolder[] | undefined): string {
  const holder = holders?.[0];
  const who = holder ? ` (process ${holder.pid}${holder.held_seconds !== null ? `, for ${holder.held_seconds} s` : ''})` : '';
  return `another reembed run is moving this column now${who}; this run left it alone. Wait for that run to finish (or stop it), then run this again if needed.`;
}

async function moveColumn(db: Queryable, rows: WorkspaceRows, embedder: Embedder, pinned: PinnedRow, options: ReembedOptions): Promise<ReembedOutcome> {
  const column = { projectId: pinned.project_id, table: pinned.table_name, column: pinned.column_name };
  const target = spaceOf(embedder.space);
  let done = Number(pinned.reembed_done);
  let total = Number(pinned.reembed_total);
  let embedded = 0;
  let cut = 0;
  if (!pinned.target && sameSpace(pinnedSpaceOf(pinned), target)) return { ...column, outcome: 'current', done: 0, total: 0, embedded, cut };
  try {
    const schema = quoteIdent(schemaNameFor(column.projectId));
    const table = `${schema}.${quoteIdent(validateIdentifier(column.table, 'table'))}`;
    const vector = quoteIdent(validateIdentifier(column.column, 'column'));
    const text = quoteIdent(validateIdentifier(pinned.text_column, 'column'));
    const shape = await tableShape(db, pinned, target);
    const key = quoteIdent(shape.key.name);

    const [counted] = (await rows.readAsWorkspace(column.projectId, `SELECT count(*)::bigint FROM ${table} WHERE ${text} IS NOT NULL`, [], 1)).rows;
    total = Number(counted?.[0] ?? 0);
    const started = await beginReembed(db, column, target, total);
    let cursor = started.reembed_cursor;
    done = Number(started.reembed_done);
    if (cursor !== null) {
      // Rows after the cursor are what is left: recount, as rows may have come or gone since.
      const [before] = (await rows.readAsWorkspace(column.projectId, `SELECT count(*)::bigint FROM ${table} WHERE ${text} IS NOT NULL AND ${key} <= $1::${shape.key.type}`, [cursor], 1)).rows;
      done = Number(before?.[0] ?? done);
    }
    options.onProgress?.({ ...column, done, total });
    for (;;) {
      if (options.signal?.aborted) return { ...column, outcome: 'interrupted', done, total, embedded, cut };
      const batch = await rows.readAsWorkspace(
        column.projectId,
        // Ordered by the table's column, not the output's text of it (ORDER BY a bare name takes the output's).
        `SELECT t.${key}::text AS key, left(t.${text}, $3) AS text FROM ${table} AS t
          WHERE t.${text} IS NOT NULL AND ($1::text IS NULL OR t.${key} > $1::${shape.key.type})
          ORDER BY t.${key} LIMIT $2`,
        [cursor, options.batchRows, options.maxInputChars + 1],
        options.batchRows,
      );
      // Fewer rows than asked when the texts reach the sandbox's byte budget; none would end the move early.
      if (batch.rows.length === 0 && batch.truncated) {
        throw new ReembedError(`the next row of ${column.table} is larger than this server's PG_WORKSPACE_MAX_RESULT_BYTES: raise it for the run.`);
      }
      if (batch.rows.length === 0) break;
      const keys = batch.rows.map((r) => String(r[0]));
      const texts = batch.rows.map((r) => String(r[1]));
      const present = texts.flatMap((t, i) => (t.length > 0 ? [i] : []));
      const vectors = await embedder.embedDocuments(present.map((i) => texts[i] as string), options.signal, column.projectId);
      embedded += vectors.length;
      cut += vectors.filter((v) => v.truncated).length;
      // An empty text has no embedding: its vector goes, rather than stay in the old space.
      const written: Array<{ key: string; vector: string | null }> = keys.map((key) => ({ key, vector: null }));
      present.forEach((i, n) => ((written[i] as { vector: string | null }).vector = JSON.stringify(vectors[n]?.vector)));
      // The sandbox binds values as literals (an array as JSON): the batch travels as one jsonb.
      await rows.execute(
        column.projectId,
        `UPDATE ${table} AS t SET ${vector} = v.vector::${shape.vector_type}
           FROM jsonb_to_recordset($1::jsonb) AS v(key text, vector text)
          WHERE t.${key} = v.key::${shape.key.type}`,
        [written],
      );
      cursor = keys[keys.length - 1] as string;
      await advanceReembed(db, column, target, cursor, keys.length);
      done += keys.length;
      options.onProgress?.({ ...column, done: Math.min(done, total), total });
    }
    if (!(await finishReembed(db, column, target))) {
      throw new ReembedError('another reembed run with other settings took the column over meanwhile; run it again with the settings you mean.');
    }
    return { ...column, outcome: 'moved', done: total, total, embedded, cut };
  } catch (error) {
    if (options.signal?.aborted) return { ...column, outcome: 'interrupted', done, total, embedded, cut };
    return { ...column, outcome: 'failed', done, total, embedded, cut, error: error instanceof Error ? error.message : String(error) };
  }
}

/** The table as the move needs it, or a ReembedError saying what is missing. */
async function tableShape(db: Queryable, pinned: PinnedRow, target: EmbeddingSpace): Promise<TableShape & { key: { name: string; type: string }; vector_type: string }> {
  const named = `${pinned.table_name}.${pinned.column_name}`;
  const [shape] = await db.query<TableShape>(TABLE_SHAPE, [schemaNameFor(pinned.project_id), pinned.table_name, pinned.column_name, pinned.text_column]);
  if (!shape || shape.vector_type === null) throw new ReembedError(`${named} no longer exists in the workspace.`);
  if (!shape.text_exists) throw new ReembedError(`the text column ${pinned.table_name}.${pinned.text_column} it was embedded from no longer exists.`);
  if (!shape.key) {
    throw new ReembedError(`${pinned.table_name} has no one-column primary key, which the move goes by (to resume where it stopped); add one.`);
  }
  // vector(n) keeps n in the typmod; -1 takes any length.
  if (shape.vector_typmod !== null && shape.vector_typmod > 0 && shape.vector_typmod !== target.dimensions) {
    throw new ReembedError(
      `${named} holds ${shape.vector_typmod} dimensions, but the new space, ${describeSpace(target)}, makes ${target.dimensions}: ` +
        `set --embeddings-dimensions ${shape.vector_typmod} (if the model can), or change the column's type first.`,
    );
  }
  return shape as TableShape & { key: { name: string; type: string }; vector_type: string };
}
