import type { Queryable } from '../db/database.js';
import { sqlState } from '../db/sql-errors.js';
import { insertOrReadPin, readPin, type PinnedRow, type SpaceColumn } from '../registry/embedding-space-sql.js';
import { WorkspaceNotFoundError } from '../workspaces/workspace-errors.js';
import type { EmbeddingSpace } from './embedder.js';

/*
 * A workspace vector column filled from text is pinned to the space that first wrote it: writes
 * and searches from another space are refused, naming both, since their vectors would sit in one
 * index without being comparable. `pg-workspace-mcp reembed` moves a column to a new space.
 */

export class EmbeddingSpaceError extends Error {
  override name = 'EmbeddingSpaceError';
}

/** Only what makes a space: the registry compares these as jsonb, so nothing else may ride along. */
export function spaceOf(s: EmbeddingSpace): EmbeddingSpace {
  return { provider: s.provider, model: s.model, dimensions: s.dimensions, queryPrefix: s.queryPrefix, documentPrefix: s.documentPrefix };
}

export function sameSpace(a: EmbeddingSpace, b: EmbeddingSpace): boolean {
  return (
    a.provider === b.provider && a.model === b.model && a.dimensions === b.dimensions &&
    a.queryPrefix === b.queryPrefix && a.documentPrefix === b.documentPrefix
  );
}

/** For messages: every part that decides a space, so two that differ read differently. */
export function describeSpace(s: EmbeddingSpace): string {
  const prefixes = [s.queryPrefix && `query prefix ${JSON.stringify(s.queryPrefix)}`, s.documentPrefix && `document prefix ${JSON.stringify(s.documentPrefix)}`].filter(Boolean);
  return `${s.provider} "${s.model}" (${s.dimensions} dimensions${prefixes.length > 0 ? `, ${prefixes.join(', ')}` : ''})`;
}

export function pinnedSpaceOf(row: PinnedRow): EmbeddingSpace {
  return { provider: row.provider, model: row.model, dimensions: row.dimensions, queryPrefix: row.query_prefix, documentPrefix: row.document_prefix };
}

const named = (c: SpaceColumn) => `Column ${c.table}.${c.column} of workspace "${c.projectId}"`;

/** "being re-embedded" with how far it got, for the refusals made while a move runs. */
function moving(c: SpaceColumn, row: PinnedRow, target: EmbeddingSpace): string {
  return (
    `${named(c)} is being re-embedded from ${describeSpace(pinnedSpaceOf(row))} to ${describeSpace(target)}: ` +
    `${row.reembed_done} of ${row.reembed_total} rows done.`
  );
}

/**
 * Before writing vectors of `space` into the column (in the caller's transaction, with the
 * write): records the space on the column's first write; refuses any other space, naming both.
 * While `reembed` moves the column, only vectors of the space it moves to are accepted. The row
 * stays locked (FOR SHARE) until the caller's transaction ends, so the move cannot switch the
 * column between this check and the write.
 */
export async function pin(q: Queryable, column: SpaceColumn & { textColumn: string }, space: EmbeddingSpace): Promise<void> {
  let row: PinnedRow;
  try {
    row = await insertOrReadPin(q, column, column.textColumn, spaceOf(space));
  } catch (error) {
    // The foreign key to workspace_config: no such workspace (dropped meanwhile, say).
    if (sqlState(error) === '23503') throw new WorkspaceNotFoundError(column.projectId);
    throw error;
  }
  if (row.target) {
    if (sameSpace(row.target, space)) return;
    throw new EmbeddingSpaceError(
      `${moving(column, row, row.target)} It takes new vectors of ${describeSpace(row.target)} only; this server embeds with ` +
        `${describeSpace(space)}. Configure the server as the move's target (docs/embeddings.md).`,
    );
  }
  const pinned = pinnedSpaceOf(row);
  if (sameSpace(pinned, space)) return;
  throw new EmbeddingSpaceError(
    `${named(column)} holds vectors of ${describeSpace(pinned)}, but this server embeds with ${describeSpace(space)}; ` +
      'vectors of the two cannot be compared, so none are written. Configure the server for the pinned space, or move the ' +
      `column to the new one with \`pg-workspace-mcp reembed --project ${column.projectId}\` (docs/embeddings.md).`,
  );
}

/**
 * Before searching the column with a query embedded in `space`: refuses a column pinned to
 * another space, and one being moved (its rows are in two spaces until the move finishes). A
 * column never written from text (no pin) is searchable.
 */
export async function assertSearchable(q: Queryable, column: SpaceColumn, space: EmbeddingSpace): Promise<void> {
  const row = await readPin(q, column);
  if (!row) return;
  if (row.target) {
    throw new EmbeddingSpaceError(
      `${moving(column, row, row.target)} Its vectors are in two spaces until \`pg-workspace-mcp reembed\` finishes: ` +
        'search it by text (full-text) meanwhile, or retry once the move is done.',
    );
  }
  const pinned = pinnedSpaceOf(row);
  if (sameSpace(pinned, space)) return;
  throw new EmbeddingSpaceError(
    `${named(column)} holds vectors of ${describeSpace(pinned)}, but this server embeds queries with ${describeSpace(space)}; ` +
      'the distances would mean nothing. Configure the server for the pinned space, or move the column to the new one with ' +
      `\`pg-workspace-mcp reembed --project ${column.projectId}\` (docs/embeddings.md).`,
  );
}
