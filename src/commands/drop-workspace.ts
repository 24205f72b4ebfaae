import type { Config } from '../config.js';
import { EXIT_FINDINGS, EXIT_HEALTHY, installedWorkspaces, onWorkspaceDatabase, print, withDatabase } from './database-command.js';

/**
 * `pg-workspace-mcp drop-workspace ID`: drops the workspace as the drop_workspace tool does (the
 * command line names the id, which is the confirmation); 0 dropped, 1 no such workspace, 2 could
 * not run (a refusal or failure included: nothing was changed then).
 */
export function dropWorkspaceCommand(config: Config, options: { projectId: string; json: boolean }): Promise<number> {
  return withDatabase('drop-workspace', config, options.json, (home, plan) => onWorkspaceDatabase(home, config, options.projectId, async (db) => {
    const workspaces = await installedWorkspaces(db, plan, config, [options.projectId]);
    const outcome = await workspaces.drop(options.projectId);
    const result = { project_id: outcome.projectId, schema_name: outcome.schemaName, dropped: outcome.dropped, changes: outcome.changes };
    print(
      options.json
        ? `${JSON.stringify(result, null, 2)}\n`
        : outcome.dropped
          ? `dropped workspace ${outcome.projectId}\n${outcome.changes.map((c) => `  ${c}\n`).join('')}`
          : `workspace ${outcome.projectId} does not exist (no schema ${outcome.schemaName}, registry row or role): nothing dropped\n`,
    );
    return outcome.dropped ? EXIT_HEALTHY : EXIT_FINDINGS;
  }));
}
