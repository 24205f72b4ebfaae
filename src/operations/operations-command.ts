import path from 'node:path';
import { planInstall, openDatabase, snapshotLimits } from '../boot.js';
import type { Command, Config, SnapshotRequest } from '../config.js';
import type { Database } from '../db/database.js';
import { storeExists } from '../db/pglite-store.js';
import { explainError } from '../db/sql-errors.js';
import type { InstallPlan } from '../installer/install-plan.js';
import { createStderrLogger } from '../logger.js';
import { CannotRunError } from './cannot-run.js';
import { diagnose, formatDoctorReport } from './doctor.js';
import { formatRepair, repair, type RepairOptions } from './repair.js';
import { installState, registryPresence } from '../registry/operations-queries.js';
import { ProjectAccess } from '../project-access.js';
import { terminalSafe } from '../terminal-text.js';
import { DEFAULT_SQL_LIMITS, WorkspaceSql } from '../sandbox/workspace-sql.js';
import { WorkspaceManager, type SnapshotInfo } from '../workspaces/workspace-manager.js';

// Reports carry text agents control (their errors, their objects' names): escaped for the terminal.
const print = (text: string) => process.stdout.write(terminalSafe(text));
const printError = (text: string) => process.stderr.write(terminalSafe(text));

/** Exit codes of doctor and repair. */
export const EXIT_HEALTHY = 0;
export const EXIT_FINDINGS = 1;
export const EXIT_COULD_NOT_RUN = 2;

/**
 * Runs `work` on the database the server would use (DATABASE_URL, or the embedded store, shared
 * with any server running on it), with the extension files parsed as a server would parse them.
 * Anything that stops the command from running is printed (as JSON with --json) and is exit 2.
 */
async function withDatabase(
  command: string,
  config: Config,
  json: boolean,
  work: (db: Database, plan: InstallPlan) => Promise<number>,
): Promise<number> {
  const log = createStderrLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  let db: Database | undefined;
  try {
    const plan = await planInstall(config);
    // Opening the embedded store makes one where there is none: nothing to look at there.
    if (!config.databaseUrl && !(await storeExists(path.join(config.dataDir, 'pgdata')))) {
      throw new CannotRunError(`There is no embedded store at ${config.dataDir} (a server makes it on first start). Pass --data-dir or DATABASE_URL.`);
    }
    db = await openDatabase(config, log);
    return await work(db, plan);
  } catch (error) {
    const message = error instanceof CannotRunError ? error.message : explainError(error, db?.description ?? config.databaseUrl ?? config.dataDir);
    if (json) print(`${JSON.stringify({ error: message })}\n`);
    printError(`pg-workspace-mcp ${command}: ${message}\n`);
    return EXIT_COULD_NOT_RUN;
  } finally {
    await db?.close();
  }
}

/** `pg-workspace-mcp doctor`: the read-only report; 0 healthy, 1 findings, 2 could not run. */
function doctorCommand(config: Config, options: { json: boolean }): Promise<number> {
  return withDatabase('doctor', config, options.json, async (db, plan) => {
    const report = await diagnose(db, plan);
    print(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctorReport(report));
    return report.healthy ? EXIT_HEALTHY : EXIT_FINDINGS;
  });
}

/** `pg-workspace-mcp repair`: the named fixes; 0 done, 1 some refused or failed, 2 could not run. */
function repairCommand(config: Config, options: RepairOptions & { json: boolean }): Promise<number> {
  return withDatabase('repair', config, options.json, async (db, plan) => {
    const actions = await repair(db, plan, options);
    print(options.json ? `${JSON.stringify({ dry_run: options.dryRun, actions }, null, 2)}\n` : formatRepair(actions, options.dryRun));
    return actions.some((a) => a.outcome === 'refused' || a.outcome === 'failed') ? EXIT_FINDINGS : EXIT_HEALTHY;
  });
}

/**
 * `pg-workspace-mcp drop-workspace ID`: drops the workspace as the drop_workspace tool does (the
 * command line names the id, which is the confirmation); 0 dropped, 1 no such workspace, 2 could
 * not run (a refusal or failure included: nothing was changed then).
 */
function dropWorkspaceCommand(config: Config, options: { projectId: string; json: boolean }): Promise<number> {
  return withDatabase('drop-workspace', config, options.json, async (db, plan) => {
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
  });
}

/** `pg-workspace-mcp rename-workspace OLD NEW`: 0 renamed, 2 refused or could not run (nothing changed). */
function renameWorkspaceCommand(config: Config, options: { from: string; to: string; json: boolean }): Promise<number> {
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

/**
 * The snapshot commands, as the tools of the same names (the copy runs as the workspace's role,
 * in its sandbox, so these need the SQL tools' privileges too): 0 done, 1 nothing to drop, 2
 * refused or could not run (nothing changed).
 */
function snapshotCommand(config: Config, options: { request: SnapshotRequest; json: boolean }): Promise<number> {
  const r = options.request;
  return withDatabase(r.action, config, options.json, async (db, plan) => {
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
  });
}

/** The workspace engine on an installed database, for commands naming `projectIds` (which --allow-project must allow). */
async function installedWorkspaces(db: Database, plan: InstallPlan, config: Config, projectIds: readonly string[]): Promise<WorkspaceManager> {
  const access = new ProjectAccess(config.allowedProjects);
  for (const id of projectIds) access.check(id);
  const presence = await registryPresence(db);
  const state = presence.registry ? await installState(db) : undefined;
  if (!state) throw new CannotRunError('The extension schemas are not installed in this database, so it has no workspaces.');
  const log = createStderrLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const workspaces = new WorkspaceManager(db, plan, state.search_path_schemas, log, { citus: presence.citus !== null, snapshotLimits: snapshotLimits(config) });
  // Snapshots and forks copy as the workspace's role, through its SQL sandbox.
  workspaces.sandbox = new WorkspaceSql(db, workspaces, state.search_path_schemas, DEFAULT_SQL_LIMITS, log);
  return workspaces;
}

/** The operations commands, by the command line's kind. */
export type OperationCommand = Extract<Command, { kind: 'doctor' | 'repair' | 'drop-workspace' | 'rename-workspace' | 'snapshots' }>;

export function runOperation(command: OperationCommand): Promise<number> {
  switch (command.kind) {
    case 'doctor':
      return doctorCommand(command.config, command);
    case 'repair':
      return repairCommand(command.config, command);
    case 'drop-workspace':
      return dropWorkspaceCommand(command.config, command);
    case 'rename-workspace':
      return renameWorkspaceCommand(command.config, command);
    case 'snapshots':
      return snapshotCommand(command.config, command);
  }
}
