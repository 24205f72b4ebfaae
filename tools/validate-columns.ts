import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { MAX_IDENTIFIER_BYTES, MAX_TABLE_COLUMNS } from '../src/db/identifiers.js';
import { projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const output = {
  schema: z.string(),
  table: z.string(),
  table_exists: z.boolean(),
  present: z.array(z.string()),
  missing: z.array(z.string()),
  valid: z.boolean().describe('the table exists and has every column asked for'),
};

export function registerValidateColumnsTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'validate_columns',
    {
      title: 'Validate columns',
      description:
        'Checks that a table exists and has the given columns, without reading any rows. With project_id ' +
        'the table is looked up in that project\'s workspace; without it, table may be "schema.table" ' +
        '(default schema public). Names are matched exactly as PostgreSQL stores them (lower case unless ' +
        'they were created quoted).',
      inputSchema: {
        project_id: projectId.optional(),
        table: z.string().min(1).max(200).describe('table name, or "schema.table" when project_id is omitted'),
        columns: z.array(z.string().min(1).max(MAX_IDENTIFIER_BYTES)).min(1).max(MAX_TABLE_COLUMNS).describe('column names to check'),
      },
      outputSchema: output,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ project_id, table, columns }, { signal }) =>
      runTool(
        deps,
        project_id,
        async () => {
          if (project_id === undefined) deps.access.checkSchema(table.includes('.') ? (table.split('.')[0] as string) : 'public');
          const v = await (await deps.workspaces(signal, project_id, 'existing')).validateColumns({ projectId: project_id, table, columns });
          return {
            schema: v.schema,
            table: v.table,
            table_exists: v.tableExists,
            present: v.present,
            missing: v.missing,
            valid: v.valid,
          };
        },
      ),
  );
}
