import { isConnectionFailure, sqlState } from './db/sql-errors.js';
import { InstallLockTimeoutError } from './installer/install-lock.js';

/**
 * Boot failures that a later call can get past without restarting the server: the database was
 * unreachable or went away mid-install, a privilege was missing (an administrator may run the
 * GRANT the message gave), or another installer held the lock for too long. Each is looked for
 * along the cause chain, since the installer wraps what PostgreSQL said. Anything else (bad
 * extension SQL, an edited migration) needs a change and a restart, so it stays final.
 */
export function isRetriedBootFailure(error: unknown): boolean {
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof InstallLockTimeoutError || isConnectionFailure(e)) return true;
    if (sqlState(e) === '42501' || (e as { sqlState?: unknown }).sqlState === '42501') return true;
  }
  return false;
}
