import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { projectId } from './schemas.js';
import { snapshotNumber } from './snapshot-schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

export function registerDropSnapshotTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'drop_snapshot',
    {
      title: 'Drop snapshot',
      description:
        "Deletes one of a workspace's snapshots for good (the workspace itself is untouched), freeing its place in the " +
        'per-workspace snapshot limits. Dropping a snapshot that does not exist changes nothing (dropped: false).',
      inputSchema: { project_id: projectId, snapshot: snapshotNumber },
      outputSchema: { project_id: z.string(), snapshot: z.number().int(), dropped: z.boolean() },
      annotations: { destructiveHint: true, idempotentHint: true, readOnlyHint: false, openWorldHint: false },
    },
    ({ project_id, snapshot }, { signal }) =>
      runTool(deps, project_id, async () => ({ project_id, snapshot, dropped: await (await deps.workspaces(signal, project_id, 'existing')).dropSnapshot(project_id, snapshot) })),
  );
}
