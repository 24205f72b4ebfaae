import pg from 'pg';
import pgvector from 'pgvector/pg';
import { inTransaction, SessionDatabase, type LockHolder, type LockScope, type Queryable } from './database.js';

const APPLICATION_NAME = 'pg-workspace-mcp';

export interface PostgresOptions {
  connectionString: string;
  /** The installer pins one session for its lock while phases run on others: never below 2. */
  maxConnections?: number;
}

/** A real PostgreSQL server through a `pg` Pool. */
export class PostgresDatabase extends SessionDatabase {
  readonly kind = 'postgres';
  readonly description: string;
  readonly #pool: pg.Pool;
  #vectorTypes = false;
  readonly #typedClients = new WeakSet<pg.PoolClient>();

  constructor(options: PostgresOptions) {
    super();
    this.#pool = new pg.Pool({
      connectionString: options.connectionString,
      max: Math.max(2, options.maxConnections ?? 10),
      application_name: APPLICATION_NAME,
    });
    // An idle client losing its server (restart, failover) must not crash the process;
    // the next query gets a fresh connection.
    this.#pool.on('error', () => undefined);
    this.description = redactPassword(options.connectionString);
  }

  async withSession<T>(fn: (session: Queryable) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    // The pool listens for errors only on idle clients: a connection lost between two queries of
    // this session would otherwise be an uncaught exception. The next query then fails instead.
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    try {
      if (this.#vectorTypes && !this.#typedClients.has(client)) {
        await pgvector.registerTypes(client);
        this.#typedClients.add(client);
      }
      return await fn(sessionOf(client));
    } catch (error) {
      if (!isOrdinarySqlError(error)) broken = error as Error;
      throw error;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  /**
   * Transaction-scoped advisory locks in a transaction kept open on a session of its own. Unlike
   * session locks they cannot leak behind PgBouncer's transaction pooling, and they die with the
   * session if the process does.
   */
  withLocks<T>(fn: (locks: LockScope) => Promise<T>): Promise<T> {
    return this.withSession((session) =>
      inTransaction(session, async () => {
        // A server-wide idle-in-transaction timeout would otherwise end the locks mid-work.
        await session.query('SET LOCAL idle_in_transaction_session_timeout = 0');
        return fn({
          tryLock: async (key) => {
            const [row] = await session.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1::bigint) AS locked', [key.toString()]);
            return row?.locked === true;
          },
          holders: (key) => this.#advisoryLockHolders(key),
        });
      }),
    );
  }

  /** Who holds an advisory lock: a bigint key shows up as classid (high) / objid (low). */
  #advisoryLockHolders(key: bigint): Promise<LockHolder[]> {
    return this.query<LockHolder>(
      `SELECT a.pid, a.application_name, a.client_addr::text AS client_addr, a.state,
              round(extract(epoch FROM now() - a.xact_start))::int AS held_seconds
         FROM pg_catalog.pg_locks l
         JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid`,
      [key.toString()],
    );
  }

  async registerVectorTypes(): Promise<void> {
    this.#vectorTypes = true;
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}

function sessionOf(client: pg.PoolClient): Queryable {
  return {
    async query<R>(sql: string, params?: readonly unknown[]) {
      const result = await client.query(sql, params as unknown[] | undefined);
      return result.rows as R[];
    },
    async exec(sql: string) {
      await client.query(sql);
    },
  };
}

/**
 * Only a session that failed with an ordinary SQL error goes back to the pool. A socket failure,
 * a server shutting down (classes 08 and 57P) or an exception of ours thrown mid-session leaves
 * it in an unknown state, so it is discarded and the next caller gets a fresh connection.
 */
function isOrdinarySqlError(error: unknown): boolean {
  if (!(error instanceof pg.DatabaseError) || typeof error.code !== 'string') return false;
  return !error.code.startsWith('08') && !error.code.startsWith('57P');
}

function redactPassword(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'postgresql (unparsable DATABASE_URL)';
  }
}
