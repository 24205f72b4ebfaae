import type { Config } from '../config.js';
import { EXIT_HEALTHY, installedWorkspaces, print, withDatabase } from './database-command.js';

/** `pg-workspace-mcp rename-workspace OLD NEW`: 0 renamed, 2 refused or could not run (nothing changed). */
export function renameWorkspaceCommand(config: Config, options: { from: string; to: string; json: boolean }): Promise<number> {
  return withDatabase('rename-workspace', config, options.json, async (db, plan) => {
    const workspaces = await installedWorkspaces(db, plan, config, [options.from, options.to]);
    const changes = await workspaces.rename(options.from, options.to);
    print(
      options.json
        ? `${JSON.stringify({ from: options.from, to: options.to, changes }, null, 2)}\n`
        : `renamed workspace ${options.from} to ${options.to}\n${changes.map((c) => `  ${c}\n`).join('')}`,
    );
    return EXIT_HEALTHY;
  });
}
