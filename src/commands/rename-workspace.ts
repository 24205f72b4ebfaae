import type { Config } from '../config.js';
import type { Queryable } from '../db/database.js';
import { copyPlacement, keptPlacement, placementOf } from '../databases/placements.js';
import { CannotRunError } from '../operations/cannot-run.js';
import { EXIT_HEALTHY, installedWorkspaces, onWorkspaceDatabase, print, withDatabase } from './database-command.js';

/** `pg-workspace-mcp rename-workspace OLD NEW`: 0 renamed, 2 refused or could not run (nothing changed). */
export function renameWorkspaceCommand(config: Config, options: { from: string; to: string; json: boolean }): Promise<number> {
  return withDatabase('rename-workspace', config, options.json, (home, plan) =>
    onWorkspaceDatabase(home, config, options.from, async (db) => {
      const workspaces = await installedWorkspaces(db, plan, config, [options.from, options.to]);
      // The new id is placed where the workspace is, in the home database's transaction, committed
      // once the rename is (databases/placements.ts); a new id placed elsewhere before is refused.
      const placedElsewhere = async (q: Queryable) => {
        const placed = config.databaseUrl ? await placementOf(q, options.to) : undefined;
        if (placed !== undefined) throw new CannotRunError(`${keptPlacement(options.to, placed)}: rename to another id.`);
      };
      if (db === home) await placedElsewhere(home);
      const changes =
        db === home
          ? await workspaces.rename(options.from, options.to)
          : await home.transaction(async (tx) => {
              await placedElsewhere(tx);
              await copyPlacement(tx, options.from, options.to);
              return workspaces.rename(options.from, options.to);
            });
      print(
        options.json
          ? `${JSON.stringify({ from: options.from, to: options.to, changes }, null, 2)}\n`
          : `renamed workspace ${options.from} to ${options.to}\n${changes.map((c) => `  ${c}\n`).join('')}`,
      );
      return EXIT_HEALTHY;
    }),
  );
}
