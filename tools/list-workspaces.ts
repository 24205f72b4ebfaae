import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
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
        'the next page.',
      inputSchema: {
        limit: z.number().int().min(1).max(500).default(50).describe('page size, 1-500 (default 50)'),
        cursor: z.string().max(200).optional().describe('next_cursor from the previous page'),
        prefix: z.string().max(55).optional().describe('only project ids starting with this'),
      },
      outputSchema: output,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ limit, cursor, prefix }) =>
      runTool(
        deps,
        (r) => `${r.workspaces.length} workspace(s)${r.next_cursor ? '; more with next_cursor' : ''}.`,
        async () => {
          deps.access.checkUnscoped('list_workspaces');
          const page = await (await deps.workspaces()).list({ limit, cursor, prefix });
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
