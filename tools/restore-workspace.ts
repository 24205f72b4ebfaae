import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { projectId } from './schemas.js';
import { snapshotNumber } from './snapshot-schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

/** The confirmation must repeat the id: a model filling in arguments by guesswork restores nothing. */
export class RestoreNotConfirmedError extends Error {
  override name = 'RestoreNotConfirmedError';
}

export function registerRestoreWorkspaceTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'restore_workspace',
    {
      title: 'Restore workspace',
      description:
        'Makes a workspace the state of one of its snapshots, atomically: every table, row and object as they were when ' +
        'it was taken. The state it replaces is kept as a new snapshot (kept_as), so the restore can itself be undone by ' +
        'restoring that one. The snapshot restored is used up (it becomes the workspace). confirm must repeat project_id exactly.',
      inputSchema: {
        project_id: projectId,
        snapshot: snapshotNumber,
        confirm: z.string().max(200).describe('the project_id again, exactly, to confirm the restore'),
      },
      outputSchema: {
        project_id: z.string(),
        restored: z.number().int().describe('the snapshot the workspace now is'),
        kept_as: z.number().int().describe('the snapshot holding the state the restore replaced'),
        changes: z.array(z.string()),
      },
      annotations: { destructiveHint: true, idempotentHint: false, readOnlyHint: false, openWorldHint: false },
    },
    ({ project_id, snapshot, confirm }, { signal }) =>
      runTool(deps, project_id, async () => {
        if (confirm !== project_id) {
          throw new RestoreNotConfirmedError(
            `Nothing was restored: confirm must repeat project_id exactly ("${project_id}"), got ${JSON.stringify(confirm.slice(0, 80))}.`,
          );
        }
        // The vector index a load of this server builds after its call (docs/search.md): the state kept has it.
        await (await deps.search(signal, project_id, 'existing')).settled(project_id);
        const outcome = await (await deps.workspaces(signal, project_id, 'existing')).restore(project_id, snapshot);
        return { project_id, restored: outcome.restored.snapshot, kept_as: outcome.kept.snapshot, changes: outcome.changes };
      }),
  );
}
