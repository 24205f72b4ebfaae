import path from 'node:path';
import { planInstall, openDatabase, snapshotLimits } from '../boot.js';
import { memberDatabaseStates, memberUrl, placementOf } from '../databases/placements.js';
import type { Config } from '../config.js';
import type { Database } from '../db/database.js';
import { storeExists } from '../db/embedded/pglite-store.js';
import { explainError, sqlState } from '../db/sql-errors.js';
import type { InstallPlan } from '../installer/install-plan.js';
import { createStderrLogger } from '../logger.js';
import { CannotRunError } from '../operations/cannot-run.js';
import { installState, registryPresence } from '../registry/operations-queries.js';
import { ProjectAccess } from '../project-access.js';
import { terminalSafe } from '../terminal-text.js';
import { sandboxedWorkspaces } from '../sandboxed-workspaces.js';
import type { WorkspaceManager } from '../workspaces/workspace-manager.js';

/*
 * What the commands that open the database share: opening it as a server would, the exit codes,
 * printing, and the workspace engine for commands that act on workspaces.
 */

// Reports carry text agents control (their errors, their objects' names): escaped for the terminal.
export const print = (text: string) => process.stdout.write(terminalSafe(text));
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
export async function withDatabase(
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

/** The workspace engine on an installed database, for commands naming `projectIds` (which --allow-project must allow). */
export async function installedWorkspaces(db: Database, plan: InstallPlan, config: Config, projectIds: readonly string[]): Promise<WorkspaceManager> {
  const access = new ProjectAccess(config.allowedProjects);
  for (const id of projectIds) access.check(id);
  const presence = await registryPresence(db);
  const state = presence.registry ? await installState(db) : undefined;
  if (!state) throw new CannotRunError('The extension schemas are not installed in this database, so it has no workspaces.');
  const log = createStderrLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  // Snapshots and forks copy as the workspace's role, through its SQL sandbox.
  return sandboxedWorkspaces(db, plan, state.search_path_schemas, log, { citus: presence.citus !== null, snapshotLimits: snapshotLimits(config) }).workspaces;
}

/**
 * Runs `work` on each member database the home database `home` has spread workspaces over
 * (databases/placements.ts), opened as a server would, one at a time; none on the embedded store
 * or when the server never spread them. One gone from the server is passed by (goneMemberDatabases).
 */
export async function onMemberDatabases<T>(home: Database, config: Config, work: (db: Database, name: string) => Promise<T>): Promise<{ database: string; result: T }[]> {
  const url = config.databaseUrl;
  if (!url) return [];
  const results: { database: string; result: T }[] = [];
  for (const { name } of (await memberStates(home)).filter((m) => m.present)) {
    results.push({ database: name, result: await onMemberDatabase(config, url, name, (db) => work(db, name)) });
  }
  return results;
}

/** The member databases `home` records that the PostgreSQL server no longer has (dropped under it), with the ids placed in each. */
export async function goneMemberDatabases(home: Database, config: Config): Promise<{ name: string; placed: number }[]> {
  return config.databaseUrl ? (await memberStates(home)).filter((m) => !m.present) : [];
}

const memberStates = (home: Database) => beforePlacements(memberDatabaseStates(home), []);

/** Runs `work` on the database holding `projectId`: the home database `home`, or the member database it was placed in. */
export async function onWorkspaceDatabase<T>(home: Database, config: Config, projectId: string, work: (db: Database) => Promise<T>): Promise<T> {
  const url = config.databaseUrl;
  const database = url ? await beforePlacements(placementOf(home, projectId), undefined) : undefined;
  return url && database !== undefined ? onMemberDatabase(config, url, database, work) : work(home);
}

async function onMemberDatabase<T>(config: Config, homeUrl: string, name: string, work: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase({ ...config, databaseUrl: memberUrl(homeUrl, name) }, createStderrLogger('warn'));
  try {
    return await work(db);
  } finally {
    await db.close();
  }
}

/** `read`, or `none` on an install from before core migration 0011 (no placement tables: doctor reports it). */
async function beforePlacements<T>(read: Promise<T>, none: T): Promise<T> {
  try {
    return await read;
  } catch (error) {
    if (sqlState(error) === '42P01' || sqlState(error) === '3F000') return none;
    throw error;
  }
}
