import type { LockHolder, LockTry, PipelineOutcome, PipelineStep, Queryable } from '../database.js';
import { SessionDatabase } from '../database.js';
import { fileLockHolders, tryFileLock } from './file-locks.js';
import { AFTER_TABLE_CODE_STEPS } from '../pipeline.js';
import { PostgresDatabase } from '../postgres/postgres-database.js';
import { claimSession, isSessionTaken } from '../session-claims.js';

/** The connection could not be made: nothing was sent, so the caller may try again. */
export class NotServingError extends Error {
  override name = 'NotServingError';
}

/**
 * The embedded store as another process serves it on its unix socket (pglite-socket-server.ts),
 * through `pg`. Every client shares PGlite's one session, taking turns a transaction at a time,
 * so nothing here may rely on session state: no session SETs (SET LOCAL is fine), no named
 * prepared statements, and locks are files in the data directory rather than advisory locks,
 * which every client would hold at once.
 */
export class SocketClientDatabase extends SessionDatabase {
  readonly description: string;
  readonly #pg: PostgresDatabase;

  constructor(
    private readonly dataDir: string,
    socketDir: string,
  ) {
    super();
    this.description = `embedded PGlite at ${dataDir}`;
    // A handful of connections: they only queue at the owner, which runs one transaction at a time.
    // Calls that run agent code claim the owner's session (session-claims.ts), which the owner replaces when refused.
    this.#pg = new PostgresDatabase({ connectionString: socketUrl(socketDir), maxConnections: 4, claims: 'session' });
  }

  /** Fails with NotServingError when no connection could be made, before `fn` ran. */
  withSession<T>(fn: (session: Queryable) => Promise<T>, agentOf?: string): Promise<T> {
    return this.#connected(async (pg, connected) => {
      if (agentOf !== undefined) await this.#proveConnected(pg, connected);
      return pg.withSession((session) => {
        connected();
        return fn(session);
      }, agentOf);
    });
  }

  /** The claim of a transaction that runs agent code goes inside it (PostgresDatabase.transaction). */
  override transaction<T>(fn: (tx: Queryable) => Promise<T>, agentOf?: string): Promise<T> {
    if (agentOf === undefined) return super.transaction(fn);
    return this.#connected(async (pg, connected) => {
      await this.#proveConnected(pg, connected);
      return pg.transaction(fn, agentOf);
    });
  }

  /** A pipeline is written on a connection it already has: a failure to connect is NotServingError. */
  pipeline(steps: readonly PipelineStep[], agentOf?: string, signal?: AbortSignal): Promise<PipelineOutcome> {
    return this.#connected(async (pg, connected) => {
      await this.#proveConnected(pg, connected);
      return pg.pipeline(steps, agentOf, signal);
    });
  }

  /** The pool connects lazily: a first query proves the owner answers before anything that may not be repeated is sent. */
  async #proveConnected(pg: PostgresDatabase, connected: () => void): Promise<void> {
    await pg.query('SELECT 1');
    connected();
  }

  async #connected<T>(run: (pg: PostgresDatabase, connected: () => void) => Promise<T>): Promise<T> {
    let connected = false;
    try {
      return await run(this.#pg, () => (connected = true));
    } catch (error) {
      if (connected) throw error;
      throw new NotServingError((error as Error).message, { cause: error });
    }
  }

  tryExclusive<T>(key: bigint, attempt: LockTry, body: () => Promise<T>): Promise<T | undefined> {
    return tryFileLock(this.dataDir, key, attempt, body);
  }

  lockHolders(key: bigint): Promise<LockHolder[]> {
    return fileLockHolders(this.dataDir, key);
  }

  /**
   * The owner gives its one session to a client a transaction at a time, so a role set before a
   * statement that cannot run in a transaction would be the next client's as well: the statement
   * runs as the store's own role (a superuser). Callers check what it may touch beforehand, and
   * PostgreSQL runs a table's code during VACUUM as the table's owner whoever asked. What that
   * code may leave on the session goes in the same exchange (VACUUM may open a pipeline, never
   * follow a statement in one), so no other client runs between; after a failure the pipeline's
   * own clean-up follows at once.
   */
  async runAsRole(_role: string, sql: string, _timeoutMs: number, agentOf?: string): Promise<void> {
    // The claim before the statement is an exchange of its own (VACUUM must open one), so another
    // client's call may claim between the two: a second claim right after the statement, in its
    // exchange, then gives the placeholders its table code made to that caller and is refused,
    // and the owner replaces the session when that claim is refused or does not run (the
    // statement failed), as after any refusal; otherwise they are this workspace's.
    if (agentOf !== undefined) await this.withSession(() => Promise.resolve(), agentOf);
    const claim = agentOf === undefined ? [] : [claimSession(agentOf)];
    const outcome = await this.pipeline([{ sql }, ...claim, ...AFTER_TABLE_CODE_STEPS.map((step) => ({ sql: step }))]);
    // Refused after the statement ran: the statement stands, on a session now replaced.
    if (outcome.error && !(claim.length > 0 && outcome.results.length === 1 && isSessionTaken(outcome.error))) throw outcome.error;
  }

  registerVectorTypes(): Promise<void> {
    return this.#pg.registerVectorTypes();
  }

  close(): Promise<void> {
    return this.#pg.close();
  }
}

/** The connection string for a unix socket directory, as psql and `pg` read it. */
export function socketUrl(socketDir: string): string {
  const host = socketDir.replace(/[^A-Za-z0-9/._~-]/g, (c) => encodeURIComponent(c));
  return `postgresql://postgres@/postgres?host=${host}`;
}
