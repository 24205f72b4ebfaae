import type { Database, Queryable } from '../db/database.js';
import { inTransaction } from '../db/database.js';
import type { Logger } from '../logger.js';

/**
 * Every pg-workspace-mcp process locks this key for the install: the bytes spell "pgwsmcp"
 * followed by 1, so it is unlikely to collide with another application's advisory locks.
 */
export const INSTALL_LOCK_KEY = 0x70_67_77_73_6d_63_70_01n;

/** How long one try may take to get a connection and an answer before the wait counts as stuck. */
const TRY_GRACE_MS = 2000;
/** A waiter's pause between tries: doubling from the first to the last, then staying there. */
const FIRST_RETRY_DELAY_MS = 50;
const MAX_RETRY_DELAY_MS = 1000;
/** How often a waiter logs who holds the lock. */
const HOLDERS_REPORT_INTERVAL_MS = 5000;
/** How long the timeout error may wait to name the holders. */
const HOLDERS_LOOKUP_MS = 1000;

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
 *
 * A waiter tries in short transactions and gives its connection back between tries: behind a
 * pooler with few server connections, a waiter that kept one would starve the holder, which
 * needs two (its lock and a phase), and all of them would wait for good.
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
  const { lockTimeoutMs: timeoutMs, log } = options;
  const started = Date.now();
  let nextReport = started;
  for (let delay = FIRST_RETRY_DELAY_MS; ; delay = Math.min(delay * 2, MAX_RETRY_DELAY_MS)) {
    // Holders are named on the try's own connection, when a report or the final error needs them.
    const attempt = tryOnce(db, () => Date.now() >= Math.min(nextReport, started + timeoutMs), body);
    // The deadline bounds the wait for the lock (and for a connection to ask on), never the
    // install; a try under way when it passes gets a moment to answer (a few round trips).
    const decision = await withinDeadline(attempt.decision, Math.max(started + timeoutMs, Date.now() + TRY_GRACE_MS));
    const waited = Date.now() - started;
    if (decision === undefined) {
      attempt.abandon();
      throw timeoutError(waited, timeoutMs, `no connection was free to ask on within ${TRY_GRACE_MS} ms (a pooler with too few server connections?)`);
    }
    if (decision.locked) return (await attempt.done) as T;
    await attempt.done;
    if (waited >= timeoutMs) {
      const holders = decision.holders ?? (await withinDeadline(installLockHolders(db), Date.now() + HOLDERS_LOOKUP_MS));
      throw timeoutError(waited, timeoutMs, `it is held by ${holders ? describeHolders(holders) : 'a session that could not be named'}`);
    }
    if (decision.holders) {
      log.info('waiting for the install lock', { waited_ms: waited, holders: decision.holders });
      nextReport = Date.now() + HOLDERS_REPORT_INTERVAL_MS;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(delay, timeoutMs - waited))));
  }
}

type Decision = { locked: true } | { locked: false; holders: LockHolder[] | undefined };

/**
 * One try in one transaction: with the lock, `body` runs while it is held; without, the holders
 * are read on the same connection (when `nameHolders` says so) and the transaction ends at once. `decision`
 * says which as soon as it is known, `done` when the transaction is over. Abandoned (the caller
 * gave up while the try waited for a connection), a try that then gets the lock lets it go
 * without running `body`.
 */
function tryOnce<T>(db: Database, nameHolders: () => boolean, body: () => Promise<T>) {
  let abandoned = false;
  let decide!: (decision: Decision) => void;
  let fail!: (error: unknown) => void;
  const decision = new Promise<Decision>((resolve, reject) => {
    decide = resolve;
    fail = reject;
  });
  const done = db.withSession((session) =>
    inTransaction(session, async (): Promise<T | undefined> => {
      // A server-wide idle-in-transaction timeout would otherwise end the lock mid-install.
      await session.query('SET LOCAL idle_in_transaction_session_timeout = 0');
      const [row] = await session.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1::bigint) AS locked', [
        INSTALL_LOCK_KEY.toString(),
      ]);
      if (row?.locked && !abandoned) {
        decide({ locked: true });
        return body();
      }
      decide({ locked: false, holders: nameHolders() && !abandoned ? await installLockHolders(session) : undefined });
      return undefined;
    }),
  );
  // Settles the decision if the try failed before making one; once made, this does nothing.
  done.catch(fail);
  return {
    decision,
    done,
    abandon() {
      abandoned = true;
      done.catch(() => undefined);
    },
  };
}

/** `promise`'s value, or undefined once `deadline` (epoch ms) has passed without one. */
async function withinDeadline<T>(promise: Promise<T>, deadline: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function timeoutError(waited: number, timeoutMs: number, why: string): InstallLockTimeoutError {
  return new InstallLockTimeoutError(
    `Gave up waiting for the install lock after ${waited} ms; ${why}. ` +
      `Another pg-workspace-mcp is installing extension schemas on this database: let it finish, ` +
      `or end that session (SELECT pg_terminate_backend(<pid>)) if it is stuck, ` +
      `or raise PG_WORKSPACE_LOCK_TIMEOUT_MS (now ${timeoutMs}). The next tool call tries again.`,
  );
}

/** Who holds the install lock: a bigint advisory key shows up as classid (high) / objid (low). */
export function installLockHolders(db: Queryable): Promise<LockHolder[]> {
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
