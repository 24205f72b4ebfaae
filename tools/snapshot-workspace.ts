import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { projectId } from './schemas.js';
import { snapshotSummary, summarize } from './snapshot-schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

export function registerSnapshotWorkspaceTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'snapshot_workspace',
    {
      title: 'Snapshot workspace',
      description:
        'Keeps the current state of a workspace (every table with its rows, indexes, sequences, views, functions, types, ' +
        'constraints, triggers, policies) as a numbered snapshot that restore_workspace can bring back and fork_workspace ' +
        'can copy. Taken in one transaction; reads go on meanwhile, writes wait until it is done. Snapshots cannot be ' +
        'read or changed with query/execute. Take one before a risky change.',
      inputSchema: {
        project_id: projectId,
        label: z.string().max(200).optional().describe('what the snapshot is for, e.g. "before the migration"'),
      },
      outputSchema: { project_id: z.string(), ...snapshotSummary.shape },
      annotations: { destructiveHint: false, idempotentHint: false, readOnlyHint: false, openWorldHint: false },
    },
    ({ project_id, label }, { signal }) =>
      runTool(deps, project_id, async () => {
        // The vector index a load of this server builds after its call (docs/search.md): the snapshot has it.
        await (await deps.search(signal, project_id, 'existing')).settled(project_id);
        return { project_id, ...summarize(await (await deps.workspaces(signal, project_id, 'existing')).snapshot(project_id, label)) };
      }),
  );
}
