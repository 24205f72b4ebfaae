import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { schemaNameFor } from '../src/workspaces/project-id.js';
import { projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const column = z.object({
  name: z.string(),
  type: z.string().describe('as PostgreSQL formats it, e.g. "vector(768)", "timestamp with time zone"'),
  nullable: z.boolean(),
  default: z.string().nullable().describe('the default expression, if any'),
  identity: z.enum(['always', 'by default']).nullable(),
  generated: z.boolean().describe('a stored generated column'),
});

const relation = z.object({
  name: z.string(),
  kind: z.enum(['table', 'partitioned table', 'view', 'materialized view', 'foreign table']),
  row_estimate: z
    .number()
    .nullable()
    .describe("the planner's estimate (pg_class.reltuples); null when unknown: the table was never vacuumed or analysed"),
  columns: z.array(column),
  primary_key: z.object({ name: z.string(), columns: z.array(z.string()) }).nullable(),
  foreign_keys: z.array(
    z.object({
      name: z.string(),
      columns: z.array(z.string()),
      references_schema: z.string(),
      references_table: z.string(),
      references_columns: z.array(z.string()),
      on_delete: z.string(),
      on_update: z.string(),
    }),
  ),
  other_constraints: z.array(z.object({ name: z.string(), type: z.enum(['unique', 'check', 'exclusion']), definition: z.string() })),
  indexes: z.array(
    z.object({
      name: z.string(),
      method: z.string().describe('access method: btree, hnsw, ivfflat, gin, ...'),
      unique: z.boolean(),
      primary: z.boolean(),
      valid: z.boolean(),
      definition: z.string().describe('CREATE INDEX statement as pg_get_indexdef gives it'),
    }),
  ),
});

const output = {
  project_id: z.string(),
  schema_name: z.string(),
  tables: z.array(relation),
};

export function registerDescribeWorkspaceTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'describe_workspace',
    {
      title: 'Describe workspace',
      description:
        "Lists a project's workspace tables (and views) from the PostgreSQL catalog: columns with types, " +
        'nullability and defaults, primary and foreign keys, other constraints, indexes (method, e.g. hnsw, ' +
        'and definition) and row estimates. With table, describes just that table. Reads no rows. The ' +
        'workspace must exist (ensure_workspace creates it).',
      inputSchema: {
        project_id: projectId,
        table: z.string().min(1).max(200).optional().describe('one table of the workspace (exact name); all of them when omitted'),
      },
      outputSchema: output,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ project_id, table }, { signal }) =>
      runTool(
        deps,
        project_id,
        async () => {
          const workspaces = await deps.workspaces(signal, project_id, 'existing');
          const tables = await workspaces.describe(project_id, table);
          return { project_id, schema_name: schemaNameFor(project_id), tables };
        },
      ),
  );
}
