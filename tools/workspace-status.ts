import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { validateProjectId } from '../src/workspaces/project-id.js';
import { WorkspaceNotFoundError } from '../src/workspaces/workspace-errors.js';
import { addFleetStatuses } from '../src/workspaces/workspace-fleet.js';
import { projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const output = {
  project_id: z.string().nullable(),
  workspace: z
    .object({
      schema_name: z.string(),
      up_to_date: z.boolean().describe('holds exactly the current workspace DDL and migrations'),
      applied: z.array(z.string()).describe('applied workspace migrations, as extension/name'),
      pending: z.array(z.string()).describe('workspace migrations not yet applied'),
    })
    .nullable()
    .describe('set when project_id was given'),
  fleet: z
    .object({
      workspaces: z.number().int(),
      up_to_date: z.number().int(),
      lagging: z.number().int(),
      pending: z.array(z.object({ migration: z.string(), workspaces: z.number().int() })),
    })
    .nullable()
    .describe('set when project_id was omitted'),
};

export function registerWorkspaceStatusTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'workspace_status',
    {
      title: 'Workspace status',
      description:
        'Reports which workspace migrations are applied and which are pending: for one workspace with ' +
        'project_id, or for all workspaces without it. Read-only. Pending migrations are applied the next ' +
        'time ensure_workspace is called for that project, or for all by `pg-workspace-mcp migrate-workspaces`.',
      inputSchema: { project_id: projectId.optional() },
      outputSchema: output,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ project_id }, { signal }) =>
      runTool(
        deps,
        project_id,
        async () => {
          if (project_id === undefined) {
            deps.access.checkUnscoped('The fleet status (workspace_status without project_id)');
            // Every database's workspaces, when they are spread over several (databases/).
            const f = addFleetStatuses(await deps.readEach(signal, (d) => d.fleet.fleetStatus()));
            return {
              project_id: null,
              workspace: null,
              fleet: { workspaces: f.workspaces, up_to_date: f.upToDate, lagging: f.lagging, pending: f.pending },
            };
          }
          const status = await (await deps.fleet(signal, project_id, 'existing')).status(validateProjectId(project_id));
          if (!status) throw new WorkspaceNotFoundError(project_id);
          return {
            project_id,
            workspace: { schema_name: status.schemaName, up_to_date: status.upToDate, applied: status.applied, pending: status.pending },
            fleet: null,
          };
        },
      ),
  );
}
