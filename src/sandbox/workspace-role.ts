import type { Queryable } from '../db/database.js';
import { currentDatabase } from '../registry/operations-queries.js';
import { recordedSnapshotRole, recordedWorkspaceRole } from '../registry/registry-sql.js';
import { roleNameFor, snapshotRoleNameFor } from './sandbox-ddl.js';

/**
 * A workspace's role: the one its registry row records, read and never recomputed (the database
 * may have been renamed since, and the naming changed in 2026-12); for a workspace whose SQL
 * tools never ran, the name roleNameFor gives it.
 */
export async function workspaceRoleOf(q: Queryable, projectId: string, database?: string): Promise<string> {
  return (await recordedWorkspaceRole(q, projectId)) ?? roleNameFor(database ?? (await currentDatabase(q)), projectId);
}

/**
 * A workspace's snapshot role: the one its registry row records (made before the record existed,
 * or not yet made: the name snapshotRoleNameFor gives it).
 */
export async function snapshotRoleOf(q: Queryable, projectId: string, database?: string): Promise<string> {
  return (await recordedSnapshotRole(q, projectId)) ?? snapshotRoleNameFor(database ?? (await currentDatabase(q)), projectId);
}
