import type { Config } from '../config.js';
import { formatRepair, repair, type RepairOptions } from '../operations/repair.js';
import { EXIT_FINDINGS, EXIT_HEALTHY, print, withDatabase } from './database-command.js';

/** `pg-workspace-mcp repair`: the named fixes; 0 done, 1 some refused or failed, 2 could not run. */
export function repairCommand(config: Config, options: RepairOptions & { json: boolean }): Promise<number> {
  return withDatabase('repair', config, options.json, async (db, plan) => {
    // As a server's builds: on PostgreSQL only (PGlite's WebAssembly heap is bounded).
    const actions = await repair(db, plan, { ...options, ...(config.databaseUrl ? { indexBuildMemoryKb: config.indexBuildMemoryMb * 1024 } : {}) });
    print(options.json ? `${JSON.stringify({ dry_run: options.dryRun, actions }, null, 2)}\n` : formatRepair(actions, options.dryRun));
    return actions.some((a) => a.outcome === 'refused' || a.outcome === 'failed') ? EXIT_FINDINGS : EXIT_HEALTHY;
  });
}
