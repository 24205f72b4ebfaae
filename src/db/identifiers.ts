import pg from 'pg';

/** PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently truncated by the server. */
export const MAX_IDENTIFIER_BYTES = 63;

/** Quotes an identifier for SQL text; callers validate it first so the quoting never surprises. */
export function quoteIdent(name: string): string {
  return pg.escapeIdentifier(name);
}
