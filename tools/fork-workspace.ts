import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { isoTimestamp, projectId } from './schemas.js';
import { snapshotNumber } from './snapshot-schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

export function registerForkWorkspaceTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'fork_workspace',
    {
      title: 'Fork workspace',
      description:
        'Creates a new workspace `to` holding a copy of workspace `from` (its current state, or one of its snapshots): ' +
        'every table with its rows and every object, under its own role and SQL sandbox, independent from then on. ' +
        'Refused when anything of `to` exists.',
      inputSchema: {
        from: projectId.describe('the workspace to copy'),
        to: projectId.describe('the new workspace, which must not exist'),
        snapshot: snapshotNumber.optional().describe("one of from's snapshots to copy instead of its current state"),
      },
      outputSchema: { from: z.string(), to: z.string(), schema_name: z.string(), created_at: isoTimestamp, changes: z.array(z.string()) },
      annotations: { destructiveHint: false, idempotentHint: false, readOnlyHint: false, openWorldHint: false },
    },
    ({ from, to, snapshot }, { signal }) =>
      runTool(deps, from, async () => {
        // The allowlist wrapper reads project_id only: both ids are checked here.
        deps.access.check(from);
        deps.access.check(to);
        // The vector index a load of this server builds after its call (docs/search.md): the copy has it.
        const { workspaces, search } = await deps.forkServices(from, to, signal);
        await search.settled(from);
        const outcome = await workspaces.fork(from, to, snapshot);
        return { from, to, schema_name: outcome.schemaName, created_at: outcome.createdAt.toISOString(), changes: outcome.changes };
      }),
  );
}
