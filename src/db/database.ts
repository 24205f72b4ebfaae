/** The one database surface the engine uses, implemented by PGlite (embedded) and `pg` (server). */

export type Row = Record<string, unknown>;

export interface Queryable {
  /** One statement, values always as parameters. */
  query<R = Row>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** A multi-statement script in one round trip (simple protocol, so no parameters). */
  exec(sql: string): Promise<void>;
}

/** Who holds a lock, for the messages of those waiting for it. */
export interface LockHolder {
  pid: number;
  application_name: string;
  client_addr: string | null;
  state: string | null;
  held_seconds: number | null;
}

/** Locks taken inside `Database.withLocks`, each held until that scope ends. */
export interface LockScope {
  /** Takes the lock `key` unless another holder has it; never waits. */
  tryLock(key: bigint): Promise<boolean>;
  /** Who holds `key` now (empty when nobody does). */
  holders(key: bigint): Promise<LockHolder[]>;
}

export interface Database extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** Where the data lives, safe to log (no password). */
  readonly description: string;
  /** BEGIN … COMMIT around `fn`; ROLLBACK when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Pins one session for `fn`, for work that must stay on the same backend. */
  withSession<T>(fn: (session: Queryable) => Promise<T>): Promise<T>;
  /**
   * A scope for locks that exclude every other process using this database while work runs on
   * other sessions (the install lock). How depends on the backend: on PostgreSQL an advisory
   * lock in a transaction kept open on a session of its own; on the embedded store, whose one
   * session every process shares, a file lock in the data directory.
   */
  withLocks<T>(fn: (locks: LockScope) => Promise<T>): Promise<T>;
  /** Called once the `vector` extension exists, so vector columns come back as arrays. */
  registerVectorTypes(): Promise<void>;
  close(): Promise<void>;
}

/** Runs `fn` in a transaction on an already pinned session. */
export async function inTransaction<T>(session: Queryable, fn: () => Promise<T>): Promise<T> {
  await session.query('BEGIN');
  try {
    const result = await fn();
    await session.query('COMMIT');
    return result;
  } catch (error) {
    await session.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/**
 * The parts of a Database that follow from pinning sessions: a query, a script or a
 * transaction is a session borrowed for just that long.
 */
export abstract class SessionDatabase implements Database {
  abstract readonly kind: Database['kind'];
  abstract readonly description: string;
  abstract withSession<T>(fn: (session: Queryable) => Promise<T>): Promise<T>;
  abstract withLocks<T>(fn: (locks: LockScope) => Promise<T>): Promise<T>;
  abstract registerVectorTypes(): Promise<void>;
  abstract close(): Promise<void>;

  query<R = Row>(sql: string, params?: readonly unknown[]): Promise<R[]> {
    return this.withSession((s) => s.query<R>(sql, params));
  }

  exec(sql: string): Promise<void> {
    return this.withSession((s) => s.exec(sql));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.withSession((s) => inTransaction(s, () => fn(s)));
  }
}
