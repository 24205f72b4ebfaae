import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { DEFAULT_MAX_ROWS } from '../src/sandbox/workspace-sandbox.js';
import { projectId } from './schemas.js';
import { columns, describeTruncation, rows, sqlParams, sqlText, truncatedReason } from './sql-schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const output = {
  columns,
  rows,
  row_count: z.number().int().describe('rows returned here'),
  truncated: z.boolean().describe('more rows existed than were sent (max_rows or the byte budget); they were not read'),
  truncated_reason: truncatedReason,
};

export function registerQueryTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'query',
    {
      title: 'Query a workspace',
      description:
        'Runs one read-only SQL statement (SELECT, VALUES, EXPLAIN, SHOW) inside a project\'s workspace and returns ' +
        'its rows. Unqualified names are the workspace\'s tables (e.g. SELECT id FROM chunks). Pass values as params ' +
        'for $1, $2, ... (a vector as an array of numbers). The SQL runs with the workspace\'s own PostgreSQL role: it ' +
        'sees nothing of other workspaces. At most max_rows rows come back (default 100), and at most this server\'s byte ' +
        'budget of them (about 1 MB by default); truncated and truncated_reason say when there were more.',
      inputSchema: {
        project_id: projectId,
        sql: sqlText,
        params: sqlParams,
        max_rows: z.number().int().min(0).optional().describe(`rows to return at most (default ${DEFAULT_MAX_ROWS}; the server caps it)`),
      },
      outputSchema: output,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ project_id, sql, params, max_rows }, { signal }) =>
      runTool(
        deps,
        project_id,
        async () => {
          const sandbox = await deps.sandbox(signal, project_id, 'create');
          const maxRows = max_rows ?? DEFAULT_MAX_ROWS;
          const result = await sandbox.query(project_id, sql, params ?? [], maxRows);
          const reason = describeTruncation(
            result.truncatedBy,
            `more than ${maxRows} rows; raise max_rows (this server allows up to ${sandbox.maxRowsCap}) or narrow the query (WHERE, LIMIT/OFFSET).`,
            sandbox.maxResultBytes,
          );
          return {
            columns: result.columns,
            rows: result.rows,
            row_count: result.rowCount,
            truncated: result.truncated,
            ...(reason ? { truncated_reason: reason } : {}),
          };
        },
      ),
  );
}
