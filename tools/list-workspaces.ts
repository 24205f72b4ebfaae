import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { PROJECT_ID_MAX_LENGTH } from '../src/workspaces/project-id.js';
import { LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX } from '../src/workspaces/workspace-manager.js';
import { isoTimestamp } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const output = {
  workspaces: z.array(z.object({ project_id: z.string(), schema_name: z.string(), created_at: isoTimestamp })),
  next_cursor: z.string().nullable().describe('pass as cursor to get the next page; null on the last page'),
};

export function registerListWorkspacesTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'list_workspaces',
    {
      title: 'List workspaces',
      description:
        'Lists existing project workspaces in project id order, a page at a time. Use it to find which ' +
        'projects already have a workspace; filter with prefix, and pass next_cursor back as cursor for ' +
        'the next page. A server restricted to some projects lists only those.',
      inputSchema: {
        limit: z
          .number()
          .int()
          .min(1)
          .max(LIST_LIMIT_MAX)
          .default(LIST_LIMIT_DEFAULT)
          .describe(`page size, 1-${LIST_LIMIT_MAX} (default ${LIST_LIMIT_DEFAULT})`),
        cursor: z.string().max(200).optional().describe('next_cursor from the previous page'),
        prefix: z.string().max(PROJECT_ID_MAX_LENGTH).optional().describe('only project ids starting with this'),
      },
      outputSchema: output,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ limit, cursor, prefix }, { signal }) =>
      runTool(
        deps,
        undefined,
        async () => {
          // With an allowlist, the allowed workspaces only: the others are not this agent's to see.
          const page = await deps.list(signal, { limit, cursor, prefix, only: deps.access.allowed });
          return {
            workspaces: page.workspaces.map((w) => ({
              project_id: w.projectId,
              schema_name: w.schemaName,
              created_at: w.createdAt.toISOString(),
            })),
            next_cursor: page.nextCursor,
          };
        },
      ),
  );
}
