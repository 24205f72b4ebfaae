import type { Database, Queryable } from '../db/database.js';
import { inTransaction } from '../db/database.js';
import type { Logger } from '../logger.js';

/**
 * Every pg-workspace-mcp process locks this key for the install: the bytes spell "pgwsmcp"
 * followed by 1, so it is unlikely to collide with another application's advisory locks.
 */
export const INSTALL_LOCK_KEY = 0x70_67_77_73_6d_63_70_01n;

export class InstallLockTimeoutError extends Error {
  override name = 'InstallLockTimeoutError';
}

export type LockHolder = {
  pid: number;
  application_name: string;
  client_addr: string | null;
  state: string | null;
  held_seconds: number | null;
};

export interface InstallLockOptions {
  lockTimeoutMs: number;
  log: Logger;
}

/**
 * Runs `body` while holding the install lock.
 *
 * On PostgreSQL the lock is transaction-scoped and lives in a transaction kept open on a
 * session of its own while the phases commit on others. Unlike a session lock it cannot leak
 * behind PgBouncer's transaction pooling, and it dies with the session if the process does.
 * PGlite has a single session (and the data directory is locked against other processes), so
 * there a session lock on that one session is enough.
 */
export async function withInstallLock<T>(
  db: Database,
  options: InstallLockOptions,
  body: () => Promise<T>,
): Promise<T> {
  if (db.kind === 'pglite') {
    await db.query('SELECT pg_advisory_lock($1::bigint)', [INSTALL_LOCK_KEY.toString()]);
    try {
      return await body();
    } finally {
      await db.query('SELECT pg_advisory_unlock($1::bigint)', [INSTALL_LOCK_KEY.toString()]);
    }
  }
  return db.withSession((lockSession) =>
    inTransaction(lockSession, async () => {
      // A server-wide idle-in-transaction timeout would otherwise end the lock mid-install.
      await lockSession.query('SET LOCAL idle_in_transaction_session_timeout = 0');
      await waitForLock(lockSession, db, options);
      return body();
    }),
  );
}

async function waitForLock(lockSession: Queryable, db: Database, { lockTimeoutMs: timeoutMs, log }: InstallLockOptions) {
  const started = Date.now();
  let nextReport = started;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    const [row] = await lockSession.query<{ locked: boolean }>(
      'SELECT pg_try_advisory_xact_lock($1::bigint) AS locked',
      [INSTALL_LOCK_KEY.toString()],
    );
    if (row?.locked) return;
    const waited = Date.now() - started;
    if (waited >= timeoutMs || Date.now() >= nextReport) {
      const holders = await installLockHolders(db);
      if (waited >= timeoutMs) {
        throw new InstallLockTimeoutError(
          `Gave up waiting for the install lock after ${waited} ms; it is held by ${describeHolders(holders)}. ` +
            `Another pg-workspace-mcp is installing extension schemas on this database: let it finish, ` +
            `or end that session (SELECT pg_terminate_backend(<pid>)) if it is stuck, ` +
            `or raise PG_WORKSPACE_LOCK_TIMEOUT_MS (now ${timeoutMs}).`,
        );
      }
      log.info('waiting for the install lock', { waited_ms: waited, holders });
      nextReport = Date.now() + 5000;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(delay, timeoutMs - waited)));
  }
}

/** Who holds the install lock: a bigint advisory key shows up as classid (high) / objid (low). */
export function installLockHolders(db: Database): Promise<LockHolder[]> {
  return db.query<LockHolder>(
    `SELECT a.pid, a.application_name, a.client_addr::text AS client_addr, a.state,
            round(extract(epoch FROM now() - a.xact_start))::int AS held_seconds
       FROM pg_catalog.pg_locks l
       JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid`,
    [INSTALL_LOCK_KEY.toString()],
  );
}

function describeHolders(holders: readonly LockHolder[]): string {
  if (holders.length === 0) return 'a session that has just released it';
  return holders
    .map((h) => `pid ${h.pid} (${h.application_name || 'no application_name'}${h.client_addr ? ` from ${h.client_addr}` : ''}, for ${h.held_seconds ?? '?'} s)`)
    .join(', ');
}
