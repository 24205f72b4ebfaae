import pg from 'pg';
import pgvector from 'pgvector/pg';
import { SessionDatabase, type PipelineOutcome, type PipelineStep, type Queryable } from './database.js';
import { PipelineCollector, writePipeline, type PipelineMessage, type PipelineWriter } from './pipeline.js';

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
      client.release(broken);
    }
  }

  async registerVectorTypes(): Promise<void> {
    this.#vectorTypes = true;
  }

  async pipeline(steps: readonly PipelineStep[]): Promise<PipelineOutcome> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      return await new Promise<PipelineOutcome>((resolve, reject) => {
        void client.query(new PipelineSubmittable(steps, resolve, (error) => reject((broken = error))) as unknown as pg.QueryConfig);
      });
    } finally {
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}

/**
 * A pipeline through pg's extension point for custom queries (a "submittable", as pg-cursor
 * uses): the client hands it the connection to write on and routes the answers to it.
 */
class PipelineSubmittable {
  readonly #collector: PipelineCollector;

  constructor(
    private readonly steps: readonly PipelineStep[],
    private readonly resolve: (outcome: PipelineOutcome) => void,
    private readonly reject: (error: Error) => void,
  ) {
    this.#collector = new PipelineCollector(steps);
  }

  submit(connection: PipelineWriter): void {
    writePipeline(this.steps, connection);
  }

  handleRowDescription(message: PipelineMessage): void {
    this.#collector.on(message);
  }

  handleDataRow(message: PipelineMessage): void {
    this.#collector.on(message);
  }

  handleCommandComplete(): void {
    this.#collector.on({ name: 'commandComplete' });
  }

  handleEmptyQuery(): void {
    this.#collector.on({ name: 'emptyQuery' });
  }

  handlePortalSuspended(): void {}

  handleError(error: Error): void {
    // pg stops routing messages to a query once it failed (ReadyForQuery included), and holds
    // the client's next query until that ReadyForQuery: the outcome is complete here.
    if (!(error instanceof pg.DatabaseError)) return this.reject(error);
    this.#collector.on({ name: 'error' }, error);
    this.resolve(this.#collector.outcome);
  }

  handleReadyForQuery(): void {
    this.resolve(this.#collector.outcome);
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
