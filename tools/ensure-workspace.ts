import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { isoTimestamp, projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const output = {
  project_id: z.string(),
  schema_name: z.string().describe('PostgreSQL schema holding this workspace'),
  created: z.boolean().describe('true only for the call that created the workspace'),
  created_at: isoTimestamp,
  tables: z.array(z.string()).describe('the tables the enabled extensions create in every workspace'),
};

export function registerEnsureWorkspaceTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'ensure_workspace',
    {
      title: 'Ensure workspace',
      description:
        'Returns the isolated PostgreSQL workspace (one schema) of a project, creating it with all of its ' +
        'tables on first use. Call it before working with a project\'s data; calling it again is cheap and ' +
        'never changes an existing workspace except to apply pending upgrades. The schema name is ' +
        '"project_" plus the id with hyphens turned into underscores (client-a -> project_client_a).',
      inputSchema: { project_id: projectId },
      outputSchema: output,
      annotations: { idempotentHint: true, destructiveHint: false, readOnlyHint: false, openWorldHint: false },
    },
    ({ project_id }, { signal }) =>
      runTool(
        deps,
        project_id,
        async () => {
          const w = await (await deps.workspaces(signal, project_id, 'create')).ensure(project_id);
          return {
            project_id: w.projectId,
            schema_name: w.schemaName,
            created: w.created,
            created_at: w.createdAt.toISOString(),
            tables: w.tables,
          };
        },
      ),
  );
}
