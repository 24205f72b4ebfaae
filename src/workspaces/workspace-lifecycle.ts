import type { Queryable } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { describePgError } from '../db/sql-errors.js';
import { currentDatabase, deleteWorkspaceRows, roleExists, workspacePresence } from '../registry/operations-queries.js';
import { bumpRegistryGeneration, lockWorkspace } from '../registry/registry-sql.js';
import { roleNameFor, sandboxFunction } from '../sandbox/sandbox-ddl.js';

/*
 * Removing a workspace, as steps in the caller's transaction under the workspace's lock:
 * drop_workspace (the tool and the CLI) and repair --forget-missing share them.
 */

export interface DropOutcome {
  projectId: string;
  schemaName: string;
  /** False when nothing of the workspace existed (no schema, registry row or role). */
  dropped: boolean;
  /** What was removed, one phrase each. */
  changes: string[];
}

export class WorkspaceDropRefusedError extends Error {
  override name = 'WorkspaceDropRefusedError';
}

/**
 * Deletes a workspace's registry and ledger rows, its SQL sandbox function and its role (which
 * nothing else uses), and bumps the registry's generation so that servers caching the workspace
 * look again once this commits. A role the server's role cannot drop (no CREATEROLE) is kept and
 * said so, with the statement to run. Returns what it changed.
 */
export async function forgetWorkspace(tx: Queryable, projectId: string, schemaName: string): Promise<string[]> {
  const { ledgerRows, registryRows } = await deleteWorkspaceRows(tx, projectId);
  const changes = registryRows + ledgerRows > 0 ? [`deleted ${registryRows} registry row and ${ledgerRows} ledger row(s) of schema ${schemaName}`] : [];
  const role = roleNameFor(await currentDatabase(tx), projectId);
  await tx.query('SAVEPOINT forget_role');
  try {
    await tx.exec(`DROP FUNCTION IF EXISTS ${sandboxFunction(schemaName)}(text, text, integer)`);
    if (await roleExists(tx, role)) {
      await tx.exec(`DROP OWNED BY ${quoteIdent(role)}; DROP ROLE ${quoteIdent(role)}`);
      changes.push(`dropped its role ${role} and sandbox function`);
    }
    await tx.query('RELEASE SAVEPOINT forget_role');
  } catch (error) {
    await tx.query('ROLLBACK TO SAVEPOINT forget_role');
    changes.push(`kept its role ${role}: ${describePgError(error)} (drop it as a role with CREATEROLE: DROP OWNED BY ${quoteIdent(role)}; DROP ROLE ${quoteIdent(role)};)`);
  }
  await bumpRegistryGeneration(tx);
  return changes;
}

/**
 * Drops everything of a workspace that exists: its schema with all it holds (CASCADE), then what
 * forgetWorkspace removes. Under the workspace's lock, so a concurrent ensure_workspace either
 * finished before (and its workspace is dropped whole) or waits and then creates it anew.
 */
export async function dropWorkspace(tx: Queryable, projectId: string, schemaName: string, lockTimeoutMs: number): Promise<DropOutcome> {
  await lockWorkspace(tx, projectId, lockTimeoutMs);
  const now = await workspacePresence(tx, projectId, schemaName);
  const role = roleNameFor(await currentDatabase(tx), projectId);
  if (!now.registered && !now.schema_exists && !(await roleExists(tx, role))) return { projectId, schemaName, dropped: false, changes: [] };
  const changes: string[] = [];
  if (now.schema_exists) {
    if (!now.acts_as_owner) {
      throw new WorkspaceDropRefusedError(
        `Schema ${schemaName} belongs to role "${now.owner}", which this server's role cannot act as, so it cannot drop it: ` +
          `drop it as that role (DROP SCHEMA ${quoteIdent(schemaName)} CASCADE), then drop the workspace again to remove the rest.`,
      );
    }
    await tx.exec(`DROP SCHEMA ${quoteIdent(schemaName)} CASCADE`);
    changes.push(`dropped schema ${schemaName} and everything in it`);
  }
  changes.push(...(await forgetWorkspace(tx, projectId, schemaName)));
  return { projectId, schemaName, dropped: true, changes };
}
