import type { Database, Queryable } from '../database.js';
import { quoteIdent } from '../identifiers.js';
import { pgError } from '../sql-errors.js';

/**
 * Citus's functions that run a command on nodes over connections of their own: the wrappers call
 * master_run_on_worker as their caller, but each is refused on its own, whatever a later Citus
 * makes of them.
 */
export const NODE_COMMAND_FUNCTIONS = [
  'master_run_on_worker',
  'run_command_on_workers',
  'run_command_on_all_nodes',
  'run_command_on_coordinator',
  'run_command_on_placements',
  'run_command_on_shards',
  'run_command_on_colocated_placements',
] as const;

/**
 * On a worker a workspace's code runs outside its sandbox too: a router query runs whole on the
 * workspace's worker, its function calls included, and the sandbox's end-of-call checks see the
 * coordinator only. Citus refuses DDL on a table's shell there, but not a grant on its shard nor
 * a large object: alpha's function granted its shard (and a large object) to PUBLIC, and beta's
 * function on the same worker read the shard's most common values in pg_stats (which needs no
 * USAGE on the schema) and the large object's text. So on the workers PUBLIC may neither make
 * large objects nor read pg_stats; nothing of the server or Citus needs either there.
 */
export const WORKER_LARGE_OBJECT_MAKERS = ['lo_create', 'lo_creat', 'lo_from_bytea', 'lo_import'] as const;
/** The statement that takes pg_stats from PUBLIC on a worker (see WORKER_LARGE_OBJECT_MAKERS). */
export const REVOKE_WORKER_STATS = 'REVOKE SELECT ON pg_catalog.pg_stats FROM PUBLIC;';

/** What the server itself calls of them (asking each worker for its extensions at install): granted to its role. */
export const SERVER_NODE_COMMANDS = 'pg_catalog.run_command_on_workers(text, boolean), pg_catalog.master_run_on_worker(text[], integer[], text[], boolean)';

/*
 * Citus schema-based sharding, as the engine uses it: every workspace schema is a distributed
 * ("tenant") schema whose tables live together on one worker, and the registry stays a plain
 * schema on the coordinator. What Citus does that shapes this module (Citus 13.2 source):
 * - with citus.enable_schema_based_sharding on, CREATE SCHEMA registers a tenant schema, but
 *   only a top-level CREATE TABLE becomes a tenant table (utility_hook.c), so a table created
 *   by EXECUTE in PL/pgSQL stays a local table inside a distributed schema;
 * - citus_schema_distribute() converts a plain schema and all its tables, foreign keys included;
 * - DDL on a distributed table is forwarded to the workers as the client's query string, so a
 *   multi-statement string fails there ("cannot insert multiple commands into a prepared
 *   statement"): DDL on existing workspaces goes one statement at a time.
 * So workspace DDL always runs with the GUC off, and the schema is distributed at the end.
 */

/** Local to the transaction: the schema about to be made stays plain until it is distributed. */
export const SHARDING_OFF = 'SET LOCAL citus.enable_schema_based_sharding = off';

export class CitusSetupError extends Error {
  override name = 'CitusSetupError';
}

/**
 * The installed Citus version, or null on plain PostgreSQL and PGlite (which has no Citus to
 * install, and answers the same query). Asked once, by a boot that installs.
 */
export async function detectCitus(db: Queryable): Promise<string | null> {
  const [row] = await db.query<{ version: string | null }>(
    `SELECT extversion AS version FROM pg_catalog.pg_extension WHERE extname = 'citus'`,
  );
  return row?.version ?? null;
}

/**
 * On Citus: refuses a worker (tenant tables can only be made on the coordinator, and advisory
 * locks are per node, so every server must share the coordinator) and says whether the
 * registry has become a tenant schema (an install made with the GUC on), which must be undone.
 */
export async function checkCitusNode(db: Queryable): Promise<{ registryDistributed: boolean }> {
  const [row] = await db.query<{ coordinator: boolean; registry_distributed: boolean }>(
    `SELECT pg_catalog.citus_is_coordinator() AS coordinator,
            EXISTS (SELECT 1 FROM pg_catalog.pg_dist_schema d JOIN pg_catalog.pg_namespace n ON n.oid = d.schemaid
                     WHERE n.nspname = 'project_registry') AS registry_distributed`,
  );
  if (!row?.coordinator) {
    throw new CitusSetupError(
      'DATABASE_URL points to a Citus worker node. Point every pg-workspace-mcp server at the coordinator: ' +
        'workspaces can only be created there, and the per-workspace locks are per node.',
    );
  }
  return { registryDistributed: row.registry_distributed };
}

/** The registry and ledgers live on the coordinator, joined with its catalog: never a tenant schema. */
export async function keepRegistryOnCoordinator(tx: Queryable): Promise<void> {
  await tx.query(
    `SELECT pg_catalog.citus_schema_undistribute(d.schemaid)
       FROM pg_catalog.pg_dist_schema d JOIN pg_catalog.pg_namespace n ON n.oid = d.schemaid
      WHERE n.nspname = 'project_registry'`,
  );
}

/** Every installer transaction starts with schema-based sharding off: global schemas stay plain. */
export function withShardingOff(db: Database): Database {
  return {
    description: db.description,
    query: (sql, params) => db.query(sql, params),
    exec: (sql) => db.exec(sql),
    transaction: (fn, agentOf) =>
      db.transaction(async (tx) => {
        await tx.query(SHARDING_OFF);
        return fn(tx);
      }, agentOf),
    withSession: (fn, agentOf) => db.withSession(fn, agentOf),
    tryExclusive: (key, attempt, body) => db.tryExclusive(key, attempt, body),
    lockHolders: (key) => db.lockHolders(key),
    pipeline: (steps, agentOf, signal) => db.pipeline(steps, agentOf, signal),
    runAsRole: (role, sql, timeoutMs, agentOf) => db.runAsRole(role, sql, timeoutMs, agentOf),
    registerVectorTypes: () => db.registerVectorTypes(),
    close: () => db.close(),
  };
}

/**
 * Which of `names` each worker lacks (by "host:port"): CREATE EXTENSION on the coordinator is
 * propagated to the workers, which must have the extension's files installed.
 */
export async function extensionsMissingOnWorkers(db: Queryable, names: readonly string[]): Promise<Map<string, string[]>> {
  const missing = new Map<string, string[]>();
  if (names.length === 0) return missing;
  const list = names.map((n) => `'${n.replaceAll("'", "''")}'`).join(', ');
  const rows = await db
    .query<{ node: string; success: boolean; result: string }>(
      `SELECT nodename || ':' || nodeport AS node, success, result
         FROM pg_catalog.run_command_on_workers($1)`,
      [`SELECT coalesce(string_agg(name, ','), '') FROM pg_catalog.pg_available_extensions WHERE name IN (${list})`],
    )
    .catch(async (error: unknown) => {
      // Revoked from PUBLIC, as the SQL tools ask (sandbox-capability.ts), and not granted to the server's role.
      if ((error as { code?: unknown }).code !== '42501') throw error;
      const [me] = await db.query<{ role: string }>('SELECT current_user AS role');
      throw new CitusSetupError(
        `Cannot ask the Citus workers for their extensions: ${(error as Error).message}. As an administrator: ` +
          `GRANT EXECUTE ON FUNCTION ${SERVER_NODE_COMMANDS} TO ${quoteIdent(me?.role ?? '')}; (docs/citus.md).`,
      );
    });
  for (const row of rows) {
    if (!row.success) throw new CitusSetupError(`Cannot ask Citus worker ${row.node} for its extensions: ${row.result}`);
    const available = new Set(row.result.split(','));
    const lacking = names.filter((n) => !available.has(n));
    if (lacking.length > 0) missing.set(row.node, lacking);
  }
  return missing;
}

/**
 * Distributes the workspace schema with every table in it, unless it already is distributed
 * (an existing workspace being upgraded: Citus made its new top-level tables tenant tables).
 * `schemaName` is a validated workspace schema name, so it is safe as a literal.
 */
export function distributeSchemaSql(schemaName: string): string {
  return (
    `SELECT pg_catalog.citus_schema_distribute(n.oid) FROM pg_catalog.pg_namespace n ` +
    `WHERE n.nspname = '${schemaName.replaceAll("'", "''")}' ` +
    `AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_schema d WHERE d.schemaid = n.oid)`
  );
}

/**
 * Citus refuses a foreign key from a tenant table to a table outside its schema unless that is a
 * reference table: when a schema is distributed (an internal error, XX000, naming both tables
 * in DETAIL) and when a new table is made in an existing distributed schema (42P16, naming the
 * referenced table). Neither SQLSTATE is specific to this, so the messages tell them apart.
 */
export function citusForeignKeyRefusal(error: unknown): { from?: string; to: string; constraint?: string } | undefined {
  const e = pgError(error);
  if (e?.message.startsWith('foreign keys from distributed schemas can only point to')) {
    const m = /^"(.+)" references "(.+)" via foreign key constraint "(.+)"$/.exec(e.detail ?? '');
    return m ? { from: m[1] as string, to: m[2] as string, constraint: m[3] as string } : { to: 'a table outside the workspace' };
  }
  const m = e && /^referenced table "(.+)" must be a distributed table or a reference table$/.exec(e.message);
  return m ? { to: m[1] as string } : undefined;
}

/** The worker holding a distributed schema's tables ("host", port), or undefined while it has none. */
export async function workerOfSchema(q: Queryable, schemaName: string): Promise<{ host: string; port: number } | undefined> {
  const [row] = await q.query<{ host: string; port: number }>(
    `SELECT n.nodename AS host, n.nodeport AS port
       FROM pg_catalog.pg_dist_schema d
       JOIN pg_catalog.pg_dist_partition p ON p.colocationid = d.colocationid
       JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = p.logicalrelid
       JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = s.shardid
       JOIN pg_catalog.pg_dist_node n ON n.groupid = pl.groupid
      WHERE d.schemaid = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1)
      LIMIT 1`,
    [schemaName],
  );
  return row;
}

/**
 * The owners of a distributed schema's tables that the current user may not act as. PostgreSQL
 * lets a schema's owner drop what it holds, but Citus runs worker_drop_distributed_table on each
 * worker for each of its tables, which asks to own the table: a server that is no superuser
 * drops the schema as a member of these owners, for that transaction only.
 */
async function tableOwnersToActAs(q: Queryable, schemaName: string): Promise<string[]> {
  const rows = await q.query<{ owner: string }>(
    `SELECT DISTINCT r.rolname::text AS owner
       FROM pg_catalog.pg_dist_partition p
       JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid
       JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
      WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace($1)
        AND NOT pg_catalog.pg_has_role(r.oid, 'USAGE')
      ORDER BY 1`,
    [schemaName],
  );
  return rows.map((r) => r.owner);
}

/** `statement` as a member of `owners` (each granted and revoked around it, one statement at a time). */
function asOwners(owners: readonly string[], statement: string): string[] {
  return [
    ...owners.map((o) => `GRANT ${quoteIdent(o)} TO CURRENT_USER`),
    statement,
    ...owners.map((o) => `REVOKE ${quoteIdent(o)} FROM CURRENT_USER`),
  ];
}

/** Moves a distributed schema's shards to `to` (citus_schema_move, copying with writes blocked); outside a transaction. */
export async function moveSchema(q: Queryable, schemaName: string, to: { host: string; port: number }): Promise<void> {
  await q.query(`SELECT pg_catalog.citus_schema_move($1::pg_catalog.regnamespace, $2, $3, 'block_writes')`, [schemaName, to.host, to.port]);
}

/** DROP SCHEMA IF EXISTS ... CASCADE of a schema that may be distributed, in the caller's transaction (see tableOwnersToActAs). */
export async function dropSchemaCascade(tx: Queryable, schemaName: string, citus: boolean): Promise<void> {
  const drop = `DROP SCHEMA IF EXISTS ${quoteIdent(schemaName)} CASCADE`;
  // A statement at a time: Citus forwards some DDL to the workers as the string it came in.
  for (const statement of citus ? asOwners(await tableOwnersToActAs(tx, schemaName), drop) : [drop]) await tx.exec(statement);
}
