import type { Queryable } from '../db/database.js';
import { sqlState } from '../db/sql-errors.js';
import { WORKSPACE_LOCK_CLASS, WORKSPACE_LOCK_TIMEOUT_MS, workspaceLockTimeout } from './workspace-lock.js';

/*
 * Every statement the engine sends to the workspace registry (core's `project_registry`
 * schema, extensions/core/schema.sql), named by what it does: callers never hold registry SQL.
 * A registry column is this file, the DDL and a migration.
 */

/** The registry's tables, for maintenance (the bench's VACUUM). */
export const REGISTRY_TABLES = ['project_registry.workspace_config', 'project_registry.workspace_migrations'] as const;

/**
 * Takes the workspace's lock to the end of the transaction (core's lock_workspace()), waiting at
 * most `timeoutMs`: serializes everything that changes one workspace (provisioning, its SQL principal).
 */
export async function lockWorkspace(tx: Queryable, projectId: string, timeoutMs = WORKSPACE_LOCK_TIMEOUT_MS): Promise<void> {
  try {
    await tx.query('SELECT project_registry.lock_workspace($1, $2, $3)', [projectId, WORKSPACE_LOCK_CLASS, timeoutMs]);
  } catch (error) {
    throw workspaceLockTimeout(error, projectId, timeoutMs) ?? error;
  }
}

/**
 * A workspace as the registry knows it. The lookup stays a primary-key probe plus an index
 * probe of pg_namespace: a registered workspace whose schema was dropped by hand is re-created,
 * not reported as existing.
 */
export interface RegisteredWorkspace {
  created_at: Date;
  workspace_fingerprint: string;
  workspace_schema_fingerprint: string | null;
  schema_exists: boolean;
}

export async function lookupWorkspace(q: Queryable, projectId: string): Promise<RegisteredWorkspace | undefined> {
  const [row] = await q.query<RegisteredWorkspace>(
    `SELECT w.created_at, w.workspace_fingerprint, w.workspace_schema_fingerprint,
            EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = w.schema_name) AS schema_exists
       FROM project_registry.workspace_config w WHERE w.project_id = $1`,
    [projectId],
  );
  return row;
}

/**
 * The registry's generation (core's registry_generation), as text: every transaction that
 * removes or renames a workspace bumps it, so a cached "this workspace exists" read before the
 * value last changed may be stale. One row, one primary-key read: a workspace cache hit's cost.
 */
export async function registryGeneration(q: Queryable): Promise<string> {
  const [row] = await q.query<{ generation: string }>('SELECT generation::text AS generation FROM project_registry.registry_generation');
  return row?.generation ?? '0';
}

/** The generation as text; no row is 0 (the first bump inserts it). */
const GENERATION = "coalesce((SELECT generation FROM project_registry.registry_generation), 0)::text";

/**
 * lookupWorkspace, with the registry's generation read in the same statement (one snapshot): a
 * workspace found (or made) after this read was current at `generation` at least. `placed`: the
 * id has a placement here, in another database (databases/placements.ts; none in a member database).
 */
export async function lookupWorkspaceWithGeneration(
  q: Queryable,
  projectId: string,
): Promise<{ generation: string; row: RegisteredWorkspace | undefined; placed: boolean }> {
  const [found] = await q.query<RegisteredWorkspace & { generation: string; registered: boolean; placed: boolean }>(
    `SELECT ${GENERATION} AS generation, w.project_id IS NOT NULL AS registered,
            w.created_at, w.workspace_fingerprint, w.workspace_schema_fingerprint,
            EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = w.schema_name) AS schema_exists,
            EXISTS (SELECT 1 FROM project_registry.workspace_placements p WHERE p.project_id = $1) AS placed
       FROM (VALUES (1)) AS one
       LEFT JOIN project_registry.workspace_config w ON w.project_id = $1`,
    [projectId],
  );
  if (!found) throw new Error(`the lookup of workspace ${projectId} returned no row`);
  const { generation, registered, placed, ...row } = found;
  return { generation, row: registered ? row : undefined, placed };
}

/**
 * Bumps the registry's generation, in the transaction that removes or renames a workspace: other
 * processes see the new value once it commits, together with the change. Called last, since the
 * row lock it takes serializes such transactions until they commit.
 */
export async function bumpRegistryGeneration(tx: Queryable): Promise<void> {
  await tx.query(
    `INSERT INTO project_registry.registry_generation AS g (singleton, generation) VALUES (true, 1)
     ON CONFLICT (singleton) DO UPDATE SET generation = g.generation + 1`,
  );
}

/** A registered project, as an SQL condition on parameter `$1` (the project id) for statements that ask more. */
export const IS_REGISTERED = 'EXISTS (SELECT 1 FROM project_registry.workspace_config w WHERE w.project_id = $1)';

/** Whether a schema is a registered workspace's. */
export async function isWorkspaceSchema(q: Queryable, schemaName: string): Promise<boolean> {
  const rows = await q.query('SELECT 1 FROM project_registry.workspace_config WHERE schema_name = $1', [schemaName]);
  return rows.length > 0;
}

export interface AppliedMigration {
  extension_id: string;
  name: string;
  checksum: string;
}

/** Ledger rows, in columns for one `unnest` insert. */
export interface LedgerRows {
  extensionIds: string[];
  names: string[];
  checksums: string[];
}

export async function appliedWorkspaceMigrations(q: Queryable, projectId: string): Promise<AppliedMigration[]> {
  return q.query<AppliedMigration>('SELECT extension_id, name, checksum FROM project_registry.workspace_migrations WHERE project_id = $1', [
    projectId,
  ]);
}

export interface Registration {
  projectId: string;
  schemaName: string;
  fingerprint: string;
  schemaFingerprint: string | null;
}

/**
 * Registers (or re-fingerprints) a workspace whose script has just run, or a schema `repair`
 * adopts, in the caller's transaction under its lock (core's register_workspace(): required
 * columns, registry row, ledger rows): the one registration path. `fresh` replaces the ledger
 * (a schema that was dropped, or adopted). Its creation time.
 */
export async function registerWorkspace(q: Queryable, r: Registration, ledger: LedgerRows, required: string, fresh: boolean): Promise<Date> {
  const [row] = await q.query<{ created_at: Date }>(
    'SELECT project_registry.register_workspace($1, $2, $3, $4, $5, $6, $7, $8, $9) AS created_at',
    [r.projectId, r.schemaName, r.fingerprint, r.schemaFingerprint, ledger.extensionIds, ledger.names, ledger.checksums, required, fresh],
  );
  if (!row) throw new Error(`register_workspace for ${r.projectId} returned no row`);
  return row.created_at;
}

/** register_workspace()'s SQLSTATE for required columns missing after the script ran. */
export const MISSING_COLUMNS = 'PW001';

/** create_workspace()'s SQLSTATE for an id placed in a member database since the engine looked it up. */
export const PLACED_ELSEWHERE = 'PW003';

export interface CreatedWorkspace {
  created: boolean;
  registered_at: Date;
  registered_fingerprint: string;
}

/**
 * A new workspace in one round trip: core's create_workspace() is lockWorkspace, a re-check,
 * the script and registerWorkspace in the statement's own transaction. Registered meanwhile by
 * a concurrent creator, it returns that registration (`created` false).
 */
export async function createWorkspace(
  q: Queryable,
  r: Registration,
  script: string,
  ledger: LedgerRows,
  required: string,
  lockTimeoutMs = WORKSPACE_LOCK_TIMEOUT_MS,
): Promise<CreatedWorkspace> {
  let row: CreatedWorkspace | undefined;
  try {
    [row] = await q.query<CreatedWorkspace>(
      `SELECT created, registered_at, registered_fingerprint
         FROM project_registry.create_workspace($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [
        r.projectId,
        r.schemaName,
        WORKSPACE_LOCK_CLASS,
        lockTimeoutMs,
        r.fingerprint,
        r.schemaFingerprint,
        script,
        ledger.extensionIds,
        ledger.names,
        ledger.checksums,
        required,
      ],
    );
  } catch (error) {
    throw workspaceLockTimeout(error, r.projectId, lockTimeoutMs) ?? error;
  }
  if (!row) throw new Error(`create_workspace for ${r.projectId} returned no row`);
  return row;
}

export interface WorkspaceRow {
  project_id: string;
  schema_name: string;
  created_at: Date;
}

/**
 * One keyset page over the registry's primary key, ids after `after` starting with `prefix`
 * (and among `only`, when given): ids are [a-z0-9-] in byte order (the column is COLLATE "C"),
 * and '~' sorts after all of them.
 */
export async function listWorkspaces(
  q: Queryable,
  after: string,
  prefix: string,
  limit: number,
  only?: readonly string[],
): Promise<WorkspaceRow[]> {
  return q.query<WorkspaceRow>(
    `SELECT project_id, schema_name, created_at
       FROM project_registry.workspace_config
      WHERE project_id > $1 AND project_id >= $2 AND project_id < $3
        AND ($5::text[] IS NULL OR project_id = ANY ($5::text[]))
      ORDER BY project_id
      LIMIT $4`,
    [after, prefix, `${prefix}~`, limit, only ? [...only] : null],
  );
}

/**
 * Workspaces whose fingerprint is not `fingerprint`: one index scan, written as two range
 * predicates so that "not equal" is still an index scan.
 */
export async function laggingWorkspaces(q: Queryable, fingerprint: string): Promise<string[]> {
  const rows = await q.query<{ project_id: string }>(
    `SELECT project_id FROM project_registry.workspace_config
      WHERE workspace_fingerprint < $1 OR workspace_fingerprint > $1
      ORDER BY project_id`,
    [fingerprint],
  );
  return rows.map((r) => r.project_id);
}

/** Applied workspace migrations (`extension/name`) of each of `projectIds`. */
export async function appliedMigrationsOf(q: Queryable, projectIds: readonly string[]): Promise<Map<string, Set<string>>> {
  const rows = await q.query<{ project_id: string; migration: string }>(
    `SELECT project_id, extension_id || '/' || name AS migration
       FROM project_registry.workspace_migrations WHERE project_id = ANY ($1::text[])`,
    [projectIds],
  );
  const applied = new Map<string, Set<string>>();
  for (const r of rows) applied.set(r.project_id, (applied.get(r.project_id) ?? new Set()).add(r.migration));
  return applied;
}

/** One workspace's registry row with its applied migrations (`extension/name`, sorted). */
export async function workspaceWithLedger(
  q: Queryable,
  projectId: string,
): Promise<{ schema_name: string; workspace_fingerprint: string; applied: string[] } | undefined> {
  const [row] = await q.query<{ schema_name: string; workspace_fingerprint: string; applied: string[] }>(
    `SELECT w.schema_name, w.workspace_fingerprint,
            ARRAY(SELECT m.extension_id || '/' || m.name FROM project_registry.workspace_migrations m
                   WHERE m.project_id = w.project_id ORDER BY 1) AS applied
       FROM project_registry.workspace_config w WHERE w.project_id = $1`,
    [projectId],
  );
  return row;
}

/** How many workspaces there are, how many hold `fingerprint`, and how many hold each applied migration. */
export async function fleetCounts(
  q: Queryable,
  fingerprint: string,
): Promise<{ total: number; current: number; applied: Map<string, number> }> {
  // One round trip: the fleet's workspace_status sends this to every database workspaces are spread over.
  const [counts] = await q.query<{ total: number; current: number; applied: [string, number][] }>(
    `SELECT c.total, c.current,
            (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(m.migration, m.n)), '[]')
               FROM (SELECT extension_id || '/' || name AS migration, count(*)::int AS n
                       FROM project_registry.workspace_migrations GROUP BY 1) m) AS applied
       FROM (SELECT count(*)::int AS total, count(*) FILTER (WHERE workspace_fingerprint = $1)::int AS current
               FROM project_registry.workspace_config) c`,
    [fingerprint],
  );
  return { total: counts?.total ?? 0, current: counts?.current ?? 0, applied: new Map(counts?.applied ?? []) };
}

/** Registered workspaces without a function in `sandboxSchema` named for their schema. */
export async function workspacesWithoutSandbox(q: Queryable, sandboxSchema: string): Promise<string[]> {
  const rows = await q.query<{ project_id: string }>(
    `SELECT w.project_id FROM project_registry.workspace_config w
      WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_proc p
                         WHERE p.pronamespace = pg_catalog.to_regnamespace($1) AND p.proname = w.schema_name)
      ORDER BY 1`,
    [sandboxSchema],
  );
  return rows.map((r) => r.project_id);
}

/**
 * The relations of a registered workspace's schema (core's describe_relations()), in one
 * statement with the registry check, so a workspace being created meanwhile is seen whole or
 * not at all. `relations` is null when the schema does not exist.
 */
export async function describeRegistered<R>(
  q: Queryable,
  projectId: string,
  schemaName: string,
  table: string | null,
): Promise<{ registered: boolean; relations: R[] | null }> {
  const [row] = await q.query<{ registered: boolean; relations: R[] | null }>(
    `SELECT ${IS_REGISTERED} AS registered, project_registry.describe_relations($2, $3) AS relations`,
    [projectId, schemaName, table],
  );
  return row ?? { registered: false, relations: null };
}

export interface ColumnCheck {
  tableExists: boolean;
  present: string[];
  missing: string[];
}

/**
 * Which of `columns` exist on `schema.table`, by core's project_registry.table_columns(): index
 * probes of pg_namespace, pg_class and pg_attribute (never a scan of information_schema) whose
 * plans each session caches. Core's schema is installed before anything asks. Whether the schema
 * exists comes from the same statement, so both answers read one snapshot: a workspace being
 * created meanwhile is seen whole or not at all.
 */
export async function checkColumns(
  q: Queryable,
  schema: string,
  table: string,
  columns: readonly string[],
): Promise<ColumnCheck & { schemaExists: boolean }> {
  const [row] = await q.query<{ present: string[] | null; schema_exists: boolean }>(
    `SELECT project_registry.table_columns($1, $2, $3) AS present,
            EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1) AS schema_exists`,
    [schema, table, columns],
  );
  const schemaExists = row?.schema_exists ?? false;
  if (!row?.present) return { schemaExists, tableExists: false, present: [], missing: [...columns] };
  const found = new Set(row.present);
  const present = columns.filter((c) => found.has(c));
  return { schemaExists, tableExists: true, present, missing: columns.filter((c) => !found.has(c)) };
}

/** How many workspaces are registered. */
export async function countWorkspaces(q: Queryable): Promise<number> {
  const [row] = await q.query<{ n: number }>('SELECT count(*)::int AS n FROM project_registry.workspace_config');
  return row?.n ?? 0;
}

/**
 * A registry row alone, no ledger, kept if one exists: the bench's Python-seed-style baseline
 * registers this way, after running the DDL itself.
 */
export async function registerBare(q: Queryable, projectId: string, schemaName: string, fingerprint: string): Promise<void> {
  await q.query(
    `INSERT INTO project_registry.workspace_config (project_id, schema_name, workspace_fingerprint)
     VALUES ($1, $2, $3) ON CONFLICT (project_id) DO NOTHING`,
    [projectId, schemaName, fingerprint],
  );
}

// The installer's bookkeeping: the global migration ledger and the install state.

export interface InstallState {
  fingerprint: string;
  searchPathSchemas: string[];
  citus: string | null;
}

/** What the last completed install recorded (and the Citus version, asked in the same query), or undefined before any. */
export async function readInstallState(q: Queryable): Promise<InstallState | undefined> {
  try {
    const [row] = await q.query<{ fingerprint: string; search_path_schemas: string[]; citus: string | null }>(
      `SELECT fingerprint, search_path_schemas,
              (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'citus') AS citus
         FROM project_registry.install_state`,
    );
    return row && { fingerprint: row.fingerprint, searchPathSchemas: row.search_path_schemas, citus: row.citus };
  } catch (error) {
    if (sqlState(error) === '42P01') return undefined; // never installed
    throw error;
  }
}

/** Records a completed install; the schemas of the PostgreSQL extensions `pgExtensions` live in. */
export async function recordInstallState(
  tx: Queryable,
  fingerprint: string,
  pgExtensions: readonly string[],
  extensions: readonly { id: string; version: string }[],
): Promise<string[]> {
  const [row] = await tx.query<{ schemas: string[] }>(
    `SELECT coalesce(array_agg(DISTINCT n.nspname::text), '{}') AS schemas
       FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
      WHERE e.extname = ANY ($1::text[])`,
    [pgExtensions],
  );
  const schemas = row?.schemas ?? [];
  await tx.query(
    `INSERT INTO project_registry.install_state (fingerprint, search_path_schemas, extensions, installed_at)
     VALUES ($1, $2, $3, now())
     ON CONFLICT (singleton) DO UPDATE
       SET fingerprint = excluded.fingerprint, search_path_schemas = excluded.search_path_schemas,
           extensions = excluded.extensions, installed_at = excluded.installed_at`,
    [fingerprint, schemas, JSON.stringify(extensions)],
  );
  return schemas;
}

/** Every global migration applied, or none before the first install. */
export async function appliedGlobalMigrations(q: Queryable, extensionId?: string): Promise<AppliedMigration[]> {
  try {
    return await q.query<AppliedMigration>(
      'SELECT extension_id, name, checksum FROM project_registry.schema_migrations WHERE $1::text IS NULL OR extension_id = $1',
      [extensionId ?? null],
    );
  } catch (error) {
    if (sqlState(error) === '42P01') return [];
    throw error;
  }
}

/**
 * Claims a global migration by writing its ledger row first: a concurrent installer blocks on
 * it and then finds it claimed (false).
 */
export async function claimGlobalMigration(tx: Queryable, extensionId: string, m: { name: string; checksum: string }): Promise<boolean> {
  const claimed = await tx.query(
    `INSERT INTO project_registry.schema_migrations (extension_id, name, checksum)
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1`,
    [extensionId, m.name, m.checksum],
  );
  return claimed.length > 0;
}

// Workspace roles (src/sandbox/workspace-role.ts): recorded in the registry, one workspace each.

/**
 * The schema a pg_shdepend row `d` of this database is about (a column `nspname`): the schema
 * itself, the workspace schema a sandbox function (in `sandboxSchema`, an SQL expression) is
 * named for, or the schema of the object. Shared by the check a role passes before it serves a
 * workspace and by doctor's shared-role finding.
 */
export const dependencySchema = (sandboxSchema: string) => `
         SELECT CASE WHEN d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                     THEN (SELECT n.nspname::text FROM pg_catalog.pg_namespace n WHERE n.oid = d.objid)
                     WHEN d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                          AND (SELECT p.pronamespace FROM pg_catalog.pg_proc p WHERE p.oid = d.objid) = pg_catalog.to_regnamespace(${sandboxSchema})
                     THEN (SELECT p.proname::text FROM pg_catalog.pg_proc p WHERE p.oid = d.objid)
                     ELSE (pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid)).schema END AS nspname`;

/** The role recorded for a workspace; undefined when none is (or the workspace is not registered). */
export async function recordedWorkspaceRole(q: Queryable, projectId: string): Promise<string | undefined> {
  const [row] = await q.query<{ role_name: string | null }>('SELECT role_name FROM project_registry.workspace_config WHERE project_id = $1', [projectId]);
  return row?.role_name ?? undefined;
}

/** The registered workspace whose recorded role is `roleName`, if any. */
export async function workspaceOfRole(q: Queryable, roleName: string): Promise<string | undefined> {
  const [row] = await q.query<{ project_id: string }>('SELECT project_id FROM project_registry.workspace_config WHERE role_name = $1', [roleName]);
  return row?.project_id;
}

/**
 * Records `roleName` as a registered workspace's role unless it has one; in the caller's
 * transaction under the workspace's lock. A role recorded for another workspace is a unique
 * violation (23505), raised.
 */
export async function recordWorkspaceRole(tx: Queryable, projectId: string, roleName: string): Promise<void> {
  await tx.query('UPDATE project_registry.workspace_config SET role_name = $2 WHERE project_id = $1 AND role_name IS NULL', [projectId, roleName]);
}

/** The snapshot role recorded for a workspace; undefined when none is. */
export async function recordedSnapshotRole(q: Queryable, projectId: string): Promise<string | undefined> {
  const [row] = await q.query<{ name: string | null }>('SELECT snapshot_role_name AS name FROM project_registry.workspace_config WHERE project_id = $1', [
    projectId,
  ]);
  return row?.name ?? undefined;
}

/** Records (or with null clears) a workspace's snapshot role: when made, and when a rename renames it. */
export async function setSnapshotRole(tx: Queryable, projectId: string, roleName: string | null): Promise<void> {
  await tx.query('UPDATE project_registry.workspace_config SET snapshot_role_name = $2 WHERE project_id = $1', [projectId, roleName]);
}

/** Sets (or with null clears) a workspace's recorded role: a rename renames its role too. */
export async function setWorkspaceRole(tx: Queryable, projectId: string, roleName: string | null): Promise<void> {
  await tx.query('UPDATE project_registry.workspace_config SET role_name = $2 WHERE project_id = $1', [projectId, roleName]);
}

/**
 * Where a role owns something or holds a privilege outside one workspace (its schema, what is in
 * it, and its sandbox function named for it), read from pg_shdepend, which records both for every
 * database of the cluster: one phrase per place, empty when it serves nothing else. Its large
 * objects have no schema and count as its workspace's.
 */
export async function roleUsesElsewhere(q: Queryable, roleName: string, schemaName: string, sandboxSchema: string): Promise<string[]> {
  const rows = await q.query<{ place: string }>(
    `SELECT DISTINCT CASE WHEN d.dbid = 0 THEN 'shared object ' || pg_catalog.pg_describe_object(d.classid, d.objid, 0)
                          WHEN d.dbid <> me.oid THEN 'database ' || coalesce(db.datname::text, d.dbid::text)
                          ELSE coalesce('schema ' || s.nspname, pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)) END AS place
       FROM pg_catalog.pg_roles r
       JOIN pg_catalog.pg_shdepend d ON d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND d.refobjid = r.oid
      CROSS JOIN (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) me
       LEFT JOIN pg_catalog.pg_database db ON db.oid = d.dbid
       LEFT JOIN LATERAL (
${dependencySchema('$3')}
          WHERE d.dbid = me.oid) s ON true
      WHERE r.rolname = $1
        AND (d.dbid <> me.oid OR (s.nspname IS DISTINCT FROM $2 AND d.classid <> 'pg_catalog.pg_largeobject'::pg_catalog.regclass))
      ORDER BY 1`,
    [roleName, schemaName, sandboxSchema],
  );
  return rows.map((r) => r.place);
}

// Workspace schemas the server made carry its marker (core's workspace_marker()).

/** Whether a schema exists, and whether it carries the marker the server writes on the schema of `projectId`. */
export async function workspaceSchemaState(q: Queryable, schemaName: string, projectId: string): Promise<{ exists: boolean; marked: boolean }> {
  const [row] = await q.query<{ exists: boolean; marked: boolean }>(
    `SELECT n.oid IS NOT NULL AS exists,
            coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace') = project_registry.workspace_marker($2), false) AS marked
       FROM (VALUES (1)) one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1`,
    [schemaName, projectId],
  );
  return row ?? { exists: false, marked: false };
}

/** Writes the server's marker on a workspace schema it made (or was told to adopt). */
export async function markWorkspaceSchema(tx: Queryable, schemaName: string, projectId: string): Promise<void> {
  await tx.query('SELECT project_registry.mark_workspace_schema($1, $2)', [schemaName, projectId]);
}

/**
 * Whether anything in a schema (or its sandbox function) is owned by a role other than the
 * server's: only then can agent code be there (the server's own objects are its DDL's).
 */
export async function holdsOthersObjects(q: Queryable, schemaName: string, sandboxSchema: string): Promise<boolean> {
  const [row] = await q.query<{ others: boolean }>(
    `SELECT EXISTS (
       SELECT FROM pg_catalog.pg_shdepend d
        CROSS JOIN LATERAL (${dependencySchema('$2')}) s
        WHERE d.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
          AND d.deptype = 'o' AND d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
          AND d.refobjid <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
          AND s.nspname = $1) AS others`,
    [schemaName, sandboxSchema],
  );
  return row?.others ?? false;
}
