import type { Database, Queryable } from '../db/database.js';
import { readSandboxCapability } from '../sandbox/sandbox-capability.js';
import { dropRoleSql } from '../db/role-membership.js';
import { explainError } from '../db/sql-errors.js';
import type { InstallPlan } from '../installer/install-plan.js';
import type { PreparedExtension } from '../installer/prepared-extension.js';
import * as lifecycle from '../registry/lifecycle-queries.js';
import * as registry from '../registry/operations-queries.js';
import { lockWorkspace, markWorkspaceSchema, recordWorkspaceRole, registerWorkspace, roleUsesElsewhere } from '../registry/registry-sql.js';
import { principalScript, roleNameFor, rolePrefixFor, SANDBOX_LOCK_CLASS, SANDBOX_SCHEMA, sandboxBodyScript } from '../sandbox/sandbox-ddl.js';
import { projectIdOfSchema, SCHEMA_PREFIX, schemaNameFor } from '../workspaces/project-id.js';
import { buildWorkspaceScript } from '../workspaces/workspace-ddl.js';
import { forgetWorkspace } from '../workspaces/workspace-lifecycle.js';
import { silentLogger } from '../logger.js';
import { expiredDeferrals, type DeferredIndexRow } from '../registry/deferred-index-sql.js';
import type { WorkspaceSandbox } from '../sandbox/workspace-sandbox.js';
import { sandboxedWorkspaces } from '../sandboxed-workspaces.js';
import { recreateStatement } from '../search/index-definition.js';
import { REPAIR_REBUILD_TIMEOUT_MS, restoreDeferredIndexes } from '../search/index-deferral.js';
import { CannotRunError } from './cannot-run.js';
import { orphanSchemas, rolesWithoutWorkspace } from './doctor.js';
import { settleSnapshotReadings } from '../snapshots/snapshot-reader.js';

export interface RepairOptions {
  adoptOrphans: boolean;
  forgetMissing: boolean;
  /** Create again the vector indexes a stopped ingest left deferred (doctor's index-deferred). */
  restoreIndexes: boolean;
  /** Migrations to re-stamp, as `extension/name`. */
  acceptMigrations: readonly string[];
  /** Every fix runs, then its transaction is rolled back: what would change, checked for real. */
  dryRun: boolean;
  /** maintenance_work_mem of the index builds of restoreIndexes, in kB (PostgreSQL; unset: the server's own). */
  indexBuildMemoryKb?: number | undefined;
}

/** What one fix did (or, in a dry run, would do), or why it was not done. */
export interface RepairAction {
  fix: 'adopt-orphan' | 'forget-missing' | 'restore-indexes' | 'accept-migration';
  /** The workspace's project id, or the migration's `extension/name`. */
  subject: string;
  outcome: 'changed' | 'unchanged' | 'refused' | 'failed';
  changes: string[];
  /** Why nothing was changed (unchanged, refused, or the error that rolled the fix back). */
  reason?: string;
}

/**
 * The scratch schema an adoption builds a fresh workspace in, to compare the orphan's tables
 * with, inside a savepoint that is always rolled back. `project_registry_*` is the server's own
 * (no project id maps to it).
 */
const REFERENCE_SCHEMA = 'project_registry_adoption_reference';

/**
 * The fingerprints of a workspace adopted below the current migration level: no plan has them,
 * so it lags until it is upgraded, and its upgrade re-runs the (idempotent) schema files too.
 */
const ADOPTED_BEHIND = 'adopted-behind-current-level';

class DryRunRollback extends Error {
  constructor(readonly action: RepairAction) {
    super('dry run');
  }
}

/**
 * The fixes doctor proposes, each only when its flag asks for it, each workspace or migration in
 * a transaction of its own (a workspace's under its lock, re-checked there, so a server creating
 * or dropping it meanwhile wins cleanly). Refusals are reported, not thrown.
 */
export async function repair(db: Database, plan: InstallPlan, options: RepairOptions): Promise<RepairAction[]> {
  const accepted = options.acceptMigrations.map((id) => migrationFiles(plan, id));
  const presence = await registry.registryPresence(db);
  const state = presence.registry ? await registry.installState(db) : undefined;
  if (!state) {
    throw new CannotRunError(
      'The extension schemas are not installed in this database, so there is no registry to repair. Start a server or run ' +
        '`pg-workspace-mcp migrate-workspaces` to install them.',
    );
  }
  const run = (fix: RepairAction['fix'], subject: string, fn: (tx: Queryable) => Promise<RepairAction>) =>
    inFixTransaction(db, options.dryRun, fn).catch(
      (error: unknown): RepairAction => ({ fix, subject, outcome: 'failed', changes: [], reason: explainError(error, db.description) }),
    );
  const actions: RepairAction[] = [];
  for (const m of accepted) actions.push(await run('accept-migration', m.id, (tx) => acceptMigration(tx, m)));
  const orphanIds = async (q: Queryable) => (await orphanSchemas(q, plan, state.search_path_schemas)).map((o) => o.projectId);
  if (options.forgetMissing) {
    for (const { project_id } of await registry.lostSchemas(db)) {
      actions.push(await run('forget-missing', project_id, (tx) => forgetMissing(tx, project_id, presence.citus !== null)));
    }
    const stopped = (await registry.snapshotReadings(db)).filter((r) => r.stopped);
    for (const projectId of new Set(stopped.map((r) => r.project_id))) {
      actions.push(await run('forget-missing', projectId, (tx) => settleReadings(tx, projectId)));
    }
    for (const role of await rolesWithoutWorkspace(db, await orphanIds(db))) {
      actions.push(await run('forget-missing', role, (tx) => forgetRole(tx, role, orphanIds)));
    }
  }
  if (options.restoreIndexes) {
    const { sandbox } = sandboxedWorkspaces(db, plan, state.search_path_schemas, silentLogger, { citus: presence.citus !== null });
    const expired = await expiredDeferrals(db);
    for (const projectId of new Set(expired.map((r) => r.project_id))) {
      const rows = expired.filter((r) => r.project_id === projectId);
      actions.push(
        await restoreIndexes(sandbox, projectId, rows, options.dryRun, options.indexBuildMemoryKb).catch(
          (error: unknown): RepairAction => ({ fix: 'restore-indexes', subject: projectId, outcome: 'failed', changes: [], reason: explainError(error, db.description) }),
        ),
      );
    }
  }
  if (options.adoptOrphans) {
    for (const projectId of await orphanIds(db)) {
      if (presence.citus) {
        actions.push({
          fix: 'adopt-orphan',
          subject: projectId,
          outcome: 'refused',
          changes: [],
          reason: 'adopting is not supported on Citus: a workspace there must be a distributed schema, which an orphan may not be.',
        });
        continue;
      }
      actions.push(await run('adopt-orphan', projectId, (tx) => adoptOrphan(tx, plan, state.search_path_schemas, projectId)));
    }
  }
  return actions;
}

/**
 * Creates again, as the workspace's role, the indexes a stopped load deferred (their lease ran
 * out), from their recorded definitions, each checked first: a refused one fails the fix, saying
 * why. Its own transaction (the sandbox's): a dry run checks the definitions only.
 */
async function restoreIndexes(
  sandbox: WorkspaceSandbox,
  projectId: string,
  rows: DeferredIndexRow[],
  dryRun: boolean,
  maintenanceWorkMemKb: number | undefined,
): Promise<RepairAction> {
  const schemaName = schemaNameFor(projectId);
  const changes = await Promise.all(
    rows.map(async (r) => `create index ${r.index_name} again: ${await recreateStatement(r.definition, { schemaName, tableName: r.table_name, indexName: r.index_name })}`),
  );
  if (!dryRun && !(await restoreDeferredIndexes(sandbox, projectId, rows, { expiredOnly: true, statementMs: REPAIR_REBUILD_TIMEOUT_MS, maintenanceWorkMemKb }))) {
    return { fix: 'restore-indexes', subject: projectId, outcome: 'unchanged', changes: [], reason: 'a load renewed them meanwhile, or another process created them again' };
  }
  return { fix: 'restore-indexes', subject: projectId, outcome: 'changed', changes };
}

/** The fix's transaction: committed, or in a dry run rolled back once the fix has run. */
async function inFixTransaction(db: Database, dryRun: boolean, fix: (tx: Queryable) => Promise<RepairAction>): Promise<RepairAction> {
  try {
    return await db.transaction(async (tx) => {
      const action = await fix(tx);
      if (dryRun || action.outcome !== 'changed') throw new DryRunRollback(action);
      return action;
    });
  } catch (error) {
    if (error instanceof DryRunRollback) return error.action;
    throw error;
  }
}

interface AcceptedMigration {
  id: string;
  extensionId: string;
  name: string;
  /** The files' checksums, for the global and the workspace ledger (absent: no such file). */
  global: string | undefined;
  workspace: string | undefined;
}

function migrationFiles(plan: InstallPlan, id: string): AcceptedMigration {
  const [extensionId, name, ...rest] = id.split('/');
  const p = plan.extensions.find((e) => e.extension.id === extensionId);
  const global = p?.migrations.find((m) => m.migration.name === name)?.migration.checksum;
  const workspace = p?.workspace.migrations.find((m) => m.migration.name === name)?.migration.checksum;
  if (!extensionId || !name || rest.length > 0 || (global === undefined && workspace === undefined)) {
    const known = plan.extensions.flatMap((e) =>
      [...e.migrations, ...e.workspace.migrations].map((m) => `${e.extension.id}/${m.migration.name}`),
    );
    throw new CannotRunError(
      `--accept-migration ${id}: no enabled extension has a migration of that name. Give it as EXTENSION/NAME, the file name ` +
        `without .sql, as doctor prints it (${[...new Set(known)].join(', ') || 'the enabled extensions have no migrations'}).`,
    );
  }
  return { id, extensionId, name, global, workspace };
}

/** Re-stamps the ledger rows of an edited migration with the file's checksum (after review). */
async function acceptMigration(tx: Queryable, m: AcceptedMigration): Promise<RepairAction> {
  const changes: string[] = [];
  if (m.global !== undefined) {
    const previous = await registry.restampGlobalMigration(tx, m.extensionId, m.name, m.global);
    if (previous !== undefined && previous !== m.global) changes.push(`global ledger checksum ${previous} -> ${m.global}`);
  }
  if (m.workspace !== undefined) {
    const rows = await registry.restampWorkspaceMigration(tx, m.extensionId, m.name, m.workspace);
    if (rows > 0) changes.push(`${rows} workspace ledger row(s) re-stamped to ${m.workspace}`);
  }
  return changes.length > 0
    ? { fix: 'accept-migration', subject: m.id, outcome: 'changed', changes }
    : { fix: 'accept-migration', subject: m.id, outcome: 'unchanged', changes, reason: 'the ledger already matches the file (or it was never applied)' };
}

/**
 * Forgets a workspace whose schema is gone (forgetWorkspace: registry and ledger rows, SQL
 * sandbox function and role, and the registry generation other servers' caches watch).
 */
async function forgetMissing(tx: Queryable, projectId: string, citus: boolean): Promise<RepairAction> {
  const schemaName = schemaNameFor(projectId);
  await lockWorkspace(tx, projectId);
  const now = await lifecycle.workspacePresence(tx, projectId, schemaName);
  if (!now.registered || now.schema_exists) {
    return {
      fix: 'forget-missing',
      subject: projectId,
      outcome: 'unchanged',
      changes: [],
      reason: now.registered ? `its schema ${schemaName} exists again (re-created meanwhile)` : 'it is no longer registered',
    };
  }
  return { fix: 'forget-missing', subject: projectId, outcome: 'changed', changes: await forgetWorkspace(tx, projectId, schemaName, { citus }) };
}

/**
 * Drops a workspace role that no workspace goes with (its schema and registry row were removed
 * by hand), re-checked in the transaction; under its workspace's lock when the name gives the id
 * (long ids end in a hash instead).
 */
/** Under the workspace's lock: what forks of its snapshots that stopped between their steps on Citus left, undone (snapshot-reader.ts). */
async function settleReadings(tx: Queryable, projectId: string): Promise<RepairAction> {
  await lockWorkspace(tx, projectId);
  const readers = await settleSnapshotReadings(tx, projectId);
  if (readers.length === 0) return { fix: 'forget-missing', subject: projectId, outcome: 'unchanged', changes: [], reason: 'undone meanwhile' };
  return {
    fix: 'forget-missing',
    subject: projectId,
    outcome: 'changed',
    changes: readers.map((reader) => `undid the reading of a snapshot by ${reader}, left by a fork that stopped: its grants and role dropped, the snapshot's routines as they were`),
  };
}

async function forgetRole(tx: Queryable, role: string, orphanIds: (q: Queryable) => Promise<string[]>): Promise<RepairAction> {
  const database = await lifecycle.currentDatabase(tx);
  const projectId = projectIdOfSchema(SCHEMA_PREFIX + role.slice(rolePrefixFor(database).length));
  if (projectId !== undefined && roleNameFor(database, projectId) === role) await lockWorkspace(tx, projectId);
  if (!(await rolesWithoutWorkspace(tx, await orphanIds(tx))).includes(role)) {
    return { fix: 'forget-missing', subject: role, outcome: 'unchanged', changes: [], reason: 'a workspace goes with it again (or it is gone)' };
  }
  await tx.exec(dropRoleSql(role));
  return { fix: 'forget-missing', subject: role, outcome: 'changed', changes: [`dropped role ${role}, which no workspace goes with, and what it owned`] };
}

/**
 * Registers an orphan schema as a workspace, when it is one: every table the workspace DDL and
 * migrations make must be there with every column they make, of the same type and nullability
 * (compared with a fresh workspace built in a rolled-back savepoint). Extra tables and columns
 * are allowed, since agents add their own with `execute`. A schema restored from a backup may
 * predate the latest workspace migrations: it is adopted at the migration level it matches
 * (`matchingLevel`), its ledger records the migrations of that level, and `migrate-workspaces`
 * (or the next `ensure_workspace`) applies the rest. It gets its SQL sandbox (role and
 * function) when the server's role may create roles.
 */
async function adoptOrphan(tx: Queryable, plan: InstallPlan, searchPathSchemas: string[], projectId: string): Promise<RepairAction> {
  const schemaName = schemaNameFor(projectId);
  const refused = (reason: string): RepairAction => ({ fix: 'adopt-orphan', subject: projectId, outcome: 'refused', changes: [], reason });
  await lockWorkspace(tx, projectId);
  const now = await lifecycle.workspacePresence(tx, projectId, schemaName);
  if (now.registered || !now.schema_exists) {
    return { ...refused(now.registered ? 'it was registered meanwhile' : 'its schema no longer exists'), outcome: 'unchanged' };
  }
  if (!now.acts_as_owner) {
    return refused(`schema ${schemaName} belongs to role "${now.owner}", which this server's role cannot act as: workspaces must be the server's own.`);
  }
  const level = await matchingLevel(tx, plan.extensions, searchPathSchemas, schemaName);
  if ('differences' in level) {
    return refused(`its tables do not match what the workspace DDL makes: ${level.differences.join('; ')}.`);
  }
  const script = buildWorkspaceScript(schemaName, searchPathSchemas, level.extensions, [], { schemaFiles: false });
  const current = level.pending.length === 0;
  // The one registration path, as ensure_workspace registers. No required columns: the level
  // match above checked the tables, and columns a pending migration adds are not there yet.
  // `fresh`: the ledger is exactly the level's, whatever rows an earlier registration left.
  await registerWorkspace(
    tx,
    {
      projectId,
      schemaName,
      fingerprint: current ? plan.workspaceFingerprint : ADOPTED_BEHIND,
      schemaFingerprint: current ? plan.workspaceSchemaFingerprint : ADOPTED_BEHIND,
    },
    script.migrations,
    '{}',
    true,
  );
  // Told to adopt it: from now on it is the server's, taken back like any workspace it made.
  await markWorkspaceSchema(tx, schemaName, projectId);
  const changes = [`registered schema ${schemaName} as workspace "${projectId}" with ${script.migrations.names.length} ledger row(s)`];
  if (!current) {
    changes.push(`adopted at the level before ${level.pending.join(', ')}, which its tables predate: \`pg-workspace-mcp migrate-workspaces\` applies them`);
  }
  const capability = await readSandboxCapability(tx, searchPathSchemas);
  const role = roleNameFor(capability.database, projectId);
  if (capability.create_role) {
    const exists = await lifecycle.roleExists(tx, role);
    const elsewhere = exists ? await roleUsesElsewhere(tx, role, schemaName, SANDBOX_SCHEMA) : [];
    if (elsewhere.length > 0) return refused(`its role ${role} already serves ${elsewhere.join(', ')}: a workspace role never serves two.`);
    // The workspace's function calls the shared body, which only the SQL tools' first use writes:
    // in a database where they never ran, it is not there yet. Written as they write it, under their lock.
    await tx.query('SELECT pg_catalog.pg_advisory_xact_lock($1, 0)', [SANDBOX_LOCK_CLASS]);
    await tx.exec(sandboxBodyScript());
    await tx.exec(principalScript({ schemaName, roleName: role, searchPath: searchPathSchemas }, !exists, capability.role));
    await recordWorkspaceRole(tx, projectId, role);
    changes.push(`${exists ? 'gave its existing role' : 'made its role'} ${role} its objects and SQL sandbox`);
  } else {
    changes.push(`made no role: "${capability.role}" lacks CREATEROLE (the SQL tools make it on first use once granted)`);
  }
  return { fix: 'adopt-orphan', subject: projectId, outcome: 'changed', changes };
}

/** Each extension with only its first `applied[id]` workspace migrations (and, below the top, no dependent DDL). */
function atLevel(extensions: readonly PreparedExtension[], applied: ReadonlyMap<string, number>): PreparedExtension[] {
  return extensions.map((p) => {
    const count = applied.get(p.extension.id) ?? p.workspace.migrations.length;
    if (count === p.workspace.migrations.length) return p;
    // Indexes and views may name columns a later migration adds; only tables are compared.
    return { ...p, workspace: { ...p.workspace, migrations: p.workspace.migrations.slice(0, count), dependent: [] } };
  });
}

type Level = { extensions: PreparedExtension[]; pending: string[] } | { differences: string[] };

/**
 * The highest workspace migration level whose tables the orphan has. Extensions never change
 * each other's tables, so each one's level is found on its own (the others at none of their
 * migrations, which a schema at any level has), from all of its migrations down; the levels
 * together are then checked once more. None: the differences from the current level, for the
 * refusal.
 */
async function matchingLevel(tx: Queryable, extensions: readonly PreparedExtension[], searchPathSchemas: string[], schemaName: string): Promise<Level> {
  const differences = (applied: ReadonlyMap<string, number>) =>
    compareWithWorkspaceAt(tx, atLevel(extensions, applied), searchPathSchemas, schemaName);
  const current = await differences(new Map());
  if (current.length === 0) return { extensions: [...extensions], pending: [] };
  const none = new Map(extensions.map((p) => [p.extension.id, 0]));
  if ((await differences(none)).length > 0) return { differences: current };
  const found = new Map<string, number>();
  for (const p of extensions) {
    let count = p.workspace.migrations.length;
    while (count > 0 && (await differences(new Map([...none, [p.extension.id, count]]))).length > 0) count--;
    found.set(p.extension.id, count);
  }
  if ((await differences(found)).length > 0) return { differences: current };
  const pending = extensions.flatMap((p) => p.workspace.migrations.slice(found.get(p.extension.id)).map((m) => `${p.extension.id}/${m.migration.name}`));
  return { extensions: atLevel(extensions, found), pending };
}

/** What the orphan lacks of a fresh workspace's tables at this level, one phrase per difference. */
async function compareWithWorkspaceAt(tx: Queryable, extensions: readonly PreparedExtension[], searchPathSchemas: string[], schemaName: string): Promise<string[]> {
  const script = buildWorkspaceScript(REFERENCE_SCHEMA, searchPathSchemas, extensions, [], { schemaFiles: true });
  await tx.query('SAVEPOINT adoption_reference');
  let reference: registry.ColumnSignature[];
  try {
    await tx.exec(script.sql);
    reference = await registry.tableColumns(tx, REFERENCE_SCHEMA);
  } finally {
    // Also undoes the script's SET LOCAL search_path.
    await tx.query('ROLLBACK TO SAVEPOINT adoption_reference');
  }
  const actual = await registry.tableColumns(tx, schemaName);
  const differences: string[] = [];
  for (const table of [...new Set(reference.map((c) => c.table_name))]) {
    const has = actual.filter((c) => c.table_name === table);
    if (has.length === 0) {
      differences.push(`table ${table} is missing`);
      continue;
    }
    for (const want of reference.filter((c) => c.table_name === table)) {
      const got = has.find((c) => c.column_name === want.column_name);
      if (!got) differences.push(`${table}.${want.column_name} is missing`);
      else if (got.type_oid !== want.type_oid || got.typmod !== want.typmod) differences.push(`${table}.${want.column_name} is ${got.type}, not ${want.type}`);
      else if (got.not_null !== want.not_null) differences.push(`${table}.${want.column_name} is ${got.not_null ? 'NOT NULL' : 'nullable'}, not ${want.not_null ? 'NOT NULL' : 'nullable'}`);
    }
  }
  return differences;
}

/** What a repair did, for a person: one line per fix, then what it changed. */
export function formatRepair(actions: readonly RepairAction[], dryRun: boolean): string {
  if (actions.length === 0) return 'Nothing to repair for the fixes asked for.\n';
  const verb = { 'adopt-orphan': 'adopt', 'forget-missing': 'forget', 'restore-indexes': 'restore the deferred indexes of', 'accept-migration': 'accept' } as const;
  const lines = actions.map((a) => {
    const not = { refused: 'not', failed: 'failed to', unchanged: 'nothing to' } as const;
    const head =
      a.outcome === 'changed' ? `${dryRun ? 'would ' : ''}${verb[a.fix]} ${a.subject}` : `${not[a.outcome]} ${verb[a.fix]} ${a.subject}: ${a.reason ?? ''}`;
    return [head, ...a.changes.map((c) => `  ${c}`)].join('\n');
  });
  return `${dryRun ? 'Dry run (every change rolled back):\n' : ''}${lines.join('\n')}\n`;
}
