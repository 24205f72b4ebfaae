import type { Database, LockDecision } from '../db/database.js';
import { describeHolders } from '../db/lock-holders.js';
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

export interface InstallLockOptions {
  lockTimeoutMs: number;
  log: Logger;
}

/**
 * Runs `body` while holding the install lock, waiting for it at most `lockTimeoutMs`. The lock
 * excludes every other process on the database while the phases commit on other sessions; how
 * it is held is the backend's business (`Database.tryExclusive`). A waiter tries again and
 * again, holding nothing between tries: behind a pooler with few server connections, a waiter
 * that kept a connection would starve the holder, which needs two (its lock and a phase).
 */
export async function withInstallLock<T>(
  db: Database,
  options: InstallLockOptions,
  body: () => Promise<T>,
): Promise<T> {
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
      const holders = decision.holders ?? (await withinDeadline(db.lockHolders(INSTALL_LOCK_KEY), Date.now() + HOLDERS_LOOKUP_MS));
      throw timeoutError(waited, timeoutMs, `it is held by ${holders ? describeHolders(holders) : 'a session that could not be named'}`);
    }
    if (decision.holders) {
      log.info('waiting for the install lock', { waited_ms: waited, holders: decision.holders });
      nextReport = Date.now() + HOLDERS_REPORT_INTERVAL_MS;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(delay, timeoutMs - waited))));
  }
}

/**
 * One try (`Database.tryExclusive`): with the lock, `body` runs while it is held; without, the
 * holders are named (when `nameHolders` says so) and the try ends at once. `decision` says which
 * as soon as it is known, `done` when the try is over. Abandoned (the caller
 * gave up while the try waited for a connection), a try that then gets the lock lets it go
 * without running `body`.
 */
function tryOnce<T>(db: Database, nameHolders: () => boolean, body: () => Promise<T>) {
  let abandoned = false;
  let decide!: (decision: LockDecision) => void;
  let fail!: (error: unknown) => void;
  const decision = new Promise<LockDecision>((resolve, reject) => {
    decide = resolve;
    fail = reject;
  });
  const done = db.tryExclusive(
    INSTALL_LOCK_KEY,
    {
      nameHolders: () => nameHolders() && !abandoned,
      decide: (made) => {
        decide(made);
        return !abandoned;
      },
    },
    body,
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
