import pg from 'pg';
import { DEFAULT_MAX_SNAPSHOTS, DEFAULT_SNAPSHOT_BUDGET_BYTES } from '../config.js';
import type { Queryable } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { dropSchemaCascade } from '../db/postgres/citus.js';
import { dropRoleSql } from '../db/role-membership.js';
import { deferredIndexes } from '../registry/deferred-index-sql.js';
import { currentDatabase, roleExists, workspacePresence } from '../registry/lifecycle-queries.js';
import { readSandboxCapability } from '../sandbox/sandbox-capability.js';
import { bumpRegistryGeneration, lockWorkspace, markWorkspaceSchema, setSnapshotRole } from '../registry/registry-sql.js';
import {
  deleteSnapshot,
  findSnapshot,
  insertSnapshot,
  listSnapshots,
  registerFork,
  schemaSize,
  setWorkspaceLevel,
  snapshotTotals,
  workspaceLevel,
  type SnapshotRow,
} from '../registry/snapshot-queries.js';
import { principalScript, roleNameFor, SANDBOX_SCHEMA, snapshotCopierNameFor } from '../sandbox/sandbox-ddl.js';
import { snapshotRoleOf, workspaceRoleOf } from '../sandbox/workspace-role.js';
import { copyOnCitus, prepareCitusCopy, type CitusCopyPlan } from '../snapshots/citus-schema-copy.js';
import { refuseForkBridges, refuseSnapshotBridges } from '../snapshots/copy-bridges.js';
import { schemaCopyScript } from '../snapshots/schema-copy.js';
import { closeSnapshotViews, grantSnapshotReading, openSnapshotViews, requireSnapshotReading, settleSnapshotReadings, SNAPSHOT_READING_LEASE_MS, snapshotBeingRead, snapshotReaders } from '../snapshots/snapshot-reader.js';
import { snapshotSchemaName } from './project-id.js';
import { WorkspaceLifecycleError } from './workspace-lifecycle.js';

/*
 * Snapshots, restores and forks of workspaces (docs/snapshots.md), as steps in the caller's
 * transaction under the workspace's lock, like drop and rename (workspace-lifecycle.ts). A
 * snapshot is a schema named so that no workspace can have it, owned by the server, its objects
 * owned by the workspace's snapshot role; the copy into it runs as the workspace's own role (on
 * Citus as a role made for it). No copy runs as a role that may write a snapshot already taken:
 * a fork of one reads it and nothing more (snapshot-reader.ts).
 */

export interface SnapshotLimits {
  /** The most snapshots one workspace keeps. */
  maxSnapshots: number;
  /** The most bytes one workspace's snapshots take together. */
  budgetBytes: number;
}

export const DEFAULT_SNAPSHOT_LIMITS: SnapshotLimits = { maxSnapshots: DEFAULT_MAX_SNAPSHOTS, budgetBytes: DEFAULT_SNAPSHOT_BUDGET_BYTES };

/** Runs SQL as a workspace's own role, in its SQL sandbox (WorkspaceSandbox), in the caller's transaction. */
export interface WorkspaceRunner {
  /** Makes the workspace's role and sandbox unless they are there and intact. */
  ensurePrincipal(tx: Queryable, projectId: string): Promise<void>;
  runAsWorkspace(tx: Queryable, projectId: string, script: string): Promise<void>;
  /** Runs `fn` as one of the workspace's calls, within its limit of calls at once (PerWorkspaceLimit). */
  inTurn<T>(projectId: string, fn: () => Promise<T>): Promise<T>;
}

/** A limit of PG_WORKSPACE_MAX_SNAPSHOTS or PG_WORKSPACE_SNAPSHOT_BUDGET_BYTES reached; nothing was changed. */
export class SnapshotLimitError extends Error {
  override name = 'SnapshotLimitError';
}

export interface SnapshotContext {
  projectId: string;
  schemaName: string;
  lockTimeoutMs: number;
  runner: WorkspaceRunner;
  /** On Citus: workspaces are distributed schemas, and copies are prepared first (citus-schema-copy.ts). */
  citus: boolean;
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** The workspace must be registered with its schema there, and the server able to act as its owner. */
async function requireWorkspace(tx: Queryable, projectId: string, schemaName: string): Promise<void> {
  const now = await workspacePresence(tx, projectId, schemaName);
  if (!now.registered || !now.schema_exists) {
    throw new WorkspaceLifecycleError(
      now.registered
        ? `Workspace "${projectId}" is registered but its schema ${schemaName} is gone (repair --forget-missing forgets it).`
        : `Workspace "${projectId}" does not exist (ensure_workspace creates it).`,
    );
  }
  if (!now.acts_as_owner) throw new WorkspaceLifecycleError(`Schema ${schemaName} belongs to role "${now.owner}", which this server's role cannot act as.`);
}

/**
 * Refuses while a large ingest load has the workspace's vector indexes dropped (docs/search.md,
 * "Deferred indexes"): a copy of that state would keep it without them for good. Called once the
 * copy holds its locks on the workspace's tables (a deferral's drop waits for them), or before
 * the state is set aside.
 */
async function refuseWhileDeferred(tx: Queryable, projectId: string, what: string): Promise<void> {
  const deferred = await deferredIndexes(tx, projectId);
  if (deferred.length === 0) return;
  const names = deferred.map((d) => `${d.table_name}.${d.index_name}`).join(', ');
  throw new WorkspaceLifecycleError(
    deferred.some((d) => d.expired)
      ? `A load into workspace "${projectId}" stopped before creating its vector index(es) ${names} again: a search of the workspace ` +
          `(or \`pg-workspace-mcp repair --restore-indexes\`) creates them; then ${what} it. Nothing was changed.`
      : `A load into workspace "${projectId}" is running with its vector index(es) ${names} dropped until it ends: ${what} it once ` +
          'the load has ended. Nothing was changed.',
  );
}

async function requireSnapshot(tx: Queryable, projectId: string, snapshot: number): Promise<SnapshotRow> {
  const row = await findSnapshot(tx, projectId, snapshot);
  if (!row) throw new WorkspaceLifecycleError(`Workspace "${projectId}" has no snapshot ${snapshot}: list_snapshots lists the ones it has.`);
  return row;
}

/** The role that keeps a workspace's snapshots, made on first use (adopt_objects() makes the server a member to hand it objects). */
async function snapshotRole(tx: Queryable, database: string, projectId: string): Promise<string> {
  const keeper = await snapshotRoleOf(tx, projectId, database);
  if (!(await roleExists(tx, keeper))) await tx.exec(`CREATE ROLE ${quoteIdent(keeper)} NOLOGIN NOINHERIT`);
  await setSnapshotRole(tx, projectId, keeper);
  return keeper;
}

/** Hands every object of `schemaName` to `role` (which needs CREATE there for that statement only). */
function handOver(schemaName: string, role: string): string {
  const schema = quoteIdent(schemaName);
  return [
    `GRANT CREATE ON SCHEMA ${schema} TO ${quoteIdent(role)}`,
    `SELECT ${quoteIdent(SANDBOX_SCHEMA)}.adopt_objects(${literal(schemaName)}, ${literal(role)})`,
    `REVOKE CREATE ON SCHEMA ${schema} FROM ${quoteIdent(role)}`,
  ].join(';\n');
}

const literal = (value: string) => pg.escapeLiteral(value);

/**
 * Takes a snapshot: a new schema the copy fills as the workspace's own role (its SQL sandbox),
 * under SHARE locks on the workspace's tables (reads go on, writes wait for the commit), then
 * handed to the snapshot role, with the workspace's role left without any privilege on it;
 * refused when agent code the copy ran left a way between the two (copy-bridges.ts).
 */
export async function takeSnapshot(
  tx: Queryable,
  c: SnapshotContext,
  label: string | null,
  limits: SnapshotLimits,
  prepared?: CitusCopyPlan,
): Promise<SnapshotRow> {
  await lockWorkspace(tx, c.projectId, c.lockTimeoutMs);
  await requireWorkspace(tx, c.projectId, c.schemaName);
  const totals = await snapshotTotals(tx, c.projectId);
  if (totals.count >= limits.maxSnapshots) {
    throw new SnapshotLimitError(
      `Workspace "${c.projectId}" has ${totals.count} snapshot(s), the most this server keeps per workspace ` +
        `(PG_WORKSPACE_MAX_SNAPSHOTS=${limits.maxSnapshots}): drop one with drop_snapshot first. Nothing was changed.`,
    );
  }
  const budgetRefusal = (bytes: number) =>
    new SnapshotLimitError(
      `A snapshot of workspace "${c.projectId}" takes ${mib(bytes)}, and its ${totals.count} snapshot(s) already take ` +
        `${mib(totals.bytes)} of its budget of ${mib(limits.budgetBytes)} (PG_WORKSPACE_SNAPSHOT_BUDGET_BYTES): ` +
        'drop snapshots it no longer needs (drop_snapshot) first. Nothing was changed.',
    );
  // Refused before copying when the workspace alone would not fit, and after it on the copy's own size.
  const estimate = await schemaSize(tx, c.schemaName, c.citus);
  if (totals.bytes + estimate > limits.budgetBytes) throw budgetRefusal(estimate);
  const target = snapshotSchemaName(c.schemaName, totals.next);
  let size: number;
  let roles: { workspace: string; keeper: string };
  if (c.citus) {
    if (prepared?.target !== target) {
      throw new WorkspaceLifecycleError(`Another snapshot of workspace "${c.projectId}" was taken meanwhile: try again. Nothing was changed.`);
    }
    await copyOnCitus(tx, prepared, { source: c.schemaName, lockSource: true }, false);
    // Citus measures no shard in a transaction that wrote to shards: the workspace's size it copied.
    size = estimate;
    roles = { workspace: await workspaceRoleOf(tx, c.projectId, await currentDatabase(tx)), keeper: prepared.copier };
  } else {
    const database = await currentDatabase(tx);
    const role = await workspaceRoleOf(tx, c.projectId, database);
    const keeper = await snapshotRole(tx, database, c.projectId);
    roles = { workspace: role, keeper };
    await c.runner.ensurePrincipal(tx, c.projectId);
    await tx.exec(
      `CREATE SCHEMA ${quoteIdent(target)};\nREVOKE ALL ON SCHEMA ${quoteIdent(target)} FROM PUBLIC;\n` +
        `GRANT USAGE, CREATE ON SCHEMA ${quoteIdent(target)} TO ${quoteIdent(role)}`,
    );
    await c.runner.runAsWorkspace(tx, c.projectId, schemaCopyScript({ source: c.schemaName, target, lockSource: true }));
    await refuseWhileDeferred(tx, c.projectId, 'snapshot');
    await tx.exec(`REVOKE ALL ON SCHEMA ${quoteIdent(target)} FROM ${quoteIdent(role)};\n${handOver(target, keeper)}`);
    size = await schemaSize(tx, target, false);
    if (totals.bytes + size > limits.budgetBytes) throw budgetRefusal(size);
  }
  // On Citus the copier made this snapshot only; elsewhere the snapshot role owns the others.
  const otherSnapshots = c.citus ? [] : await otherSnapshotSchemas(tx, c.projectId, target);
  await refuseSnapshotBridges(tx, { projectId: c.projectId, schema: target, keeper: roles.keeper, workspaceRole: roles.workspace, otherSnapshots });
  return insertSnapshot(tx, c.projectId, {
    snapshot: totals.next,
    schema_name: target,
    label,
    size_bytes: size,
    origin: 'snapshot',
    ...(await workspaceLevel(tx, c.projectId)),
  });
}

/**
 * On Citus, the committed first step of a snapshot (citus-schema-copy.ts): the next snapshot's
 * schema, distributed and empty, with the sandbox of a role made for the copy on it and a
 * membership of the workspace's role to read it with. Under the workspace's lock; a schema of that
 * name left by a snapshot that never finished (no registry row) is dropped first.
 */
export async function prepareSnapshotOnCitus(tx: Queryable, c: SnapshotContext, searchPathSchemas: readonly string[]): Promise<CitusCopyPlan> {
  await lockWorkspace(tx, c.projectId, c.lockTimeoutMs);
  await requireWorkspace(tx, c.projectId, c.schemaName);
  await c.runner.ensurePrincipal(tx, c.projectId);
  await settleSnapshotReadings(tx, c.projectId);
  const capability = await readSandboxCapability(tx, searchPathSchemas);
  const keeper = await snapshotRole(tx, capability.database, c.projectId);
  await adoptFromCopiers(tx, c.projectId, keeper, capability.database);
  const { next } = await snapshotTotals(tx, c.projectId);
  const target = snapshotSchemaName(c.schemaName, next);
  await dropSchemaCascade(tx, target, true);
  // The copy's own role, owning nothing but what it makes (the snapshot role owns every snapshot
  // of the workspace, and the agent's code the copy runs runs as the copier), named after the
  // target schema's OID: never a name used before.
  const plan = {
    target,
    copier: (schemaOid: string) => snapshotCopierNameFor(capability.database, c.projectId, schemaOid),
    sourceOwner: await workspaceRoleOf(tx, c.projectId, capability.database),
    handTo: keeper,
    near: c.schemaName,
    searchPath: searchPathSchemas,
  };
  return prepareCitusCopy(tx, plan, capability.role, true);
}

/**
 * On Citus, a snapshot whose process stopped before handing it to the snapshot role (after its
 * copy committed) still belongs to its copier: handed over now, and the copier dropped.
 */
async function adoptFromCopiers(tx: Queryable, projectId: string, keeper: string, database: string): Promise<void> {
  for (const row of await listSnapshots(tx, projectId)) {
    const [schema] = await tx.query<{ oid: string | null }>('SELECT pg_catalog.to_regnamespace($1)::oid::text AS oid', [row.schema_name]);
    const copier = snapshotCopierNameFor(database, projectId, schema?.oid ?? '');
    if (!schema?.oid || !(await roleExists(tx, copier))) continue;
    await tx.exec(handOver(row.schema_name, keeper));
    await tx.exec(dropRoleSql(copier));
  }
}

/** The schemas of a workspace's snapshots other than `schema`. */
async function otherSnapshotSchemas(tx: Queryable, projectId: string, schema: string): Promise<string[]> {
  return (await listSnapshots(tx, projectId)).map((row) => row.schema_name).filter((name) => name !== schema);
}

export async function snapshotsOf(q: Queryable, projectId: string): Promise<SnapshotRow[]> {
  return listSnapshots(q, projectId);
}

/** Drops one snapshot (its schema with everything in it, and its row); false when there was none. */
export async function dropSnapshot(tx: Queryable, c: Omit<SnapshotContext, 'runner'>, snapshot: number): Promise<boolean> {
  await lockWorkspace(tx, c.projectId, c.lockTimeoutMs);
  const row = await findSnapshot(tx, c.projectId, snapshot);
  if (!row) return false;
  await dropSchemaCascade(tx, row.schema_name, c.citus);
  await deleteSnapshot(tx, c.projectId, snapshot);
  return true;
}

export interface RestoreOutcome {
  restored: SnapshotRow;
  /** The state the restore replaced, kept as a snapshot of its own. */
  kept: SnapshotRow;
  changes: string[];
}

/**
 * Makes the snapshot the workspace, atomically and without copying: the workspace's schema is
 * renamed to a new snapshot's name (the state it replaced, kept so that the restore can be
 * undone) and the snapshot's schema to the workspace's. Ownership goes with each (the snapshot
 * role's objects to the workspace's role and back), the SQL sandbox is made anew, the registry
 * takes the snapshot's migration level (the next use upgrades it) and its generation is bumped,
 * so other servers look the workspace up again.
 */
export async function restoreSnapshot(
  tx: Queryable,
  c: Omit<SnapshotContext, 'runner'>,
  snapshot: number,
  searchPathSchemas: readonly string[],
): Promise<RestoreOutcome> {
  await lockWorkspace(tx, c.projectId, c.lockTimeoutMs);
  await requireWorkspace(tx, c.projectId, c.schemaName);
  const restored = await requireSnapshot(tx, c.projectId, snapshot);
  // Routines a stopped fork of a snapshot held INVOKER are DEFINER again before one becomes the workspace.
  if (c.citus) await settleSnapshotReadings(tx, c.projectId);
  // Made the workspace, a snapshot a fork reads would hand the fork's reader grants on the workspace's tables.
  if (c.citus && (await snapshotBeingRead(tx, restored.schema_name))) {
    throw new WorkspaceLifecycleError(
      `Snapshot ${snapshot} of "${c.projectId}" is being read by a fork of it (or by one that stopped: undone once its lease of ` +
        `${SNAPSHOT_READING_LEASE_MS / 60_000} minutes has run out): restore it once the fork has ended. Nothing was changed.`,
    );
  }
  // The state set aside is kept as a snapshot: it must have its indexes.
  await refuseWhileDeferred(tx, c.projectId, 'restore a snapshot of');
  // Measured first: Citus measures no shard once the transaction sent anything to the workers.
  const keptSize = await schemaSize(tx, c.schemaName, c.citus);
  const { next } = await snapshotTotals(tx, c.projectId);
  const capability = await readSandboxCapability(tx, searchPathSchemas);
  const role = await workspaceRoleOf(tx, c.projectId, capability.database);
  const keeper = await snapshotRole(tx, capability.database, c.projectId);
  const keptSchema = snapshotSchemaName(c.schemaName, next);
  const level = await workspaceLevel(tx, c.projectId);
  // A statement at a time: Citus forwards DDL on distributed objects as the string it came in.
  for (const statement of [
    `ALTER SCHEMA ${quoteIdent(c.schemaName)} RENAME TO ${quoteIdent(keptSchema)}`,
    `ALTER SCHEMA ${quoteIdent(restored.schema_name)} RENAME TO ${quoteIdent(c.schemaName)}`,
    `REVOKE ALL ON SCHEMA ${quoteIdent(keptSchema)} FROM ${quoteIdent(role)}`,
    handOver(keptSchema, keeper),
    // The server's marker goes with the name: the kept state is no workspace.
    `COMMENT ON SCHEMA ${quoteIdent(keptSchema)} IS NULL`,
  ]) {
    await tx.exec(statement);
  }
  await markWorkspaceSchema(tx, c.schemaName, c.projectId);
  await tx.exec(
    principalScript({ schemaName: c.schemaName, roleName: role, searchPath: searchPathSchemas }, !(await roleExists(tx, role)), capability.role, c.citus),
  );
  await deleteSnapshot(tx, c.projectId, snapshot);
  const kept = await insertSnapshot(tx, c.projectId, {
    snapshot: next,
    schema_name: keptSchema,
    label: `before restoring snapshot ${snapshot}`,
    size_bytes: keptSize,
    origin: 'restore',
    ...level,
  });
  await setWorkspaceLevel(tx, c.projectId, restored);
  await bumpRegistryGeneration(tx);
  return {
    restored,
    kept,
    changes: [
      `renamed schema ${c.schemaName} (the state replaced) to ${keptSchema}, kept as snapshot ${next}`,
      `renamed schema ${restored.schema_name} (snapshot ${snapshot}) to ${c.schemaName}`,
      `made the workspace's SQL sandbox anew and put its migration level back to snapshot ${snapshot}'s`,
    ],
  };
}

export interface ForkRequest {
  from: string;
  to: string;
  fromSchema: string;
  toSchema: string;
  /** A snapshot of `from` to fork instead of its current state. */
  snapshot: number | undefined;
}

/** What a fork copies and where, checked under both ids' locks (taken in id order). */
async function forkChecks(tx: Queryable, r: ForkRequest, searchPathSchemas: readonly string[], lockTimeoutMs: number, citus: boolean) {
  if (r.from === r.to) throw new WorkspaceLifecycleError(`A fork needs a new id: "${r.to}" is the workspace forked.`);
  for (const id of [r.from, r.to].sort()) await lockWorkspace(tx, id, lockTimeoutMs);
  await requireWorkspace(tx, r.from, r.fromSchema);
  const source = r.snapshot === undefined ? undefined : await requireSnapshot(tx, r.from, r.snapshot);
  const capability = await readSandboxCapability(tx, searchPathSchemas);
  const [fromRole, toRole] = [await workspaceRoleOf(tx, r.from, capability.database), roleNameFor(capability.database, r.to)];
  const target = await workspacePresence(tx, r.to, r.toSchema);
  // On Citus a dropped workspace's role stays (forgetWorkspace): a workspace made again reuses it.
  const roleTaken = !citus && (await roleExists(tx, toRole));
  if (target.registered || target.schema_exists || roleTaken) {
    throw new WorkspaceLifecycleError(
      `"${r.to}" is taken (${target.registered ? 'registered' : target.schema_exists ? `schema ${r.toSchema} exists` : `role ${toRole} exists`}): ` +
        'fork into an id that does not exist, or drop it first (drop_workspace). Nothing was changed.',
    );
  }
  return { source, capability, fromRole, toRole, sourceSchema: source?.schema_name ?? r.fromSchema };
}

/**
 * On Citus, the committed first step of a fork (citus-schema-copy.ts): `to`'s schema, distributed
 * and empty, with `to`'s role and sandbox, and a membership of the owner of what is copied
 * (`from`'s role, or the snapshot role, which may read the snapshot's schema for the copy).
 */
export async function prepareForkOnCitus(
  tx: Queryable,
  r: ForkRequest,
  searchPathSchemas: readonly string[],
  lockTimeoutMs: number,
  runner: WorkspaceRunner,
): Promise<CitusCopyPlan> {
  const { source, capability, fromRole, toRole, sourceSchema } = await forkChecks(tx, r, searchPathSchemas, lockTimeoutMs, true);
  await runner.ensurePrincipal(tx, r.from);
  await settleSnapshotReadings(tx, r.from);
  // From a snapshot, the copier may read it and nothing more: no membership of the snapshot role,
  // which owns every snapshot of `from` (snapshot-reader.ts).
  const plan = await prepareCitusCopy(
    tx,
    { target: r.toSchema, copier: toRole, ...(source ? {} : { sourceOwner: fromRole }), near: sourceSchema, searchPath: searchPathSchemas },
    capability.role,
    !(await roleExists(tx, toRole)),
  );
  if (!source) return plan;
  // Named after the new schema's OID, as a snapshot's copier is: never a reader's name used before.
  const [made] = await tx.query<{ oid: string }>('SELECT $1::pg_catalog.regnamespace::pg_catalog.oid::int8::text AS oid', [quoteIdent(r.toSchema)]);
  const reader = roleNameFor(capability.database, `${r.to}--reader-${made?.oid ?? ''}`);
  return { ...plan, snapshotGrants: await grantSnapshotReading(tx, r.from, sourceSchema, reader, toRole, forkOfSnapshot(r)) };
}

/**
 * A new workspace `to`, with its own role and SQL sandbox, holding a copy of `from`'s current
 * state or of one of its snapshots. The copy runs as `from`'s role (its code, its data), in
 * `from`'s sandbox, then everything is handed to `to`'s role; on Citus (`prepared`) it runs as
 * `to`'s role, reading through the membership prepareForkOnCitus granted. Refused where anything
 * of `to` exists. Under both ids' locks, in id order.
 */
export async function forkWorkspace(
  tx: Queryable,
  r: ForkRequest,
  searchPathSchemas: readonly string[],
  lockTimeoutMs: number,
  runner: WorkspaceRunner,
  prepared?: CitusCopyPlan,
): Promise<{ createdAt: Date; changes: string[] }> {
  if (prepared) for (const id of [r.from, r.to].sort()) await lockWorkspace(tx, id, lockTimeoutMs);
  const { source, capability, fromRole, toRole, sourceSchema } = prepared
    ? await forkSourceOnCitus(tx, r, searchPathSchemas)
    : await forkChecks(tx, r, searchPathSchemas, lockTimeoutMs, false);
  const level = source ?? (await workspaceLevel(tx, r.from));
  const copy = { source: sourceSchema, roleMap: { [fromRole]: toRole }, lockSource: source === undefined };
  if (prepared) {
    if (prepared.snapshotGrants) await requireSnapshotReading(tx, prepared.snapshotGrants, forkOfSnapshot(r));
    await copyOnCitus(tx, prepared, copy, true);
    if (source && prepared.snapshotGrants) {
      const readers = await snapshotReaders(tx, prepared.snapshotGrants);
      await refuseSourceBridges(tx, r, sourceSchema, fromRole, await snapshotRoleOf(tx, r.from, capability.database), readers);
    }
  } else {
    const [to, from] = [quoteIdent(r.toSchema), quoteIdent(fromRole)];
    await tx.exec(`CREATE SCHEMA ${to}`);
    await tx.exec(principalScript({ schemaName: r.toSchema, roleName: toRole, searchPath: searchPathSchemas }, true, capability.role));
    await runner.ensurePrincipal(tx, r.from);
    // For the copy only: `from`'s role writes into the new schema and, from a snapshot, reads it
    // through views owned by the snapshot role and no more (snapshot-reader.ts): the code the copy
    // runs must not change the snapshot. Nobody else sees any of it before the commit.
    await tx.exec(`GRANT USAGE, CREATE ON SCHEMA ${to} TO ${from}`);
    const keeper = source ? await snapshotRoleOf(tx, r.from, capability.database) : undefined;
    const reading = keeper ? await openSnapshotViews(tx, sourceSchema, keeper, fromRole) : undefined;
    await runner.runAsWorkspace(tx, r.from, schemaCopyScript({ ...copy, target: r.toSchema, ...(reading ? { readFrom: reading.schema, definers: reading.definers.map((d) => d.oid) } : {}) }));
    if (!source) await refuseWhileDeferred(tx, r.from, 'fork');
    await tx.exec(`REVOKE ALL ON SCHEMA ${to} FROM ${from}`);
    if (reading && keeper) {
      await closeSnapshotViews(tx, reading, forkOfSnapshot(r));
      await refuseSourceBridges(tx, r, sourceSchema, fromRole, keeper);
    }
    await tx.exec(`SELECT ${quoteIdent(SANDBOX_SCHEMA)}.adopt_objects(${literal(r.toSchema)}, ${literal(toRole)})`);
  }
  await refuseForkBridges(tx, { from: r.from, to: r.to, toSchema: r.toSchema, toRole });
  const createdAt = await registerFork(tx, r.to, r.toSchema, level);
  await markWorkspaceSchema(tx, r.toSchema, r.to);
  return {
    createdAt,
    changes: [
      `created schema ${r.toSchema} with a copy of ${source ? `snapshot ${r.snapshot} of "${r.from}"` : `"${r.from}"`}`,
      `made its role ${toRole} and SQL sandbox`,
      `registered "${r.to}" at the migration level of what it copied`,
    ],
  };
}

const forkOfSnapshot = (r: ForkRequest) => `The fork of snapshot ${r.snapshot} of "${r.from}" into "${r.to}"`;

/**
 * After a fork of a snapshot: nothing the copy's code made may depend on the snapshot (a column of
 * one of its types, which an ALTER TYPE after a restore would reach), nor hold it otherwise.
 */
async function refuseSourceBridges(tx: Queryable, r: ForkRequest, snapshotSchema: string, fromRole: string, keeper: string, readers?: readonly string[]): Promise<void> {
  const otherSnapshots = await otherSnapshotSchemas(tx, r.from, snapshotSchema);
  await refuseSnapshotBridges(tx, { projectId: r.from, schema: snapshotSchema, keeper, workspaceRole: fromRole, otherSnapshots, ...(readers ? { readers } : {}) }, forkOfSnapshot(r));
}

/** On Citus, after the preparation committed: `from` and its snapshot still there, `to` still unregistered. */
async function forkSourceOnCitus(tx: Queryable, r: ForkRequest, searchPathSchemas: readonly string[]) {
  await requireWorkspace(tx, r.from, r.fromSchema);
  const source = r.snapshot === undefined ? undefined : await requireSnapshot(tx, r.from, r.snapshot);
  if ((await workspacePresence(tx, r.to, r.toSchema)).registered) throw new WorkspaceLifecycleError(`"${r.to}" was registered meanwhile. Nothing was changed.`);
  const capability = await readSandboxCapability(tx, searchPathSchemas);
  const [fromRole, toRole] = [await workspaceRoleOf(tx, r.from, capability.database), roleNameFor(capability.database, r.to)];
  return { source, capability, fromRole, toRole, sourceSchema: source?.schema_name ?? r.fromSchema };
}
