import { firstRow, type Queryable } from '../db/database.js';
import { autovacuumCodeOf } from '../sandbox/autovacuum-code.js';
import { copyEvaluatedCodeOf } from '../sandbox/copy-code.js';
import { WORKER_AUTOVACUUM_CODE } from '../sandbox/worker-guard.js';
import { dependencySchema } from './registry-sql.js';

/*
 * The registry SQL of the operations commands (doctor, repair), each statement named for what it
 * does; the commands hold no SQL text of their own. Doctor's run in one read-only transaction.
 * What the workspace lifecycle (drop, rename, snapshots) shares with repair is in
 * lifecycle-queries.ts.
 */

/** Whether the registry exists, and Citus (workspaces are distributed schemas there). */
const REGISTRY_PRESENCE = `
  SELECT pg_catalog.to_regclass('project_registry.install_state') IS NOT NULL AS registry,
         (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'citus') AS citus`;

const INSTALL_STATE = `
  SELECT fingerprint, installed_at, search_path_schemas, extensions FROM project_registry.install_state`;

const GLOBAL_LEDGER = `
  SELECT extension_id, name, checksum FROM project_registry.schema_migrations ORDER BY extension_id, name`;

/** Each distinct checksum a workspace migration was recorded with, and in how many workspaces. */
const WORKSPACE_LEDGER_CHECKSUMS = `
  SELECT extension_id, name, checksum, count(*)::int AS workspaces
    FROM project_registry.workspace_migrations GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`;

const LOST_SCHEMAS = `
  SELECT w.project_id, w.schema_name FROM project_registry.workspace_config w
   WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = w.schema_name)
   ORDER BY w.project_id`;

/** Schemas named like workspaces (`project_…`) that no registry row names. */
const UNREGISTERED_PROJECT_SCHEMAS = `
  SELECT n.nspname::text AS schema_name, pg_catalog.pg_get_userbyid(n.nspowner)::text AS owner,
         (SELECT count(*)::int FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p')) AS tables
    FROM pg_catalog.pg_namespace n
   WHERE n.nspname LIKE 'project\\_%'
     AND NOT EXISTS (SELECT FROM project_registry.workspace_config w WHERE w.schema_name = n.nspname)
   ORDER BY n.nspname`;

/** Roles named like this database's workspace roles (`prefix` then anything), and the registered ids. */
/** Schemas named like a workspace's snapshot (`project_…__snap_N`) that no snapshot row names. */
const UNREGISTERED_SNAPSHOT_SCHEMAS = `
  SELECT n.nspname::text AS schema_name
    FROM pg_catalog.pg_namespace n
   WHERE n.nspname LIKE 'project\\_%\\_\\_snap\\_%'
     AND NOT EXISTS (SELECT FROM project_registry.workspace_snapshots s WHERE s.schema_name = n.nspname)
   ORDER BY n.nspname`;

const WORKSPACE_ROLES = `
  SELECT r.rolname::text AS role_name FROM pg_catalog.pg_roles r
   WHERE starts_with(r.rolname, $1) ORDER BY r.rolname`;

/** Read through to_jsonb: doctor also reads a registry installed before the column existed. */
const REGISTERED_ROLES = `SELECT w.project_id, pg_catalog.to_jsonb(w) ->> 'role_name' AS role_name,
       pg_catalog.to_jsonb(w) ->> 'snapshot_role_name' AS snapshot_role_name FROM project_registry.workspace_config w`;

/**
 * Workspace roles (pgw_…) that own something or hold a privilege in more than one registered
 * workspace (its schema, what is in it, its sandbox function), or in another database: one role
 * serving two workspaces, as the naming of before 2026-12 allowed. $1 is the sandbox schema.
 */
const SHARED_ROLES = `
  SELECT r.rolname::text AS role_name,
         array_agg(DISTINCT s.nspname ORDER BY s.nspname) FILTER (WHERE w.schema_name IS NOT NULL) AS schemas,
         array_agg(DISTINCT db.datname::text ORDER BY db.datname::text) FILTER (WHERE d.dbid NOT IN (0, me.oid)) AS databases
    FROM pg_catalog.pg_roles r
    JOIN pg_catalog.pg_shdepend d ON d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND d.refobjid = r.oid
   CROSS JOIN (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) me
    LEFT JOIN pg_catalog.pg_database db ON db.oid = d.dbid
    LEFT JOIN LATERAL (${dependencySchema('$1')}
                       WHERE d.dbid = me.oid) s ON true
    LEFT JOIN project_registry.workspace_config w ON w.schema_name = s.nspname
   WHERE r.rolname LIKE 'pgw\\_%'
   GROUP BY r.rolname
  HAVING count(DISTINCT w.schema_name) > 1
      OR (count(DISTINCT w.schema_name) = 1 AND count(*) FILTER (WHERE d.dbid NOT IN (0, me.oid)) > 0)
   ORDER BY 1`;

/** Workspaces whose roles' own code autovacuum would run (indexes made before the sandbox refused them; their snapshots' copies). */
const AUTOVACUUM_CODE = `
  SELECT w.project_id, r.role_name, c.objects
    FROM project_registry.workspace_config w
   CROSS JOIN LATERAL unnest(ARRAY[w.role_name, w.snapshot_role_name]) AS r(role_name)
   CROSS JOIN LATERAL (${autovacuumCodeOf('r.role_name')}) AS c(objects)
   WHERE c.objects IS NOT NULL
   ORDER BY w.project_id, r.role_name`;

/**
 * On Citus, workspaces whose CHECK constraints, domain checks or generated columns call their
 * role's own code or a VOLATILE function (copy-code.ts), which a superuser's move between workers
 * evaluates as itself: made before the SQL tools refused them. Workspaces whose schema exists only
 * (the rule casts its name); the role read through to_jsonb, as REGISTERED_ROLES does.
 */
const COPY_CODE = `
  SELECT w.project_id, c.objects
    FROM (SELECT r.project_id, r.schema_name, pg_catalog.to_jsonb(r) ->> 'role_name' AS role_name
            FROM project_registry.workspace_config r JOIN pg_catalog.pg_namespace n ON n.nspname = r.schema_name) w
   CROSS JOIN LATERAL (${copyEvaluatedCodeOf('w.schema_name', 'w.role_name')}) AS c(objects)
   WHERE c.objects IS NOT NULL
   ORDER BY w.project_id`;

const PG_EXTENSIONS = `
  SELECT r.name, a.name IS NOT NULL AS available, a.installed_version IS NOT NULL AS installed
    FROM unnest($1::text[]) AS r(name)
    LEFT JOIN pg_catalog.pg_available_extensions a ON a.name = r.name
   ORDER BY r.name`;

const GLOBAL_CHECKSUM_FOR_UPDATE = `
  SELECT checksum FROM project_registry.schema_migrations WHERE extension_id = $1 AND name = $2 FOR UPDATE`;

const RESTAMP_GLOBAL = `
  UPDATE project_registry.schema_migrations SET checksum = $3 WHERE extension_id = $1 AND name = $2`;

const RESTAMP_WORKSPACES = `
  WITH restamped AS (
    UPDATE project_registry.workspace_migrations SET checksum = $3
     WHERE extension_id = $1 AND name = $2 AND checksum <> $3 RETURNING 1
  )
  SELECT count(*)::int AS n FROM restamped`;

/** Every column of every table of a schema, with its type as an OID and modifier (and as text for messages). */
const TABLE_COLUMNS = `
  SELECT c.relname::text AS table_name, a.attname::text AS column_name, a.atttypid::int AS type_oid, a.atttypmod AS typmod,
         pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
   WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
   ORDER BY c.relname, a.attnum`;

export interface RegistryPresence {
  registry: boolean;
  citus: string | null;
}

export interface InstallStateRow {
  fingerprint: string;
  installed_at: Date;
  search_path_schemas: string[];
  extensions: { id: string; version: string }[];
}

export interface LedgerRow {
  extension_id: string;
  name: string;
  checksum: string;
}

export interface WorkspaceLedgerChecksum extends LedgerRow {
  workspaces: number;
}

export interface LostSchema {
  project_id: string;
  schema_name: string;
}

export interface UnregisteredSchema {
  schema_name: string;
  owner: string;
  tables: number;
}

export interface PgExtensionState {
  name: string;
  available: boolean;
  installed: boolean;
}

export interface ColumnSignature {
  table_name: string;
  column_name: string;
  type_oid: number;
  typmod: number;
  type: string;
  not_null: boolean;
}


export const registryPresence = (q: Queryable) => firstRow<RegistryPresence>(q, REGISTRY_PRESENCE);

export async function installState(q: Queryable): Promise<InstallStateRow | undefined> {
  return (await q.query<InstallStateRow>(INSTALL_STATE))[0];
}

export const globalLedger = (q: Queryable) => q.query<LedgerRow>(GLOBAL_LEDGER);

export const workspaceLedgerChecksums = (q: Queryable) => q.query<WorkspaceLedgerChecksum>(WORKSPACE_LEDGER_CHECKSUMS);

export const lostSchemas = (q: Queryable) => q.query<LostSchema>(LOST_SCHEMAS);

/** Whether this database records member databases it spreads workspaces over (core migration 0011's table; none before it). */
export async function recordsMemberDatabases(q: Queryable): Promise<boolean> {
  const [table] = await q.query<{ present: boolean }>("SELECT pg_catalog.to_regclass('project_registry.workspace_databases') IS NOT NULL AS present");
  return table?.present === true && (await q.query('SELECT 1 FROM project_registry.workspace_databases LIMIT 1')).length > 0;
}

export const unregisteredProjectSchemas = (q: Queryable) => q.query<UnregisteredSchema>(UNREGISTERED_PROJECT_SCHEMAS);

export const unregisteredSnapshotSchemas = async (q: Queryable) =>
  (await q.query<{ schema_name: string }>(UNREGISTERED_SNAPSHOT_SCHEMAS)).map((r) => r.schema_name);

export async function rolesStartingWith(q: Queryable, prefix: string): Promise<string[]> {
  return (await q.query<{ role_name: string }>(WORKSPACE_ROLES, [prefix])).map((r) => r.role_name);
}

/** Every registered snapshot's schema OID: on Citus, what names the role that copied it (snapshotCopierNameFor). */
const SNAPSHOT_SCHEMA_OIDS = `
  SELECT s.project_id, pg_catalog.to_regnamespace(s.schema_name)::pg_catalog.oid::pg_catalog.int8::text AS schema_oid
    FROM project_registry.workspace_snapshots s
   WHERE pg_catalog.to_regnamespace(s.schema_name) IS NOT NULL`;

export const snapshotSchemaOids = (q: Queryable) => q.query<{ project_id: string; schema_oid: string }>(SNAPSHOT_SCHEMA_OIDS);

export interface SnapshotReadingRow {
  reader: string;
  project_id: string;
  /** Closed, or open past its lease: left by a process that stopped between a Citus fork's steps. */
  stopped: boolean;
}

/** On Citus, the readers of snapshots that forks recorded (snapshot-reader.ts); none on a database installed before the table existed. */
export async function snapshotReadings(q: Queryable): Promise<SnapshotReadingRow[]> {
  const [present] = await q.query<{ exists: boolean }>("SELECT pg_catalog.to_regclass('project_registry.snapshot_readings') IS NOT NULL AS exists");
  if (!present?.exists) return [];
  return q.query<SnapshotReadingRow>(
    `SELECT reader, project_id, (closed OR lease_until < pg_catalog.now()) AS stopped
       FROM project_registry.snapshot_readings ORDER BY project_id, reader`,
  );
}

export const registeredRoles = (q: Queryable) =>
  q.query<{ project_id: string; role_name: string | null; snapshot_role_name: string | null }>(REGISTERED_ROLES);

export interface SharedRole {
  role_name: string;
  schemas: string[] | null;
  databases: string[] | null;
}

export const sharedRoles = (q: Queryable, sandboxSchema: string) => q.query<SharedRole>(SHARED_ROLES, [sandboxSchema]);

export const autovacuumCode = (q: Queryable) => q.query<{ project_id: string; role_name: string; objects: string }>(AUTOVACUUM_CODE);

/** On Citus, per worker, the workspace roles holding what its guard refuses (worker-guard.ts), asked as the server. */
export async function workerAutovacuumCode(q: Queryable): Promise<{ node: string; role: string; objects: string }[]> {
  const rows = await q.query<{ node: string; success: boolean; result: string }>(
    `SELECT 'worker ' || nodename || ':' || nodeport AS node, success, result FROM pg_catalog.run_command_on_workers($1)`,
    [WORKER_AUTOVACUUM_CODE],
  );
  return rows.flatMap(({ node, success, result }) => {
    if (!success) throw new Error(`could not ask Citus ${node} for what autovacuum would run there: ${result}`);
    return result === '' ? [] : result.split('\n').map((line) => {
      const [role = '', objects = ''] = line.split('\t');
      return { node, role, objects };
    });
  });
}

export const copyCode = (q: Queryable) => q.query<{ project_id: string; objects: string }>(COPY_CODE);

export const pgExtensionStates = (q: Queryable, names: readonly string[]) => q.query<PgExtensionState>(PG_EXTENSIONS, [names]);


/** Sets a global migration's ledger checksum; the one it replaced, or undefined when it was never applied. */
export async function restampGlobalMigration(tx: Queryable, extensionId: string, name: string, checksum: string): Promise<string | undefined> {
  const [row] = await tx.query<{ checksum: string }>(GLOBAL_CHECKSUM_FOR_UPDATE, [extensionId, name]);
  if (row && row.checksum !== checksum) await tx.query(RESTAMP_GLOBAL, [extensionId, name, checksum]);
  return row?.checksum;
}

/** Sets a workspace migration's checksum in every workspace's ledger; how many rows changed. */
export async function restampWorkspaceMigration(tx: Queryable, extensionId: string, name: string, checksum: string): Promise<number> {
  return (await firstRow<{ n: number }>(tx, RESTAMP_WORKSPACES, [extensionId, name, checksum])).n;
}

export const tableColumns = (q: Queryable, schemaName: string) => q.query<ColumnSignature>(TABLE_COLUMNS, [schemaName]);
