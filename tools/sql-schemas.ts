import * as z from 'zod';

/** Values for `$1`, `$2`...: JSON scalars, a vector as an array of numbers, or JSON for json/jsonb. */
export const sqlParams = z
  .array(z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.number()), z.record(z.string(), z.unknown()), z.array(z.unknown())]))
  .max(1000)
  .optional()
  .describe('values for $1, $2, ... in order; a vector is an array of numbers, e.g. [0.1, 0.2]');

export const sqlText = z.string().min(1).max(1_000_000).describe('one SQL statement; unqualified names are the workspace\'s');

export const columns = z
  .array(z.object({ name: z.string(), type: z.string().describe('PostgreSQL type, e.g. bigint, text, vector(768)') }))
  .describe('the result columns, also when no row came back');

export const rows = z
  .array(z.array(z.unknown()))
  .describe('one array of values per row, in column order; bigint and numeric as strings (exact), vectors as arrays of numbers');

export const truncatedReason = z
  .string()
  .optional()
  .describe('present when truncated: which bound cut the rows (max_rows, or max_bytes: this server\'s budget of bytes per result) and what to do');

/**
 * The sentence for `truncated_reason`: the bound that cut the rows and how to get the rest.
 * `rowAdvice` follows "max_rows: " (query and execute bound rows differently).
 */
export function describeTruncation(by: 'max_rows' | 'max_bytes' | undefined, rowAdvice: string, maxResultBytes: number): string | undefined {
  if (by === 'max_rows') return `max_rows: ${rowAdvice}`;
  if (by === 'max_bytes') {
    return (
      `max_bytes: the rows reached this server's budget of ${maxResultBytes} bytes per result (PG_WORKSPACE_MAX_RESULT_BYTES); ` +
      'select fewer or narrower columns (e.g. left(content, 200), length(content)) or fewer rows (LIMIT/OFFSET).'
    );
  }
  return undefined;
}
