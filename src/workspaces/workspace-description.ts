import type { Queryable } from '../db/database.js';
import { describeRegistered } from '../registry/registry-sql.js';
import { schemaNameFor } from './project-id.js';
import { WorkspaceNotFoundError } from './workspace-errors.js';

export interface ColumnDescription {
  name: string;
  /** As format_type() gives it, e.g. `vector(768)`, `timestamp with time zone`. */
  type: string;
  nullable: boolean;
  default: string | null;
  identity: 'always' | 'by default' | null;
  generated: boolean;
}

export interface ForeignKeyDescription {
  name: string;
  columns: string[];
  references_schema: string;
  references_table: string;
  references_columns: string[];
  on_delete: string;
  on_update: string;
}

export interface IndexDescription {
  name: string;
  /** Access method: btree, hnsw, ivfflat, gin, ... */
  method: string;
  unique: boolean;
  primary: boolean;
  valid: boolean;
  definition: string;
}

export interface RelationDescription {
  name: string;
  kind: 'table' | 'partitioned table' | 'view' | 'materialized view' | 'foreign table';
  /** The planner's estimate (pg_class.reltuples); null until the first VACUUM or ANALYZE. */
  row_estimate: number | null;
  columns: ColumnDescription[];
  primary_key: { name: string; columns: string[] } | null;
  foreign_keys: ForeignKeyDescription[];
  other_constraints: Array<{ name: string; type: 'unique' | 'check' | 'exclusion'; definition: string }>;
  indexes: IndexDescription[];
}

export class TableNotFoundError extends Error {
  override name = 'TableNotFoundError';
  constructor(projectId: string, table: string) {
    super(
      `Table ${JSON.stringify(table)} does not exist in workspace "${projectId}". Call describe_workspace without ` +
        '"table" to list its tables (names are matched exactly: lower case unless created quoted).',
    );
  }
}

/**
 * The workspace's relations from core's describe_relations(): one statement, which also checks
 * that the project is registered, so a workspace being created meanwhile is seen whole or not at all.
 */
export async function describeWorkspace(q: Queryable, projectId: string, table?: string): Promise<RelationDescription[]> {
  const schemaName = schemaNameFor(projectId);
  const row = await describeRegistered<RelationDescription>(q, projectId, schemaName, table ?? null);
  if (!row.registered || !row.relations) throw new WorkspaceNotFoundError(projectId);
  if (table !== undefined && row.relations.length === 0) throw new TableNotFoundError(projectId, table);
  return row.relations;
}
