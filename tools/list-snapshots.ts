import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { projectId } from './schemas.js';
import { snapshotSummary, summarize } from './snapshot-schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

export function registerListSnapshotsTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'list_snapshots',
    {
      title: 'List snapshots',
      description: "A workspace's snapshots, oldest first, with their label, time, size and origin.",
      inputSchema: { project_id: projectId },
      outputSchema: { project_id: z.string(), snapshots: z.array(snapshotSummary) },
      annotations: { destructiveHint: false, idempotentHint: true, readOnlyHint: true, openWorldHint: false },
    },
    ({ project_id }, { signal }) =>
      runTool(deps, project_id, async () => ({ project_id, snapshots: (await (await deps.workspaces(signal, project_id, 'existing')).listSnapshots(project_id)).map(summarize) })),
  );
}
