import pg from 'pg';
import type { Queryable } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { dropSchemaCascade } from '../db/postgres/citus.js';
import { dropRoleSql, memberFor } from '../db/role-membership.js';
import { describePgError } from '../db/sql-errors.js';
import {
  deleteWorkspaceRows,
  renameWorkspaceRows,
  roleExists,
  workspacePresence,
} from '../registry/lifecycle-queries.js';
import { readSandboxCapability } from '../sandbox/sandbox-capability.js';
import { bumpRegistryGeneration, lockWorkspace, markWorkspaceSchema, roleUsesElsewhere, setSnapshotRole, setWorkspaceRole } from '../registry/registry-sql.js';
import { listSnapshots } from '../registry/snapshot-queries.js';
import { dropSandboxFunction, principalScript, roleNameFor, SANDBOX_SCHEMA, snapshotRoleNameFor } from '../sandbox/sandbox-ddl.js';
import { snapshotRoleOf, workspaceRoleOf } from '../sandbox/workspace-role.js';
import { snapshotSchemaName } from './project-id.js';

/*
 * Removing and renaming a workspace, as steps in the caller's transaction under the workspace's
 * lock: drop_workspace (the tool and the CLI), rename-workspace and repair --forget-missing share
 * them. Each bumps the registry generation, which servers caching workspaces watch.
 */

export interface DropOutcome {
  projectId: string;
  schemaName: string;
  /** False when nothing of the workspace existed (no schema, registry row or role). */
  dropped: boolean;
  /** What was removed, one phrase each. */
  changes: string[];
}

/** A drop or rename that would not be safe; nothing was changed. */
export class WorkspaceLifecycleError extends Error {
  override name = 'WorkspaceLifecycleError';
}

/**
 * Deletes a workspace's registry and ledger rows, its SQL sandbox function and its role (which
 * nothing else uses), and bumps the registry's generation so that servers caching the workspace
 * look again once this commits. A role the server's role cannot drop (no CREATEROLE) is kept and
 * said so, with the statement to run. With `keepRole` (Citus) the role stays: each coordinator
 * session caches its connections to the workers per role, and one made as a dropped role keeps
 * the dropped role's identity, so a role dropped and made again under the same name would be
 * refused on the workers through other servers' cached connections (until they close); a
 * workspace made again under that id reuses the role. Returns what it changed.
 */
export async function forgetWorkspace(tx: Queryable, projectId: string, schemaName: string, { keepRole = false, citus = false } = {}): Promise<string[]> {
  const role = await workspaceRoleOf(tx, projectId);
  // Read before the registry row goes.
  const keeper = await snapshotRoleOf(tx, projectId);
  const snapshots = await dropSnapshotSchemas(tx, projectId, citus);
  const { ledgerRows, registryRows } = await deleteWorkspaceRows(tx, projectId);
  const changes = registryRows + ledgerRows > 0 ? [`deleted ${registryRows} registry row and ${ledgerRows} ledger row(s) of schema ${schemaName}`] : [];
  changes.push(...snapshots);
  if (keepRole) {
    await tx.exec(dropSandboxFunction(schemaName));
    if (await roleExists(tx, role)) {
      // Large objects belong to no schema: kept with the role, the next workspace of this id read them.
      const unlinked = await tx.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_catalog.pg_largeobject_metadata WHERE lomowner = pg_catalog.to_regrole($1)',
        [quoteIdent(role)],
      );
      if ((unlinked[0]?.n ?? 0) > 0) {
        await tx.exec(memberFor(role, `SELECT pg_catalog.lo_unlink(m.oid) FROM pg_catalog.pg_largeobject_metadata m WHERE m.lomowner = ${pg.escapeLiteral(quoteIdent(role))}::pg_catalog.regrole`));
        changes.push(`unlinked its ${unlinked[0]?.n} large object(s)`);
      }
      changes.push(`dropped its sandbox function and kept its role ${role} (Citus: see docs/citus.md)`);
    }
    await bumpRegistryGeneration(tx);
    return changes;
  }
  await tx.query('SAVEPOINT forget_role');
  try {
    await tx.exec(dropSandboxFunction(schemaName));
    // DROP OWNED BY reaches every schema: a role that serves anything else (shared under the
    // naming of before 2026-12) is kept, and so is what it serves.
    const elsewhere = (await roleExists(tx, role)) ? await roleUsesElsewhere(tx, role, schemaName, SANDBOX_SCHEMA) : undefined;
    if (elsewhere && elsewhere.length > 0) {
      changes.push(`kept its role ${role}: it also serves ${elsewhere.join(', ')} (doctor reports it as a shared role)`);
    } else if (elsewhere) {
      await tx.exec(dropRoleSql(role));
      changes.push(`dropped its role ${role} and sandbox function`);
    }
    if (await roleExists(tx, keeper)) {
      await tx.exec(dropRoleSql(keeper));
      changes.push(`dropped its snapshot role ${keeper}`);
    }
    await tx.query('RELEASE SAVEPOINT forget_role');
  } catch (error) {
    await tx.query('ROLLBACK TO SAVEPOINT forget_role');
    changes.push(`kept its role ${role}: ${describePgError(error)} (drop it as a role with CREATEROLE: ${dropRoleSql(role)};)`);
  }
  await bumpRegistryGeneration(tx);
  return changes;
}

/**
 * Drops everything of a workspace that exists: its schema with all it holds (CASCADE), then what
 * forgetWorkspace removes. Under the workspace's lock, so a concurrent ensure_workspace either
 * finished before (and its workspace is dropped whole) or waits and then creates it anew.
 */
export async function dropWorkspace(
  tx: Queryable,
  projectId: string,
  schemaName: string,
  { lockTimeoutMs, citus }: { lockTimeoutMs: number; citus: boolean },
): Promise<DropOutcome> {
  await lockWorkspace(tx, projectId, lockTimeoutMs);
  const now = await workspacePresence(tx, projectId, schemaName);
  const role = await workspaceRoleOf(tx, projectId);
  // On Citus the role outlives its workspace (forgetWorkspace): by itself it is nothing to drop.
  if (!now.registered && !now.schema_exists && (citus || !(await roleExists(tx, role)))) return { projectId, schemaName, dropped: false, changes: [] };
  const changes: string[] = [];
  if (now.schema_exists) {
    if (!now.acts_as_owner) {
      throw new WorkspaceLifecycleError(
        `Schema ${schemaName} belongs to role "${now.owner}", which this server's role cannot act as, so it cannot drop it: ` +
          `drop it as that role (DROP SCHEMA ${quoteIdent(schemaName)} CASCADE), then drop the workspace again to remove the rest.`,
      );
    }
    await dropSchemaCascade(tx, schemaName, citus);
    changes.push(`dropped schema ${schemaName} and everything in it`);
  }
  changes.push(...(await forgetWorkspace(tx, projectId, schemaName, { keepRole: citus, citus })));
  return { projectId, schemaName, dropped: true, changes };
}

export interface RenameRequest {
  from: string;
  to: string;
  fromSchema: string;
  toSchema: string;
}

/**
 * Renames a workspace: its schema (the tables and their data go with it), its registry and
 * ledger rows, its role, its snapshots (schemas, rows and snapshot role); its SQL sandbox
 * function, whose body names the schema and the role, is made anew. Under both ids' locks, taken in id order so that two renames crossing each other
 * cannot deadlock. Refused when the source is not a whole workspace or anything of the target
 * exists. Agent code that spells out the old schema name (a function body, say) is not rewritten.
 */
export async function renameWorkspace(
  tx: Queryable,
  r: RenameRequest,
  searchPathSchemas: readonly string[],
  lockTimeoutMs: number,
): Promise<string[]> {
  if (r.from === r.to) throw new WorkspaceLifecycleError(`"${r.from}" is already the workspace's id: nothing to rename.`);
  for (const id of [r.from, r.to].sort()) await lockWorkspace(tx, id, lockTimeoutMs);
  const source = await workspacePresence(tx, r.from, r.fromSchema);
  if (!source.registered || !source.schema_exists) {
    throw new WorkspaceLifecycleError(
      source.registered
        ? `Workspace "${r.from}" is registered but its schema ${r.fromSchema} is gone: nothing to rename (repair --forget-missing forgets it).`
        : `Workspace "${r.from}" does not exist: nothing to rename.`,
    );
  }
  if (!source.acts_as_owner) {
    throw new WorkspaceLifecycleError(`Schema ${r.fromSchema} belongs to role "${source.owner}", which this server's role cannot act as, so it cannot rename it.`);
  }
  const capability = await readSandboxCapability(tx, searchPathSchemas);
  const [fromRole, toRole] = [await workspaceRoleOf(tx, r.from, capability.database), roleNameFor(capability.database, r.to)];
  const [fromKeeper, toKeeper] = [await snapshotRoleOf(tx, r.from, capability.database), snapshotRoleNameFor(capability.database, r.to)];
  // The snapshots go along: their schemas are named for the workspace's, their role for its id.
  const snapshots = (await listSnapshots(tx, r.from)).map((s) => ({ from: s.schema_name, snapshot: s.snapshot, schemaName: snapshotSchemaName(r.toSchema, s.snapshot) }));
  const target = await workspacePresence(tx, r.to, r.toSchema);
  const taken = target.registered
    ? 'registered'
    : target.schema_exists
      ? `schema ${r.toSchema} exists`
      : (await roleExists(tx, toRole))
        ? `role ${toRole} exists`
        : (await roleExists(tx, toKeeper))
          ? `role ${toKeeper} exists`
          : (await schemasExisting(tx, snapshots.map((s) => s.schemaName)))[0];
  if (taken) throw new WorkspaceLifecycleError(`"${r.to}" is taken (${taken}): drop it first (pg-workspace-mcp drop-workspace ${r.to}) or choose another id.`);
  const shared = (await roleExists(tx, fromRole)) ? await roleUsesElsewhere(tx, fromRole, r.fromSchema, SANDBOX_SCHEMA) : [];
  if (shared.length > 0) {
    throw new WorkspaceLifecycleError(`The role ${fromRole} of "${r.from}" also serves ${shared.join(', ')}: renaming it would rename theirs (doctor reports shared roles).`);
  }
  await tx.exec(`ALTER SCHEMA ${quoteIdent(r.fromSchema)} RENAME TO ${quoteIdent(r.toSchema)}`);
  await markWorkspaceSchema(tx, r.toSchema, r.to);
  for (const s of snapshots) await tx.exec(`ALTER SCHEMA ${quoteIdent(s.from)} RENAME TO ${quoteIdent(s.schemaName)}`);
  const rows = await renameWorkspaceRows(tx, r.from, r.to, r.toSchema, snapshots);
  const changes = [
    `renamed schema ${r.fromSchema} to ${r.toSchema}`,
    `moved ${rows.registryRows} registry row and ${rows.ledgerRows} ledger row(s) to "${r.to}"`,
  ];
  if (snapshots.length > 0) changes.push(`renamed its ${rows.snapshotRows} snapshot(s) to ${snapshots.map((s) => s.schemaName).join(', ')}`);
  if (await roleExists(tx, fromKeeper)) {
    await tx.exec(`ALTER ROLE ${quoteIdent(fromKeeper)} RENAME TO ${quoteIdent(toKeeper)}`);
    changes.push(`renamed its snapshot role ${fromKeeper} to ${toKeeper}`);
  }
  // The row kept the old id's recorded snapshot role (if any): it now has the new id's name.
  await setSnapshotRole(tx, r.to, (await roleExists(tx, toKeeper)) ? toKeeper : null);
  await tx.exec(dropSandboxFunction(r.fromSchema));
  if (await roleExists(tx, fromRole)) {
    await tx.exec(`ALTER ROLE ${quoteIdent(fromRole)} RENAME TO ${quoteIdent(toRole)}`);
    await tx.exec(principalScript({ schemaName: r.toSchema, roleName: toRole, searchPath: searchPathSchemas }, false, capability.role));

    changes.push(`renamed its role ${fromRole} to ${toRole} and made its SQL sandbox anew`);
  }
  // The row kept the old id's recorded role: the role now has the new id's name, or never existed.
  await setWorkspaceRole(tx, r.to, (await roleExists(tx, toRole)) ? toRole : null);
  await bumpRegistryGeneration(tx);
  return changes;
}

/**
 * Drops the schemas of every snapshot of a workspace being forgotten (their rows go with the
 * registry row); forgetWorkspace drops its snapshot role with its own. What it changed.
 */
async function dropSnapshotSchemas(tx: Queryable, projectId: string, citus: boolean): Promise<string[]> {
  const rows = await listSnapshots(tx, projectId);
  for (const row of rows) await dropSchemaCascade(tx, row.schema_name, citus);
  return rows.length > 0 ? [`dropped its ${rows.length} snapshot(s): ${rows.map((r) => r.schema_name).join(', ')}`] : [];
}

/** Which of `names` are existing schemas. */
async function schemasExisting(tx: Queryable, names: readonly string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const rows = await tx.query<{ nspname: string }>('SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY ($1::text[])', [[...names]]);
  return rows.map((r) => `schema ${r.nspname} exists`);
}
