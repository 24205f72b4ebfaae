import type { Database, LockHolder, Queryable } from '../db/database.js';
import { capabilityProblems, readSandboxCapability } from '../sandbox/sandbox-capability.js';
import { quoteIdent } from '../db/identifiers.js';
import { privilegeFacts, registryOwnerGrants } from '../db/privilege-advice.js';
import { INSTALL_LOCK_KEY } from '../installer/install-lock.js';
import type { InstallPlan } from '../installer/install-plan.js';
import { describeSpace, pinnedSpaceOf } from '../embeddings/embedding-spaces.js';
import { expiredDeferrals } from '../registry/deferred-index-sql.js';
import { columnsBeingReembedded } from '../registry/embedding-space-sql.js';
import * as lifecycle from '../registry/lifecycle-queries.js';
import * as registry from '../registry/operations-queries.js';
import { roleNameFor, rolePrefixFor, SANDBOX_SCHEMA, snapshotCopierNameFor, snapshotRoleNameFor } from '../sandbox/sandbox-ddl.js';
import { projectIdOfSchema, ReservedSchemas, SNAPSHOT_SCHEMA_INFIX } from '../workspaces/project-id.js';
import { FleetStatusReader, type FleetStatus } from '../workspaces/workspace-fleet.js';
import { spreadingAdvice } from './spreading-advice.js';

/**
 * The finding codes of `doctor --json`: stable, so scripts may match on them. Each finding
 * carries a message, the fix, and details whose keys are stable per code.
 */
export const FINDING_CODES = [
  'not-installed',
  'install-outdated',
  'migration-drift',
  'workspace-migration-drift',
  'migration-file-missing',
  'workspaces-lagging',
  'lost-schema',
  'orphan-schema',
  'orphan-role',
  'shared-role',
  'pg-extension-missing',
  'install-lock-held',
  'privilege-missing',
  'reembed-unfinished',
  'snapshot-leftover',
  'snapshot-reading-stopped',
  'index-deferred',
  'autovacuum-agent-code',
  'move-agent-code',
  'worker-autovacuum-code',
  'many-workspaces',
  'member-database-gone',
] as const;

export type FindingCode = (typeof FINDING_CODES)[number];

/** `info` findings are reported but leave the database healthy (exit code 0). */
export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  code: FindingCode;
  severity: Severity;
  message: string;
  fix: string;
  details: Record<string, unknown>;
}

/** Doctor's report, as `doctor --json` prints it (snake_case, like the tools' results). */
export interface DoctorReport {
  healthy: boolean;
  database: string;
  install: {
    installed: boolean;
    up_to_date: boolean;
    database_fingerprint: string | null;
    files_fingerprint: string;
    installed_at: string | null;
    /** Extension versions as installed and as on disk (null where one side lacks it). */
    extensions: { id: string; installed: string | null; files: string | null }[];
  };
  /** What workspace_status reports for the fleet; null before the first install. */
  fleet: { workspaces: number; up_to_date: number; lagging: number; pending: FleetStatus['pending'] } | null;
  install_lock: { held: boolean; holders: LockHolder[] };
  findings: Finding[];
}

/** Lagging workspaces listed in a report's details, and named in its message (all are counted). */
export const LAGGING_LISTED = 100;
const LAGGING_NAMED = 5;

const MIGRATE = 'pg-workspace-mcp migrate-workspaces';

export interface DiagnoseOptions {
  /** DATABASE_URL's own database on PostgreSQL (not a member database): crowded, doctor suggests spreading its workspaces. */
  home?: boolean;
}

/**
 * One read-only look at the database against the extension files: every query runs in one
 * READ ONLY transaction (PostgreSQL refuses any write in it) at one snapshot, so the findings
 * agree with each other. The install lock's holders are read beside it (pg_locks, or the lock
 * file of the embedded store).
 */
export async function diagnose(db: Database, plan: InstallPlan, options: DiagnoseOptions = {}): Promise<DoctorReport> {
  const holders = await db.lockHolders(INSTALL_LOCK_KEY);
  const report = await db.transaction(async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    return inspect(tx, plan, db.description, options);
  });
  if (holders.length > 0) {
    report.install_lock = { held: true, holders };
    report.findings.push({
      code: 'install-lock-held',
      severity: 'warning',
      message: `The install lock is held by ${holders.map(describeHolder).join(', ')}.`,
      fix:
        'A server is installing extension schemas: let it finish. If the holder is stuck, end it: on ' +
        'PostgreSQL SELECT pg_terminate_backend(<pid>); on the embedded store, stop that process.',
      details: { holders },
    });
  }
  report.healthy = report.findings.every((f) => f.severity === 'info');
  return report;
}

async function inspect(tx: Queryable, plan: InstallPlan, database: string, options: DiagnoseOptions): Promise<DoctorReport> {
  const findings: Finding[] = [];
  const presence = await registry.registryPresence(tx);
  const state = presence.registry ? await registry.installState(tx) : undefined;
  const installedVersions = new Map((state?.extensions ?? []).map((e) => [e.id, e.version]));
  const fileVersions = new Map(plan.extensions.map((p) => [p.extension.id, p.extension.version]));
  const report: DoctorReport = {
    healthy: false,
    database,
    install: {
      installed: state !== undefined,
      up_to_date: state?.fingerprint === plan.fingerprint,
      database_fingerprint: state?.fingerprint ?? null,
      files_fingerprint: plan.fingerprint,
      installed_at: state ? new Date(state.installed_at).toISOString() : null,
      extensions: [...new Set([...installedVersions.keys(), ...fileVersions.keys()])].map((id) => ({
        id,
        installed: installedVersions.get(id) ?? null,
        files: fileVersions.get(id) ?? null,
      })),
    },
    fleet: null,
    install_lock: { held: false, holders: [] },
    findings,
  };
  findings.push(...(await pgExtensionFindings(tx, plan)));
  findings.push(...(await privilegeFindings(tx, state?.search_path_schemas ?? [])));
  if (!state) {
    findings.push({
      code: 'not-installed',
      severity: 'error',
      message: presence.registry
        ? 'The registry exists but no install has completed (project_registry.install_state is empty).'
        : 'The extension schemas are not installed in this database (no project_registry schema).',
      fix: `Start a server on this database, or run \`${MIGRATE}\`: either installs them.`,
      details: { registry: presence.registry },
    });
    return report;
  }
  if (state.fingerprint !== plan.fingerprint) {
    const changed = report.install.extensions.filter((e) => e.installed !== e.files).map((e) => `${e.id} ${e.installed ?? '(none)'} -> ${e.files ?? '(disabled)'}`);
    findings.push({
      code: 'install-outdated',
      severity: 'warning',
      message:
        'The extension files differ from what the database last installed' +
        (changed.length > 0 ? ` (${changed.join(', ')}).` : ' (same versions, changed SQL or settings).'),
      fix: `The next server boot installs them, or run \`${MIGRATE}\` now.`,
      details: { database_fingerprint: state.fingerprint, files_fingerprint: plan.fingerprint },
    });
  }
  findings.push(...migrationFindings(plan, await registry.globalLedger(tx), await registry.workspaceLedgerChecksums(tx)));

  const fleetReader = new FleetStatusReader(tx, plan);
  const fleet = await fleetReader.fleetStatus();
  report.fleet = { workspaces: fleet.workspaces, up_to_date: fleet.upToDate, lagging: fleet.lagging, pending: fleet.pending };
  if (fleet.lagging > 0) {
    const lagging = await fleetReader.lagging();
    findings.push({
      code: 'workspaces-lagging',
      severity: 'warning',
      message:
        `${fleet.lagging} of ${fleet.workspaces} workspace(s) lag behind the workspace DDL and migrations ` +
        `(${lagging.slice(0, LAGGING_NAMED).join(', ')}${lagging.length > LAGGING_NAMED ? ', …' : ''})` +
        (fleet.pending.length > 0 ? `; pending: ${fleet.pending.map((p) => `${p.migration} in ${p.workspaces}`).join(', ')}.` : '.'),
      fix: `Each is upgraded on its next ensure_workspace; to upgrade all now: \`${MIGRATE}\`.`,
      details: { count: fleet.lagging, project_ids: lagging.slice(0, LAGGING_LISTED), pending: fleet.pending },
    });
  }
  const spreadable = options.home === true && presence.citus === null;
  const crowded = spreadingAdvice({ workspaces: fleet.workspaces, spreadable, spreading: spreadable && (await registry.recordsMemberDatabases(tx)) });
  if (crowded) findings.push({ code: 'many-workspaces', severity: 'info', ...crowded, details: { workspaces: fleet.workspaces } });

  for (const lost of await registry.lostSchemas(tx)) {
    findings.push({
      code: 'lost-schema',
      severity: 'warning',
      message: `Workspace "${lost.project_id}" is registered but its schema ${lost.schema_name} does not exist (dropped by hand?).`,
      fix:
        `ensure_workspace re-creates it empty; or, if it is gone for good, \`pg-workspace-mcp repair --forget-missing\` ` +
        'deletes its registry and ledger rows and its role.',
      details: { project_id: lost.project_id, schema_name: lost.schema_name },
    });
  }
  const orphans = await orphanSchemas(tx, plan, state.search_path_schemas);
  for (const { projectId, schema: orphan } of orphans) {
    findings.push({
      code: 'orphan-schema',
      severity: 'warning',
      message: `Schema ${orphan.schema_name} (owner ${orphan.owner}, ${orphan.tables} table(s)) is named like the workspace "${projectId}" but is not registered.`,
      fix:
        `\`pg-workspace-mcp repair --adopt-orphans\` registers it if its tables match what the workspace DDL makes ` +
        `(it says why not otherwise); or drop it (DROP SCHEMA ${quoteIdent(orphan.schema_name)} CASCADE) if it is not wanted. ` +
        'Until then ensure_workspace takes it back only if the server made it (its marker: COMMENT ON SCHEMA), running its ' +
        'workspace DDL as the workspace\'s role; a schema the server did not make is refused.',
      details: { project_id: projectId, schema_name: orphan.schema_name, owner: orphan.owner, tables: orphan.tables },
    });
  }
  for (const leftover of await snapshotLeftovers(tx)) {
    findings.push({
      code: 'snapshot-leftover',
      severity: 'warning',
      message:
        `Schema ${leftover.schemaName} is named like snapshot ${leftover.snapshot} of workspace "${leftover.projectId}", but no snapshot is ` +
        'registered for it: left by a snapshot or fork that never finished (on Citus, a process that stopped between its steps).',
      fix: `Drop it (DROP SCHEMA ${quoteIdent(leftover.schemaName)} CASCADE); the workspace's next snapshot of that number drops it too.`,
      details: { project_id: leftover.projectId, schema_name: leftover.schemaName, snapshot: leftover.snapshot },
    });
  }
  for (const reading of (await registry.snapshotReadings(tx)).filter((r) => r.stopped)) {
    findings.push({
      code: 'snapshot-reading-stopped',
      severity: 'warning',
      message:
        `A fork of a snapshot of workspace "${reading.project_id}" stopped between its steps on Citus: its reader role ${reading.reader} may ` +
        "still hold SELECT on the snapshot, and the snapshot's SECURITY DEFINER routines may still be SECURITY INVOKER.",
      fix: '`pg-workspace-mcp repair --forget-missing` undoes it; so does the workspace\'s next snapshot, fork or restore.',
      details: { project_id: reading.project_id, reader: reading.reader },
    });
  }
  for (const moving of await columnsBeingReembedded(tx)) {
    const target = moving.target as NonNullable<typeof moving.target>;
    findings.push({
      code: 'reembed-unfinished',
      severity: 'warning',
      message:
        `Column ${moving.table_name}.${moving.column_name} of workspace "${moving.project_id}" is being re-embedded from ` +
        `${describeSpace(pinnedSpaceOf(moving))} to ${describeSpace(target)} (${moving.reembed_done} of ${moving.reembed_total} rows done); ` +
        'until the move finishes, searches of it are refused.',
      fix: `Run \`pg-workspace-mcp reembed --project ${moving.project_id}\` with the target's settings again: it continues where it stopped.`,
      details: { project_id: moving.project_id, table: moving.table_name, column: moving.column_name, done: Number(moving.reembed_done), total: Number(moving.reembed_total) },
    });
  }
  for (const deferred of await expiredDeferrals(tx)) {
    findings.push({
      code: 'index-deferred',
      severity: 'warning',
      message:
        `Index ${deferred.index_name} of table ${deferred.table_name} in workspace "${deferred.project_id}" was dropped for a load at ` +
        `${deferred.deferred_at} that stopped before creating it again (no running load has renewed it since ${deferred.lease_until}): ` +
        'vector searches of the table are exact, sequential scans, until it is back.',
      fix:
        'The next ingest or search of the workspace creates it again; or run `pg-workspace-mcp repair --restore-indexes`, which ' +
        'says why if its recorded definition is refused.',
      details: { project_id: deferred.project_id, table: deferred.table_name, index: deferred.index_name, deferred_at: deferred.deferred_at, lease_until: deferred.lease_until },
    });
  }
  for (const exposed of await registry.autovacuumCode(tx)) {
    findings.push({
      code: 'autovacuum-agent-code',
      severity: 'warning',
      message:
        `Workspace "${exposed.project_id}" has ${exposed.objects}, using code of its role ${exposed.role_name}: PostgreSQL's autovacuum runs ` +
        'that code in a background worker, with no time limit, where it may hold locks others wait for. Made before the SQL tools refused ' +
        'such objects; the workspace\'s next index, statistics object or range type is refused until they are gone.',
      fix: 'Drop them (DROP INDEX, DROP STATISTICS, DROP TYPE, as the workspace through `execute`); an index can be made again on built-in expressions, or on a generated column.',
      details: { project_id: exposed.project_id, role: exposed.role_name, objects: exposed.objects },
    });
  }
  for (const exposed of presence.citus ? await registry.copyCode(tx) : []) {
    findings.push({
      code: 'move-agent-code',
      severity: 'error',
      message:
        `Workspace "${exposed.project_id}" has ${exposed.objects}, calling its role's own functions or operators or a VOLATILE function: ` +
        "moving the workspace to another Citus worker (citus_schema_move, the rebalancer, citus_drain_node) copies its rows as the " +
        'superuser that moves it, which evaluates them as itself. Made before the SQL tools refused them; the SQL tools refuse the ' +
        "workspace's next constraint or column until they are gone.",
      fix:
        'Do not move the workspace until they are gone. Drop them, as an administrator on the coordinator (dropping evaluates ' +
        'nothing) or as the workspace through `execute`: ALTER TABLE ... DROP CONSTRAINT, ALTER DOMAIN ... DROP CONSTRAINT, ' +
        'ALTER TABLE ... ALTER COLUMN ... DROP EXPRESSION (through `execute` the drop of one may be refused, naming another, ' +
        'for a few seconds after the connection made a constraint). Built-in IMMUTABLE or STABLE functions are fine there.',
      details: { project_id: exposed.project_id, objects: exposed.objects },
    });
  }
  if (presence.citus) {
    const roles = await registry.registeredRoles(tx);
    for (const held of await registry.workerAutovacuumCode(tx)) {
      const owner = roles.find((r) => r.role_name === held.role || r.snapshot_role_name === held.role);
      findings.push({
        code: 'worker-autovacuum-code',
        severity: 'warning',
        message:
          `On Citus ${held.node}, role ${held.role}${owner ? ` (workspace "${owner.project_id}")` : ''} has ${held.objects}: ` +
          "autovacuum there runs that code as the owner, with no time limit, or keeps a worker on the table. Made before the worker's " +
          'guard (pgw_worker_guard), by a function a router query ran there, or an index made on the coordinator before the SQL tools ' +
          'refused them (then autovacuum-agent-code too). The workspace cannot be moved to another worker meanwhile.',
        fix:
          'An index made on the coordinator: drop it there (autovacuum-agent-code). One on the worker only: as a superuser on that worker, ' +
          'SET citus.enable_manual_changes_to_shards = on; then DROP INDEX it, or ALTER TABLE <shard> RESET (<the autovacuum_* settings>).',
        details: { node: held.node, role: held.role, project_id: owner?.project_id ?? null, objects: held.objects },
      });
    }
  }
  for (const role of await rolesWithoutWorkspace(tx, orphans.map((o) => o.projectId))) {
    findings.push({
      code: 'orphan-role',
      severity: 'warning',
      message: `Role ${role} is a workspace role of this database, but no workspace (registered, or an orphan schema) goes with it.`,
      fix: `\`pg-workspace-mcp repair --forget-missing\` drops it (DROP OWNED BY ${quoteIdent(role)}; DROP ROLE ${quoteIdent(role)};).`,
      details: { role },
    });
  }
  for (const shared of await registry.sharedRoles(tx, SANDBOX_SCHEMA)) {
    const places = [...(shared.schemas ?? []).map((s) => `schema ${s}`), ...(shared.databases ?? []).map((d) => `database ${d}`)];
    findings.push({
      code: 'shared-role',
      severity: 'error',
      message:
        `Role ${shared.role_name} serves more than one workspace (${places.join(', ')}): an agent of either can read and change ` +
        'the other\'s objects, and dropping either workspace would drop what the role owns in the other.',
      fix:
        'Make one SQL tool call (query) in either workspace of this database: the workspace whose recorded role it is not ' +
        'gets a role of its own first, with its objects, and the shared role loses its privileges there. A use in another database ' +
        '(a database renamed, and another made under the old name) is that database\'s: drop its workspace there, or the role.',
      details: { role: shared.role_name, schemas: shared.schemas ?? [], databases: shared.databases ?? [] },
    });
  }
  return report;
}

/** A member database the home database records, gone from the PostgreSQL server: the home database's report carries it. */
export function memberDatabaseGone(gone: { name: string; placed: number }): Finding {
  return {
    code: 'member-database-gone',
    severity: 'error',
    message:
      `The member database ${quoteIdent(gone.name)}, where ${gone.placed} project id(s) are placed, is not on the PostgreSQL server: ` +
      'it was dropped, or the server restored from before it was made (or a server placed an id there and stopped before making it).',
    fix:
      'A server makes it again, installed, on the next call to a workspace placed there, which comes back new and empty. To bring ' +
      'its data back instead, stop the servers first and restore the database from its backup under the same name.',
    details: { database: gone.name, placed: gone.placed },
  };
}

/** The `project_*` schemas without a registry row that are named for a project id (reserved ones aside). */
export async function orphanSchemas(q: Queryable, plan: InstallPlan, searchPathSchemas: readonly string[]) {
  const reserved = reservedSchemas(plan, searchPathSchemas);
  return (await registry.unregisteredProjectSchemas(q)).flatMap((schema) => {
    const projectId = projectIdOfSchema(schema.schema_name);
    return projectId === undefined || isReserved(reserved, projectId) ? [] : [{ projectId, schema }];
  });
}

/** Snapshot-named schemas (`project_<id>__snap_<n>`) of a valid id that no snapshot row names. */
async function snapshotLeftovers(q: Queryable): Promise<{ projectId: string; schemaName: string; snapshot: number }[]> {
  return (await registry.unregisteredSnapshotSchemas(q)).flatMap((schemaName) => {
    const at = schemaName.lastIndexOf(SNAPSHOT_SCHEMA_INFIX);
    const projectId = projectIdOfSchema(schemaName.slice(0, at));
    const number = schemaName.slice(at + SNAPSHOT_SCHEMA_INFIX.length);
    return projectId !== undefined && /^[1-9][0-9]*$/.test(number) ? [{ projectId, schemaName, snapshot: Number(number) }] : [];
  });
}

/**
 * This database's workspace roles (pgw_<dbtag>_…) that belong to no registered workspace and to
 * no orphan schema (which an adoption would give its role back): left by a workspace removed by hand.
 */
export async function rolesWithoutWorkspace(q: Queryable, orphanIds: readonly string[]): Promise<string[]> {
  const database = await lifecycle.currentDatabase(q);
  const roles = await registry.rolesStartingWith(q, rolePrefixFor(database));
  if (roles.length === 0) return [];
  const registered = await registry.registeredRoles(q);
  // A registered workspace's snapshots have a role of their own (docs/snapshots.md); on Citus a
  // snapshot's copier still owns it when its process stopped before handing it over (the next
  // snapshot does): dropping that role would drop the snapshot.
  const copiers = (await registry.snapshotSchemaOids(q)).map((s) => snapshotCopierNameFor(database, s.project_id, s.schema_oid));
  // A fork's reader of a snapshot is recorded until it is undone (snapshot-reader.ts; a stopped one is its own finding).
  const readers = (await registry.snapshotReadings(q)).map((r) => r.reader);
  const owned = new Set([
    ...registered.map((w) => w.role_name ?? roleNameFor(database, w.project_id)),
    ...orphanIds.map((id) => roleNameFor(database, id)),
    ...registered.map((w) => w.snapshot_role_name ?? snapshotRoleNameFor(database, w.project_id)),
    ...copiers,
    ...readers,
  ]);
  return roles.filter((role) => !owned.has(role));
}

/** Global and workspace ledger rows against the migration files of the enabled extensions. */
function migrationFindings(plan: InstallPlan, global: registry.LedgerRow[], workspace: registry.WorkspaceLedgerChecksum[]): Finding[] {
  const findings: Finding[] = [];
  const accept = (id: string) =>
    `If the edit is intended and safe (databases that ran the old version do NOT get the change), accept it after review: ` +
    `\`pg-workspace-mcp repair --accept-migration ${id}\`. Otherwise restore the file and put the change in a new migration.`;
  for (const p of plan.extensions) {
    const ext = p.extension.id;
    for (const { migration } of p.migrations) {
      const row = global.find((r) => r.extension_id === ext && r.name === migration.name);
      if (!row || row.checksum === migration.checksum) continue;
      const id = `${ext}/${migration.name}`;
      findings.push({
        code: 'migration-drift',
        severity: 'error',
        message: `Global migration ${id} (${migration.path}) was changed after it was applied: ledger checksum ${row.checksum}, file ${migration.checksum}. Boot refuses to install until this is resolved.`,
        fix: accept(id),
        details: { migration: id, path: migration.path, ledger_checksum: row.checksum, file_checksum: migration.checksum },
      });
    }
    for (const { migration } of p.workspace.migrations) {
      const drifted = workspace.filter((r) => r.extension_id === ext && r.name === migration.name && r.checksum !== migration.checksum);
      if (drifted.length === 0) continue;
      const id = `${ext}/${migration.name}`;
      const count = drifted.reduce((n, r) => n + r.workspaces, 0);
      findings.push({
        code: 'workspace-migration-drift',
        severity: 'error',
        message:
          `Workspace migration ${id} (${migration.path}) was changed after it was applied: ${count} workspace(s) recorded ` +
          `checksum ${drifted.map((r) => r.checksum).join(', ')}, file ${migration.checksum}. Upgrades of those workspaces fail until this is resolved.`,
        fix: accept(id),
        details: { migration: id, path: migration.path, workspaces: count, ledger_checksums: drifted.map((r) => r.checksum), file_checksum: migration.checksum },
      });
    }
  }
  const enabled = new Map(plan.extensions.map((p) => [p.extension.id, p]));
  const missing = (rows: registry.LedgerRow[], kind: 'global' | 'workspace') =>
    [...new Set(rows.map((r) => `${r.extension_id}/${r.name}`))].filter((id) => {
      const [ext, name] = id.split('/') as [string, string];
      const p = enabled.get(ext);
      const files = kind === 'global' ? p?.migrations : p?.workspace.migrations;
      return p !== undefined && !files?.some((m) => m.migration.name === name);
    });
  for (const [kind, ids] of [['global', missing(global, 'global')], ['workspace', missing(workspace, 'workspace')]] as const) {
    for (const id of ids) {
      findings.push({
        code: 'migration-file-missing',
        severity: 'info',
        message: `The ${kind} migration ${id} is in the ledger, but its extension no longer ships the file.`,
        fix: 'Nothing breaks: applied migrations are not re-run. Restore the file if it was removed by mistake.',
        details: { migration: id, scope: kind },
      });
    }
  }
  return findings;
}

async function pgExtensionFindings(tx: Queryable, plan: InstallPlan): Promise<Finding[]> {
  const names = [...plan.pgExtensions.keys()];
  if (names.length === 0) return [];
  return (await registry.pgExtensionStates(tx, names))
    .filter((e) => !e.installed)
    .map((e) => {
      const needers = plan.pgExtensions.get(e.name) ?? [];
      return {
        code: 'pg-extension-missing' as const,
        severity: e.available ? ('warning' as const) : ('error' as const),
        message: e.available
          ? `The PostgreSQL extension "${e.name}" (needed by ${needers.join(', ')}) is available but not created in this database.`
          : `The PostgreSQL extension "${e.name}" (needed by ${needers.join(', ')}) is not available on this server.`,
        fix: e.available
          ? `The install creates it if the role may (else, as an administrator: CREATE EXTENSION ${quoteIdent(e.name)};).`
          : `Install the "${e.name}" package on the server, or disable what needs it (--disable ${needers.join(' --disable ')}).`,
        details: { extension: e.name, available: e.available, needed_by: needers },
      };
    });
}

/** The privileges a server needs (docs/isolation.md) that the role lacks. */
async function privilegeFindings(tx: Queryable, searchPathSchemas: readonly string[]): Promise<Finding[]> {
  const facts = await privilegeFacts(tx, searchPathSchemas);
  const problems = capabilityProblems(await readSandboxCapability(tx, searchPathSchemas, { workers: true }));
  if (!facts) return [];
  const role = quoteIdent(facts.role);
  const lacks: { privilege: string; why: string; grants: string[] }[] = [];
  if (!facts.create_on_database) {
    lacks.push({
      privilege: 'CREATE on database',
      why: `to create the registry schema and a schema per workspace`,
      grants: [`GRANT CREATE ON DATABASE ${quoteIdent(facts.database)} TO ${role};`],
    });
  }
  if (facts.registry_owner !== null && !facts.acts_as_registry_owner) {
    lacks.push({
      privilege: `the rights of the registry owner "${facts.registry_owner}"`,
      why: 'servers sharing a database must act as one owner: installs re-create the registry functions and upgrades alter workspace tables',
      grants: registryOwnerGrants(facts),
    });
  }
  for (const s of facts.schemas.filter((s) => !s.usage)) {
    lacks.push({
      privilege: `USAGE on schema "${s.schema}"`,
      why: 'workspaces find the types of required PostgreSQL extensions there',
      grants: [`GRANT USAGE ON SCHEMA ${quoteIdent(s.schema)} TO ${role};`],
    });
  }
  const findings: Finding[] = lacks.map((l) => ({
    code: 'privilege-missing',
    severity: 'error',
    message: `The role "${facts.role}" lacks ${l.privilege}: ${l.why}.`,
    fix: `As an administrator: ${l.grants.join(' ')}`,
    details: { role: facts.role, privilege: l.privilege, grants: l.grants },
  }));
  // The SQL tools' own check (sandbox-capability.ts): each reason they refuse is a finding here.
  for (const problem of problems) {
    findings.push({
      code: 'privilege-missing',
      severity: 'error',
      message: `${problem.message} query, execute and search_vectors refuse to run until it is fixed.`,
      fix: `As an administrator: ${problem.grants.join(' ')}`,
      details: { role: facts.role, privilege: problem.privilege, grants: problem.grants },
    });
  }
  return findings;
}

/** Schemas named like workspaces that are not: the server's own and those the extensions use. */
export function reservedSchemas(plan: InstallPlan, searchPathSchemas: readonly string[]): ReservedSchemas {
  const reserved = new ReservedSchemas();
  for (const [schema, users] of plan.globalSchemas) reserved.add(schema, `used by the global SQL of ${users.join(', ')}`);
  for (const schema of searchPathSchemas) reserved.add(schema, 'where required PostgreSQL extensions are installed');
  return reserved;
}

export function isReserved(reserved: ReservedSchemas, projectId: string): boolean {
  try {
    reserved.schemaFor(projectId);
    return false;
  } catch {
    return true;
  }
}

function describeHolder(h: LockHolder): string {
  return `pid ${h.pid} (${h.application_name || 'no application_name'}${h.client_addr ? ` from ${h.client_addr}` : ''}, for ${h.held_seconds ?? '?'} s)`;
}

/** The report for a person: a summary, then each finding with its fix. */
export function formatDoctorReport(r: DoctorReport): string {
  const lines = [`Database: ${r.database}`];
  const i = r.install;
  lines.push(
    !i.installed
      ? 'Install: not installed'
      : `Install: ${i.up_to_date ? 'up to date' : 'outdated'} (fingerprint ${short(i.database_fingerprint)}` +
          `${i.up_to_date ? '' : `, files ${short(i.files_fingerprint)}`}, installed ${i.installed_at})`,
  );
  if (r.fleet) lines.push(`Workspaces: ${r.fleet.workspaces} (${r.fleet.up_to_date} up to date, ${r.fleet.lagging} lagging)`);
  lines.push(`Install lock: ${r.install_lock.held ? `held by ${r.install_lock.holders.map(describeHolder).join(', ')}` : 'free'}`);
  const counted = r.findings.filter((f) => f.severity !== 'info');
  lines.push('');
  lines.push(counted.length === 0 ? 'Healthy: no findings.' : `${counted.length} finding(s):`);
  for (const f of [...counted, ...r.findings.filter((f) => f.severity === 'info')]) {
    lines.push(`  [${f.severity}] ${f.code}: ${f.message}`, `    fix: ${f.fix}`);
  }
  return `${lines.join('\n')}\n`;
}

const short = (fingerprint: string | null) => (fingerprint ? fingerprint.slice(0, 12) : '-');
