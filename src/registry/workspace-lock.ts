import type { LockHolder } from '../db/database.js';
import { describeHolders } from '../db/lock-holders.js';
import { pgError } from '../db/sql-errors.js';

/**
 * Per-workspace advisory locks use the two-int4 key form (a class constant and hashtext of the
 * id), which PostgreSQL keeps apart from the bigint install lock. A hash collision between two
 * ids only makes them take turns.
 */
export const WORKSPACE_LOCK_CLASS = 0x70677773; // "pgws"

/**
 * How long provisioning (or the SQL tools' principal repair) waits for a workspace's lock. Its
 * holder is another server or a migrate-workspaces run changing the same workspace, which takes
 * milliseconds to seconds; a holder stuck longer (an idle transaction, a DDL waiting behind an
 * agent's long query) is named in the error instead of hanging the call.
 */
export const WORKSPACE_LOCK_TIMEOUT_MS = 30_000;

/** core's lock_workspace()'s SQLSTATE when the lock stayed held for the whole wait. */
const LOCK_TIMED_OUT = 'PW002';

export class WorkspaceLockTimeoutError extends Error {
  override name = 'WorkspaceLockTimeoutError';
}

/** lock_workspace()'s timeout as an error naming the holders, or undefined for any other error. */
export function workspaceLockTimeout(error: unknown, projectId: string, timeoutMs: number): WorkspaceLockTimeoutError | undefined {
  const fields = pgError(error);
  if (fields?.code !== LOCK_TIMED_OUT) return undefined;
  let holders: LockHolder[] | undefined;
  try {
    holders = JSON.parse(fields.detail ?? '') as LockHolder[];
  } catch {
    holders = undefined;
  }
  return new WorkspaceLockTimeoutError(
    `Gave up waiting for the lock of workspace "${projectId}" after ${timeoutMs} ms; it is held by ` +
      `${holders ? describeHolders(holders) : 'a session that could not be named'}. Another server or a ` +
      `migrate-workspaces run is creating or upgrading this workspace: retry the call. If it stays locked, end that ` +
      `session (SELECT pg_terminate_backend(<pid>)) if it is stuck.`,
    { cause: error },
  );
}
