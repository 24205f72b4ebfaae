import type { Config } from '../config.js';
import { placeIn } from '../databases/placements.js';
import { formatRepair, repair, type RepairOptions } from '../operations/repair.js';
import { EXIT_FINDINGS, EXIT_HEALTHY, onMemberDatabases, print, withDatabase } from './database-command.js';

/**
 * `pg-workspace-mcp repair`: the named fixes, in the home database and in each member database
 * (databases/placements.ts); 0 done, 1 some refused or failed, 2 could not run.
 */
export function repairCommand(config: Config, options: RepairOptions & { json: boolean }): Promise<number> {
  return withDatabase('repair', config, options.json, async (db, plan) => {
    // As a server's builds: on PostgreSQL only (PGlite's WebAssembly heap is bounded).
    const fixes = { ...options, ...(config.databaseUrl ? { indexBuildMemoryKb: config.indexBuildMemoryMb * 1024 } : {}) };
    const actions = await repair(db, plan, fixes);
    const members = await onMemberDatabases(db, config, async (member, name) => {
      const done = await repair(member, plan, fixes);
      // An adopted workspace of a member database is found there by its placement in the home database.
      for (const a of done) {
        if (options.dryRun || a.fix !== 'adopt-orphan' || a.outcome !== 'changed') continue;
        const placed = await placeIn(db, a.subject, name);
        a.changes.push(
          placed === name
            ? `placed in the member database ${name}`
            : `its id belongs to ${placed ? `the member database ${placed}` : 'the home database'}, where calls go: drop it here, or there first`,
        );
      }
      return done;
    });
    if (options.json) {
      const memberActions = members.map((m) => ({ database: m.database, actions: m.result }));
      print(`${JSON.stringify({ dry_run: options.dryRun, actions, ...(members.length > 0 ? { member_databases: memberActions } : {}) }, null, 2)}\n`);
    } else {
      print(formatRepair(actions, options.dryRun));
      for (const m of members) print(`\nMember database ${m.database}:\n${formatRepair(m.result, options.dryRun)}`);
    }
    const all = [actions, ...members.map((m) => m.result)].flat();
    return all.some((a) => a.outcome === 'refused' || a.outcome === 'failed') ? EXIT_FINDINGS : EXIT_HEALTHY;
  });
}
