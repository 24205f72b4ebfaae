import type { Config, SnapshotRequest } from '../config.js';
import type { SnapshotInfo } from '../workspaces/workspace-manager.js';
import { keptPlacement, placeIn } from '../databases/placements.js';
import { CannotRunError } from '../operations/cannot-run.js';
import { EXIT_FINDINGS, EXIT_HEALTHY, installedWorkspaces, onWorkspaceDatabase, print, withDatabase } from './database-command.js';

/**
 * The snapshot commands, as the tools of the same names (the copy runs as the workspace's role,
 * in its sandbox, so these need the SQL tools' privileges too): 0 done, 1 nothing to drop, 2
 * refused or could not run (nothing changed).
 */
export function snapshotCommand(config: Config, options: { request: SnapshotRequest; json: boolean }): Promise<number> {
  const r = options.request;
  const subject = r.action === 'fork-workspace' ? r.from : r.projectId;
  return withDatabase(r.action, config, options.json, (home, plan) => onWorkspaceDatabase(home, config, subject, async (db) => {
    // A fork goes beside its source, in the same database (databases/member-databases.ts).
    if (r.action === 'fork-workspace' && db !== home) {
      const [{ name } = { name: '' }] = await db.query<{ name: string }>('SELECT pg_catalog.current_database() AS name');
      const placed = await placeIn(home, r.to, name);
      if (placed !== name) throw new CannotRunError(`${keptPlacement(r.to, placed)}, and a fork is made beside its source: fork to another id.`);
    }
    const workspaces = await installedWorkspaces(db, plan, config, r.action === 'fork-workspace' ? [r.from, r.to] : [r.projectId]);
    // Labels are the agents' to choose: escaped like every report.
    const show = (result: object, text: string) => print(options.json ? `${JSON.stringify(result, null, 2)}\n` : text);
    const line = (s: SnapshotInfo) =>
      `  ${s.snapshot}  ${s.created_at.toISOString()}  ${(s.size_bytes / 1024 / 1024).toFixed(1)} MiB  ${s.origin}` +
      `${s.levelCurrent ? '' : '  (older migration level)'}${s.label ? `  ${s.label}` : ''}\n`;
    switch (r.action) {
      case 'snapshot-workspace': {
        const s = await workspaces.snapshot(r.projectId, r.label);
        show(s, `took snapshot ${s.snapshot} of workspace ${r.projectId}\n${line(s)}`);
        return EXIT_HEALTHY;
      }
      case 'list-snapshots': {
        const list = await workspaces.listSnapshots(r.projectId);
        show({ project_id: r.projectId, snapshots: list }, list.length > 0 ? list.map(line).join('') : `workspace ${r.projectId} has no snapshots\n`);
        return EXIT_HEALTHY;
      }
      case 'restore-workspace': {
        const outcome = await workspaces.restore(r.projectId, r.snapshot);
        const result = { project_id: r.projectId, restored: outcome.restored.snapshot, kept_as: outcome.kept.snapshot, changes: outcome.changes };
        show(result, `restored workspace ${r.projectId} from snapshot ${r.snapshot}\n${outcome.changes.map((c) => `  ${c}\n`).join('')}`);
        return EXIT_HEALTHY;
      }
      case 'drop-snapshot': {
        const dropped = await workspaces.dropSnapshot(r.projectId, r.snapshot);
        show({ project_id: r.projectId, snapshot: r.snapshot, dropped }, dropped ? `dropped snapshot ${r.snapshot} of ${r.projectId}\n` : `workspace ${r.projectId} has no snapshot ${r.snapshot}: nothing dropped\n`);
        return dropped ? EXIT_HEALTHY : EXIT_FINDINGS;
      }
      case 'fork-workspace': {
        const outcome = await workspaces.fork(r.from, r.to, r.snapshot);
        show({ from: r.from, to: r.to, schema_name: outcome.schemaName, changes: outcome.changes }, `forked ${r.from} into ${r.to}\n${outcome.changes.map((c) => `  ${c}\n`).join('')}`);
        return EXIT_HEALTHY;
      }
    }
  }));
}
