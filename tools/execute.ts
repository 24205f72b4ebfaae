import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { projectId } from './schemas.js';
import { columns, rows, sqlParams, sqlText } from './sql-schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const output = {
  command: z.string().describe('the kind of statement, e.g. INSERT, CREATE TABLE'),
  row_count: z.number().int().describe('rows the statement affected (or returned, for a SELECT)'),
  columns,
  rows: rows.describe('RETURNING rows (at most 100), in column order'),
  truncated: z.boolean().describe('more RETURNING rows existed than were sent'),
};

export function registerExecuteTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'execute',
    {
      title: 'Change a workspace',
      description:
        'Runs one SQL statement that changes a project\'s workspace: INSERT, UPDATE, DELETE or MERGE (with RETURNING ' +
        'to get rows back), TRUNCATE, or CREATE/ALTER/DROP of tables, indexes, views, functions and types inside the ' +
        'workspace. Unqualified names are the workspace\'s. Pass values as params for $1, $2, ... (a vector as an ' +
        'array of numbers). Each call is its own transaction; it runs with the workspace\'s own PostgreSQL role and ' +
        'cannot touch anything outside the workspace.',
      inputSchema: { project_id: projectId, sql: sqlText, params: sqlParams },
      outputSchema: output,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    },
    ({ project_id, sql, params }, { signal }) =>
      runTool(
        deps,
        async () => {
          const r = await (await deps.sql(signal)).execute(project_id, sql, params ?? []);
          return { command: r.command, row_count: r.affected, columns: r.columns, rows: r.rows, truncated: r.truncated };
        },
      ),
  );
}
