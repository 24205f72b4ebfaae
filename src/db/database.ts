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

/** What one try for an exclusive lock learned: taken, or busy (with its holders when asked). */
export type LockDecision = { locked: true } | { locked: false; holders: LockHolder[] | undefined };

/** The caller's side of one try (see `Database.tryExclusive`). */
export interface LockTry {
  /** Whether a busy try should name the holders (for a progress report or the final error). */
  nameHolders(): boolean;
  /** Told as soon as the try knows; false means the caller has given up, so a lock taken now is let go unused. */
  decide(decision: LockDecision): boolean;
}

/**
 * One step of a pipeline: a statement with text parameters, or a Describe of a named portal
 * (a cursor), which reports its columns without running it. A `COPY ... FROM STDIN` statement
 * carries its data in `copyIn`, sent right after it.
 */
export type PipelineStep = { sql: string; params?: readonly (string | null)[]; copyIn?: Uint8Array } | { describePortal: string };

export interface PipelineField {
  name: string;
  dataTypeID: number;
  dataTypeModifier: number;
}

export interface PipelineOutcome {
  /** One entry per step that completed: text rows of a statement, or the fields of a portal. */
  results: { rows: (string | null)[][]; fields: PipelineField[] }[];
  /** The server's error if a step failed: the later steps were skipped and everything rolled back. */
  error?: unknown;
}

export interface Database extends Queryable {
  /** Where the data lives, safe to log (no password). */
  readonly description: string;
  /** BEGIN … COMMIT around `fn`; ROLLBACK when it throws. `agentOf`: as for `pipeline`. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>, agentOf?: string): Promise<T>;
  /** Pins one session for `fn`, for work that must stay on the same backend. `agentOf`: as for `pipeline`. */
  withSession<T>(fn: (session: Queryable) => Promise<T>, agentOf?: string): Promise<T>;
  /**
   * One try, never waiting, for the lock `key` that excludes every other process using this
   * database while `body` runs on other sessions (the install lock): taken, `body` runs while it
   * is held and its value is returned; busy, undefined. How depends on the backend: on
   * PostgreSQL a transaction-scoped advisory lock in a transaction of its own, so a waiter holds
   * no pooled connection between tries; on the embedded store, whose one session every process
   * shares, a file lock in the data directory.
   */
  tryExclusive<T>(key: bigint, attempt: LockTry, body: () => Promise<T>): Promise<T | undefined>;
  /** Who holds the lock `key` now (empty when nobody does). */
  lockHolders(key: bigint): Promise<LockHolder[]>;
  /**
   * Sends the steps in one round trip, ended by one Sync: they form one implicit transaction,
   * committed when all succeed. The session is clean afterwards (no transaction left open).
   * `agentOf` names the workspace whose agent code the steps may run: a custom setting
   * (`set_config('x.y', ...)`) leaves a placeholder in the session that PostgreSQL can neither
   * list nor remove, so the session is claimed for the workspace first (session-claims.ts): a
   * pooled connection that ran another workspace's agent code (or an earlier workspace of the
   * same id) is never used, and the embedded store's one session is replaced by a new one when
   * it holds another workspace's placeholders. `signal`: aborted while the steps run, the running
   * statement is cancelled (57014, as a cancel request ends it) and the transaction rolled back;
   * aborted before they are sent, none is (a StatementCancelledError).
   */
  pipeline(steps: readonly PipelineStep[], agentOf?: string, signal?: AbortSignal): Promise<PipelineOutcome>;
  /**
   * Runs one statement that cannot run in a transaction (VACUUM) as `role`, a workspace role
   * (the server is a member of it only while it sets it), with a statement timeout; the role is
   * never left on a session another caller may use. `agentOf`: as for `pipeline` (the table's
   * code, index expressions, is the workspace's).
   */
  runAsRole(role: string, sql: string, timeoutMs: number, agentOf?: string): Promise<void>;
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
  abstract readonly description: string;
  abstract withSession<T>(fn: (session: Queryable) => Promise<T>, agentOf?: string): Promise<T>;
  abstract tryExclusive<T>(key: bigint, attempt: LockTry, body: () => Promise<T>): Promise<T | undefined>;
  abstract lockHolders(key: bigint): Promise<LockHolder[]>;
  abstract registerVectorTypes(): Promise<void>;
  abstract runAsRole(role: string, sql: string, timeoutMs: number, agentOf?: string): Promise<void>;
  abstract pipeline(steps: readonly PipelineStep[], agentOf?: string, signal?: AbortSignal): Promise<PipelineOutcome>;
  abstract close(): Promise<void>;

  query<R = Row>(sql: string, params?: readonly unknown[]): Promise<R[]> {
    return this.withSession((s) => s.query<R>(sql, params));
  }

  exec(sql: string): Promise<void> {
    return this.withSession((s) => s.exec(sql));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>, agentOf?: string): Promise<T> {
    return this.withSession((s) => inTransaction(s, () => fn(s)), agentOf);
  }
}

/** The first row of a statement that always returns one (an aggregate, EXISTS): an error naming the statement if none came. */
export async function firstRow<R>(q: Queryable, sql: string, params: readonly unknown[] = []): Promise<R> {
  const [row] = await q.query<R>(sql, params);
  if (!row) throw new Error(`expected a row from: ${sql.trim().split('\n')[0]}`);
  return row;
}
