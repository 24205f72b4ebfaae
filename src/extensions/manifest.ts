import * as z from 'zod';
import { MAX_IDENTIFIER_BYTES } from '../db/identifiers.js';

const sqlName = z
  .string()
  .regex(/^[a-z_][a-z0-9_]*$/, 'use lower-case letters, digits and underscores, starting with a letter')
  .max(MAX_IDENTIFIER_BYTES);
const TABLE_NAME_RULE = 'use `schema.table` for a global table or a bare `table` for a workspace table';
const tableName = z.string().regex(/^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$/, TABLE_NAME_RULE);

/** extension.json; unknown keys are rejected so a typo does not silently disable a check. */
export const extensionManifest = z
  .object({
    id: z
      .string()
      .regex(/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/, 'use lower-case letters, digits and single hyphens')
      .max(MAX_IDENTIFIER_BYTES),
    version: z.string().min(1),
    requires: z.array(sqlName).default([]),
    // zod reports a bad record key only as "Invalid key in record": say what a key looks like.
    required_columns: z
      .record(tableName, z.array(sqlName).min(1, 'list at least one column'), {
        error: (issue) => (issue.code === 'invalid_key' ? TABLE_NAME_RULE : undefined),
      })
      .default({}),
    uses_tables: z.array(tableName).default([]),
  })
  .strict();

export type ExtensionManifest = z.infer<typeof extensionManifest>;
