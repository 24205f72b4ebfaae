import pg from 'pg';
import { distributeSchemaSql, dropSchemaCascade, moveSchema, SHARDING_OFF, workerOfSchema } from '../db/postgres/citus.js';
import type { Database, Queryable } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { distributeNewTables, dropSandboxFunction, principalScript, SANDBOX_SCHEMA, sandboxFunction } from '../sandbox/sandbox-ddl.js';
import { schemaCopyScript, type SchemaCopy } from './schema-copy.js';
import { closeSnapshotReading, finishSnapshotReading, snapshotReaders, type SnapshotGrants } from './snapshot-reader.js';

/*
 * A schema copy (a snapshot, or a fork's new workspace) on Citus, where every workspace is a
 * distributed schema on one worker. What Citus does that shapes this (Citus 13.2 source):
 * - in one coordinator transaction each role reaches the workers over connections of its own,
 *   and a placement modified over one role's connection cannot be touched over another's
 *   (placement_connection.c), nor does one role's connection see what another's made and has not
 *   committed (a schema, a grant). The server cannot make the copy and then hand it to the
 *   snapshot role, as on PostgreSQL: the role that will own the copy makes it, reading the source
 *   through a membership of the source's owner granted (and committed) beforehand, or from a
 *   snapshot through grants to read it and nothing more (snapshot-reader.ts);
 * - only a top-level CREATE TABLE in a distributed schema makes a tenant table (the copy's run
 *   from PL/pgSQL), and create_distributed_table colocates a table with the schema's group only
 *   through a table already in it: the target schema is made distributed with an empty anchor
 *   table in it (handed to the copier once moved, see placeNearSource), before the copy;
 * - a new colocation group goes to the worker its id picks: the empty anchor is moved to the
 *   source's worker (citus_schema_move, outside the transaction that makes it), so the copy lives
 *   beside what it copies and the rows never cross workers;
 * - size functions refuse to run in a transaction that wrote to shards.
 * So: a committed preparation (schema, anchor, copier's sandbox and membership), a move, then in
 * the caller's transaction the copy in the copier's sandbox (tables and rows, distribution, the
 * rest), and the membership taken back. No statement of the copy runs as the server.
 */

/** The empty table that anchors the target's colocation group until the copy is distributed. */
const ANCHOR = 'pgw_copy_anchor';

export interface CitusCopyPlan {
  /** The schema the copy fills: made distributed (with the anchor) by prepareCitusCopy. */
  target: string;
  /** The role that makes and owns the copy: a role made for a snapshot's copy (handTo), or a fork's new workspace role. */
  copier: string;
  /** The owner of what is copied (a workspace's role), granted to the copier for the copy only. */
  sourceOwner?: string;
  /** From a snapshot: what the copier was granted to read it, and only read it (snapshot-reader.ts). */
  snapshotGrants?: SnapshotGrants;
  /**
   * A snapshot: the role the copy is handed to once committed (the snapshot role). Its copier is
   * a role made for it, owning nothing else while the agent's code runs, dropped then.
   */
  handTo?: string;
  /** The schema whose worker the copy goes to. */
  near: string;
  /** The schemas after the target on the copier's sandbox search path (as for a workspace). */
  searchPath: readonly string[];
}

/**
 * First transaction (the caller's, committed before the copy): the target as a distributed schema
 * holding only the anchor, the copier's SQL sandbox on it, and the membership that lets the
 * copier read a workspace (a snapshot's reading is granted by the caller, once the copier
 * exists). Nothing of the agent's is touched.
 */
export async function prepareCitusCopy(
  tx: Queryable,
  prepared: Omit<CitusCopyPlan, 'copier'> & { copier: string | ((targetSchemaOid: string) => string) },
  serverRole: string,
  createCopier: boolean,
): Promise<CitusCopyPlan> {
  const target = quoteIdent(prepared.target);
  await tx.exec(SHARDING_OFF);
  await tx.exec(`CREATE SCHEMA ${target}`);
  const [made] = await tx.query<{ oid: string }>('SELECT $1::pg_catalog.regnamespace::oid::text AS oid', [target]);
  const plan = { ...prepared, copier: typeof prepared.copier === 'string' ? prepared.copier : prepared.copier(made?.oid ?? '') };
  await tx.exec(principalScript({ schemaName: plan.target, roleName: plan.copier, searchPath: plan.searchPath }, createCopier, serverRole, true));
  // Made after the principal, so the anchor stays the server's until placeNearSource moved it.
  await tx.exec(`CREATE TABLE ${target}.${quoteIdent(ANCHOR)} ()`);
  await tx.exec(distributeSchemaSql(plan.target));
  if (plan.sourceOwner) {
    // Inheriting, for the copy only: the sandbox refuses every role change.
    await tx.exec(`GRANT ${quoteIdent(plan.sourceOwner)} TO ${quoteIdent(plan.copier)}`);
    await tx.exec(`ALTER ROLE ${quoteIdent(plan.copier)} INHERIT`);
  }
  return plan;
}

/** The membership (or the snapshot's reading) granted for the copy, taken back. */
async function closeSource(tx: Queryable, plan: CitusCopyPlan): Promise<void> {
  if (plan.sourceOwner) {
    await tx.exec(`REVOKE ${quoteIdent(plan.sourceOwner)} FROM ${quoteIdent(plan.copier)}`);
    await tx.exec(`ALTER ROLE ${quoteIdent(plan.copier)} NOINHERIT`);
  }
  if (plan.snapshotGrants) await closeSnapshotReading(tx, plan.snapshotGrants, plan.copier);
}

/**
 * Between the two transactions: the prepared target (only the empty anchor, so no code of the
 * agent's runs) goes to the source's worker, then the anchor to the copier, which drops it after
 * the copy. Citus moves a shard outside a transaction, as the anchor's owner (citus_schema_move
 * checks ownership on the coordinator, and the shard's copy reads it on the worker over the
 * mover's own connections, which a membership granted in that transaction does not reach): so
 * the server keeps the anchor until then.
 */
export async function placeNearSource(db: Database, plan: CitusCopyPlan): Promise<void> {
  const [source, target] = [await workerOfSchema(db, plan.near), await workerOfSchema(db, plan.target)];
  if (source && target && (source.host !== target.host || source.port !== target.port)) await moveSchema(db, plan.target, source);
  const [copier, anchor] = [quoteIdent(plan.copier), `${quoteIdent(plan.target)}.${quoteIdent(ANCHOR)}`];
  // As a member of the copier for this transaction only (src/db/role-membership.ts), a statement
  // at a time: Citus forwards DDL on distributed tables as the string it came in.
  await db.transaction(async (tx) => {
    for (const statement of [`GRANT ${copier} TO CURRENT_USER`, `ALTER TABLE ${anchor} OWNER TO ${copier}`, `REVOKE ${copier} FROM CURRENT_USER`]) await tx.exec(statement);
  });
}

/**
 * In the caller's transaction: the copy as the copier, in its sandbox (tables and rows as local
 * tables, their distribution into the anchor's group, then indexes, views, foreign keys, sequence
 * values, triggers and policies on the distributed tables), then the anchor dropped and the
 * membership taken back. With `keepSandbox` false (a snapshot) the copier's sandbox is dropped too,
 * and its privileges on the target.
 */
export async function copyOnCitus(tx: Queryable, plan: CitusCopyPlan, source: Omit<SchemaCopy, 'part' | 'target'>, keepSandbox: boolean): Promise<void> {
  const sandbox = sandboxFunction(plan.target);
  const run = (script: string) => tx.query(`SELECT ${sandbox}('script', $1, 0, 0)`, [script]);
  const reading = plan.snapshotGrants ? { definers: plan.snapshotGrants.definers, ignoreGrantees: await snapshotReaders(tx, plan.snapshotGrants) } : {};
  const copy = { ...source, target: plan.target, ...reading };
  await run(schemaCopyScript({ ...copy, part: 'before-distribution' }));
  await run(distributeNewTables(plan.target));
  await run(schemaCopyScript({ ...copy, lockSource: false, part: 'after-distribution' }));
  await run(`DROP TABLE ${quoteIdent(plan.target)}.${quoteIdent(ANCHOR)}`);
  await closeSource(tx, plan);
  if (keepSandbox) return;
  await tx.exec(dropSandboxFunction(plan.target));
  await tx.exec(`REVOKE ALL ON SCHEMA ${quoteIdent(plan.target)} FROM ${quoteIdent(plan.copier)}`);
}

/**
 * After a copy that failed or was refused (its transaction rolled back): the prepared target and
 * the copier's sandbox on it are dropped and the membership taken back, if still there.
 */
export async function discardCitusCopy(tx: Queryable, plan: CitusCopyPlan): Promise<void> {
  await dropSchemaCascade(tx, plan.target, true);
  await tx.exec(dropSandboxFunction(plan.target));
  await closeSource(tx, plan);
  await finishCitusCopy(tx, plan);
}

/**
 * After the copy committed, under the source's lock (or with its discarding): a snapshot handed
 * to the snapshot role (an owner changed over the server's connections, which Citus refuses in
 * the transaction whose copier wrote its shards) and its copier dropped; what a copy from a
 * snapshot gave its reader, gone (snapshot-reader.ts).
 */
export async function finishCitusCopy(tx: Queryable, plan: CitusCopyPlan): Promise<void> {
  if (plan.snapshotGrants) await finishSnapshotReading(tx, plan.snapshotGrants);
  if (!plan.handTo) return;
  const [target, keeper, copier] = [quoteIdent(plan.target), quoteIdent(plan.handTo), quoteIdent(plan.copier)];
  const [present] = await tx.query<{ schema: boolean; copier: boolean }>(
    'SELECT pg_catalog.to_regnamespace($1) IS NOT NULL AS schema, pg_catalog.to_regrole($2) IS NOT NULL AS copier',
    [plan.target, copier],
  );
  if (!present?.copier) return;
  // A statement at a time: Citus forwards DDL on distributed objects as the string it came in.
  if (present.schema) {
    await tx.exec(`GRANT CREATE ON SCHEMA ${target} TO ${keeper}`);
    await tx.exec(`SELECT ${quoteIdent(SANDBOX_SCHEMA)}.adopt_objects(${pg.escapeLiteral(plan.target)}, ${pg.escapeLiteral(plan.handTo)})`);
    await tx.exec(`REVOKE CREATE ON SCHEMA ${target} FROM ${keeper}`);
  }
  // As a member of the copier (DROP OWNED BY asks for that), which DROP ROLE ends.
  await tx.exec(`GRANT ${copier} TO CURRENT_USER`);
  await tx.exec(`DROP OWNED BY ${copier}`);
  await tx.exec(`DROP ROLE ${copier}`);
}
