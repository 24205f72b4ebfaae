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
