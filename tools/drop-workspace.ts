import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const output = {
  project_id: z.string(),
  schema_name: z.string(),
  dropped: z.boolean().describe('false when the workspace did not exist (nothing was changed)'),
  changes: z.array(z.string()).describe('what was removed'),
};

/** The confirmation must repeat the id exactly: a model that fills in arguments by guesswork drops nothing. */
export class DropNotConfirmedError extends Error {
  override name = 'DropNotConfirmedError';
}

export function registerDropWorkspaceTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'drop_workspace',
    {
      title: 'Drop workspace',
      description:
        "Permanently deletes a project's workspace: its schema with every table and row in it, its registry " +
        'entry and migration ledger, and its SQL role, in one transaction. Cannot be undone. confirm must repeat ' +
        'project_id exactly. Dropping a workspace that does not exist changes nothing (dropped: false); ' +
        'ensure_workspace afterwards creates a new, empty one.',
      inputSchema: {
        project_id: projectId,
        confirm: z.string().max(200).describe('the project_id again, exactly, to confirm the deletion'),
      },
      outputSchema: output,
      annotations: { destructiveHint: true, idempotentHint: true, readOnlyHint: false, openWorldHint: false },
    },
    ({ project_id, confirm }, { signal }) =>
      runTool(deps, project_id, async () => {
        if (confirm !== project_id) {
          throw new DropNotConfirmedError(
            `Nothing was dropped: confirm must repeat project_id exactly ("${project_id}"), got ${JSON.stringify(confirm.slice(0, 80))}.`,
          );
        }
        const outcome = await (await deps.workspaces(signal, project_id, 'existing')).drop(project_id);
        return { project_id, schema_name: outcome.schemaName, dropped: outcome.dropped, changes: outcome.changes };
      }),
  );
}
