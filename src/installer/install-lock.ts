import type { Database, LockHolder, LockScope } from '../db/database.js';
import type { Logger } from '../logger.js';

/**
 * Every pg-workspace-mcp process locks this key for the install: the bytes spell "pgwsmcp"
 * followed by 1, so it is unlikely to collide with another application's advisory locks.
 */
export const INSTALL_LOCK_KEY = 0x70_67_77_73_6d_63_70_01n;

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
 * it is held is the backend's business (`Database.withLocks`).
 */
export async function withInstallLock<T>(
  db: Database,
  options: InstallLockOptions,
  body: () => Promise<T>,
): Promise<T> {
  return db.withLocks(async (locks) => {
    await waitForLock(locks, options);
    return body();
  });
}

async function waitForLock(locks: LockScope, { lockTimeoutMs: timeoutMs, log }: InstallLockOptions) {
  const started = Date.now();
  let nextReport = started;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    if (await locks.tryLock(INSTALL_LOCK_KEY)) return;
    const waited = Date.now() - started;
    if (waited >= timeoutMs || Date.now() >= nextReport) {
      const holders = await locks.holders(INSTALL_LOCK_KEY);
      if (waited >= timeoutMs) {
        throw new InstallLockTimeoutError(
          `Gave up waiting for the install lock after ${waited} ms; it is held by ${describeHolders(holders)}. ` +
            `Another pg-workspace-mcp is installing extension schemas on this database: let it finish, ` +
            `or, if it is stuck, end that session (SELECT pg_terminate_backend(<pid>)) or process, ` +
            `or raise PG_WORKSPACE_LOCK_TIMEOUT_MS (now ${timeoutMs}).`,
        );
      }
      log.info('waiting for the install lock', { waited_ms: waited, holders });
      nextReport = Date.now() + 5000;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(delay, timeoutMs - waited)));
  }
}

function describeHolders(holders: readonly LockHolder[]): string {
  if (holders.length === 0) return 'a session that has just released it';
  return holders
    .map((h) => `pid ${h.pid} (${h.application_name || 'no application_name'}${h.client_addr ? ` from ${h.client_addr}` : ''}, for ${h.held_seconds ?? '?'} s)`)
    .join(', ');
}
