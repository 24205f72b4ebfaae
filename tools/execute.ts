import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { DEFAULT_MAX_ROWS } from '../src/sandbox/workspace-sandbox.js';
import { projectId } from './schemas.js';
import { columns, describeTruncation, rows, sqlParams, sqlText, truncatedReason } from './sql-schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const output = {
  command: z.string().describe('the kind of statement, e.g. INSERT, CREATE TABLE'),
  row_count: z.number().int().describe('rows the statement affected (or returned, for a SELECT)'),
  columns,
  rows: rows.describe('RETURNING rows (at most 100), in column order'),
  truncated: z.boolean().describe('more RETURNING rows existed than were sent (100, or the byte budget)'),
  truncated_reason: truncatedReason,
};

export function registerExecuteTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'execute',
    {
      title: 'Change a workspace',
      description:
        'Runs one SQL statement that changes a project\'s workspace: INSERT, UPDATE, DELETE or MERGE (with RETURNING ' +
        'to get rows back), TRUNCATE, or CREATE/ALTER/DROP of tables, indexes, views, functions and types inside the ' +
        'workspace, or VACUUM/ANALYZE of the workspace\'s own tables (all of them when none is named). ' +
        'Unqualified names are the workspace\'s. Pass values as params for $1, $2, ... (a vector as an ' +
        'array of numbers). Each call is its own transaction; it runs with the workspace\'s own PostgreSQL role and ' +
        'cannot touch anything outside the workspace.',
      inputSchema: { project_id: projectId, sql: sqlText, params: sqlParams },
      outputSchema: output,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    },
    ({ project_id, sql, params }, { signal }) =>
      runTool(
        deps,
        project_id,
        async () => {
          const sandbox = await deps.sandbox(signal, project_id, 'create');
          const r = await sandbox.execute(project_id, sql, params ?? []);
          const reason = describeTruncation(
            r.truncatedBy,
            `execute returns at most ${DEFAULT_MAX_ROWS} RETURNING rows (row_count counts them all); read the rest with query.`,
            sandbox.maxResultBytes,
          );
          return {
            command: r.command,
            row_count: r.affected,
            columns: r.columns,
            rows: r.rows,
            truncated: r.truncated,
            ...(reason ? { truncated_reason: reason } : {}),
          };
        },
      ),
  );
}
