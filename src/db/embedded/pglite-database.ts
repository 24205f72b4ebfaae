import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { protocol } from '@electric-sql/pglite';
import { DEFAULT_UPGRADE_TIMEOUT_MS } from '../../config.js';
import { silentLogger, type Logger } from '../../logger.js';
import { DamagedStoreError, isStoreDamage } from './damaged-store.js';
import { SessionDatabase, type LockHolder, type LockTry, type PipelineOutcome, type PipelineStep, type Queryable } from '../database.js';
import { MessageBounder } from '../bounded-messages.js';
import { afterFailedPipeline, AFTER_TABLE_CODE, PipelineCollector, writePipeline, type PipelineMessage } from '../pipeline.js';
import { DataDirLock } from './data-dir-lock.js';
import { fileLockHolders, tryFileLock } from './file-locks.js';
import { Mutex } from '../mutex.js';
import { openOrCreateStore } from './pglite-store.js';
import { PGliteThread, StatementTimeoutError } from './pglite-thread.js';
import { StatementCancelledError } from '../statement-cancelled.js';
import { sqlState } from '../sql-errors.js';
import { CLAIM_ATTEMPTS, claimSession, isSessionTaken, refusedAtClaim, SessionUnavailableError, withoutClaim } from '../session-claims.js';
import { DEFAULT_MAINTENANCE_IDLE_MS, StoreMaintenance } from './store-maintenance.js';

/** undefined_function, invalid_schema_name: the registry (and its claim_session) is not installed. */
const NO_REGISTRY = new Set(['42883', '3F000']);

export interface PGliteOptions {
  /** How long the store must be idle before it vacuums and analyzes the tables that need it. */
  maintenanceIdleMs?: number;
  /** The statement timeout of each of those VACUUMs and ANALYZEs, which run the tables' index expressions (default: the upgrade timeout's). */
  maintenanceTimeoutMs?: number;
}

/**
 * Embedded PostgreSQL (PGlite, with pgvector) in `<dataDir>/pgdata`, run in a worker thread that
 * enforces statement timeouts (pglite-thread.ts). PGlite is one session in one process: the data
 * directory is locked against other processes, and inside this process every call takes its turn
 * on the mutex, so a transaction is never interleaved with other work.
 */
export class PGliteDatabase extends SessionDatabase {
  readonly description: string;
  readonly #mutex = new Mutex();
  readonly #session: Queryable;
  #maintenance: StoreMaintenance | undefined;

  private constructor(
    private readonly pglite: PGliteThread,
    private readonly lock: DataDirLock,
    private readonly dataDir: string,
  ) {
    super();
    this.description = `embedded PGlite at ${dataDir}`;
    const damaged = (error: unknown) => (isStoreDamage(error) ? new DamagedStoreError(dataDir, error) : error);
    this.#session = {
      query: async <R>(sql: string, params?: readonly unknown[]) => {
        try {
          return await pglite.query<R>(sql, params);
        } catch (error) {
          throw damaged(error);
        }
      },
      exec: async (sql: string) => {
        await pglite.exec(sql).catch((error: unknown) => {
          throw damaged(error);
        });
      },
    };
  }

  static async open(dataDir: string, log: Logger = silentLogger, options: PGliteOptions = {}): Promise<PGliteDatabase> {
    await mkdir(dataDir, { recursive: true });
    const lock = await DataDirLock.acquire(dataDir, path.join(dataDir, 'lock'));
    try {
      const pglite = await openOrCreateStore(
        path.join(dataDir, 'pgdata'),
        (reason) => log.warn('new embedded store made with initdb (slower) instead of the template', { reason }),
        undefined,
        (pgdata) => PGliteThread.start(pgdata, (reason) => log.warn('the embedded store reopened after its engine was stopped', { reason })),
      ).catch((error: unknown) => {
        throw isStoreDamage(error) ? new DamagedStoreError(dataDir, error) : error;
      });
      const db = new PGliteDatabase(pglite, lock, dataDir);
      await db.#checkRegistryReadable(dataDir).catch(async (error: unknown) => {
        await pglite.close().catch(() => undefined);
        throw error;
      });
      db.#maintenance = new StoreMaintenance(
        db.#mutex,
        db.#session,
        () => db.#claim(undefined),
        options.maintenanceIdleMs ?? DEFAULT_MAINTENANCE_IDLE_MS,
        log,
        options.maintenanceTimeoutMs ?? DEFAULT_UPGRADE_TIMEOUT_MS,
      );
      return db;
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  /**
   * A truncated table file reads as fewer rows, without an error: a registry that lost its rows
   * would list no workspaces and re-run migrations. Each registry table's rows are counted
   * through its heap and through its primary key; a difference (or an unreadable block) means
   * the store is damaged. A few milliseconds at boot, even at 10,000 workspaces.
   */
  async #checkRegistryReadable(dataDir: string): Promise<void> {
    const tables = await this.query<{ tbl: string; key: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS tbl, format('%I', a.attname) AS key
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
        WHERE n.nspname = 'project_registry' AND c.relkind = 'r'`,
    );
    if (tables.length === 0) return;
    const counts = await this.transaction(async (tx) => {
      const count = async (sql: string) => (await tx.query<{ n: number }>(sql))[0]?.n;
      const result: { tbl: string; heap?: number; index?: number }[] = [];
      for (const { tbl, key } of tables) {
        await tx.exec('SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = on');
        const heap = await count(`SELECT count(*)::int AS n FROM ${tbl}`);
        await tx.exec('SET LOCAL enable_indexscan = on; SET LOCAL enable_indexonlyscan = on; SET LOCAL enable_seqscan = off');
        const index = await count(`SELECT count(*)::int AS n FROM (SELECT ${key} FROM ${tbl} ORDER BY ${key}) AS k`);
        result.push({ tbl, ...(heap === undefined ? {} : { heap }), ...(index === undefined ? {} : { index }) });
      }
      return result;
    });
    const lost = counts.find((c) => c.heap !== c.index);
    if (lost) {
      throw new DamagedStoreError(
        dataDir,
        `the registry table ${lost.tbl} reads ${lost.heap} rows from its file but its primary key indexes ${lost.index}`,
      );
    }
  }

  withSession<T>(fn: (session: Queryable) => Promise<T>, agentOf?: string): Promise<T> {
    return this.#mutex.run(async () => {
      if (agentOf !== undefined) await this.#claim(agentOf);
      return fn(this.#session);
    });
  }

  /**
   * Claims the one session for `projectId`'s agent code (undefined: table code of any workspace),
   * in the caller's turn: a session holding another workspace's custom settings is replaced by a
   * new one first (session-claims.ts).
   */
  async #claim(projectId: string | undefined): Promise<void> {
    const { sql, params } = claimSession(projectId);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#session.query(sql, params);
        return;
      } catch (error) {
        // Table code before the registry is installed (a new store's maintenance): no workspace has any yet.
        if (projectId === undefined && NO_REGISTRY.has(String(sqlState(error)))) return;
        if (!isSessionTaken(error)) throw error;
        if (attempt === CLAIM_ATTEMPTS) throw new SessionUnavailableError(CLAIM_ATTEMPTS);
        await this.#renew();
      }
    }
  }

  #renew(): Promise<void> {
    return this.pglite.renew("a new session: the last one held another workspace's custom settings");
  }

  /** The processes sharing this store share its one session too: their locks are files. */
  tryExclusive<T>(key: bigint, attempt: LockTry, body: () => Promise<T>): Promise<T | undefined> {
    return tryFileLock(this.dataDir, key, attempt, body);
  }

  lockHolders(key: bigint): Promise<LockHolder[]> {
    return fileLockHolders(this.dataDir, key);
  }

  /** PGlite and the turns its users take, for serving it to other processes (shared-store.ts). */
  get shared(): { pglite: PGliteThread; turns: Mutex } {
    return { pglite: this.pglite, turns: this.#mutex };
  }

  /** The one session is this caller's for the statement. */
  runAsRole(role: string, sql: string, timeoutMs: number, agentOf?: string): Promise<void> {
    return this.#mutex.run(async () => {
      await this.#claim(agentOf);
      await this.#session.query(`SELECT pg_catalog.set_config('role', $1, false), pg_catalog.set_config('statement_timeout', $2, false)`, [role, String(timeoutMs)]);
      try {
        await this.#session.exec(sql);
      } finally {
        // And what the table's code (index expressions) may have left on the session.
        await this.#session.exec(`RESET ROLE; RESET statement_timeout; ${AFTER_TABLE_CODE}`);
      }
    });
  }

  async registerVectorTypes(): Promise<void> {
    // The PGlite pgvector bundle ships no type parsers: add pgvector's own, as `pg` gets them.
    const rows = await this.query<{ oid: number }>(
      `SELECT oid FROM pg_catalog.pg_type WHERE typname = 'vector'`,
    );
    await this.pglite.parseVectors(rows.map((r) => r.oid));
  }

  pipeline(steps: readonly PipelineStep[], agentOf?: string, signal?: AbortSignal): Promise<PipelineOutcome> {
    return this.#mutex.run(async () => {
      if (signal?.aborted) throw new StatementCancelledError();
      if (agentOf === undefined) return this.#pipeline(steps, steps, signal);
      // The claim in the same round trip: refused, nothing after it ran, and the call runs again on a new session.
      for (let attempt = 1; ; attempt++) {
        const outcome = await this.#pipeline([claimSession(agentOf), ...steps], steps, signal);
        if (!refusedAtClaim(outcome)) return withoutClaim(outcome);
        if (attempt === CLAIM_ATTEMPTS) throw new SessionUnavailableError(CLAIM_ATTEMPTS);
        await this.#renew();
      }
    });
  }

  /** Sends `sent` (the caller's `steps`, perhaps after a claim) in one round trip, on the session's turn. */
  async #pipeline(sent: readonly PipelineStep[], steps: readonly PipelineStep[], signal?: AbortSignal): Promise<PipelineOutcome> {
    const parts: Uint8Array[] = [];
    writePipeline(sent, {
      parse: (o) => parts.push(protocol.serialize.parse(o)),
      bind: (o) => parts.push(protocol.serialize.bind(o)),
      execute: (o) => parts.push(protocol.serialize.execute(o)),
      describe: (o) => parts.push(protocol.serialize.describe(o)),
      sendCopyFromChunk: (chunk) => parts.push(protocol.serialize.copyData(chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) as ArrayBuffer)),
      endCopyFrom: () => parts.push(protocol.serialize.copyDone()),
      sync: () => parts.push(protocol.serialize.sync()),
    });
    // Raw, through a MessageBounder (bounded-messages.ts) into the parser: PGlite's own
    // execProtocol collects and parses a whole answer, an agent's 300 MB notice included.
    // And never execProtocol: PGlite writes a reply to the callback the last raw stream
    // installed (it never uninstalls it), and execProtocol only installs its own when there is
    // none, so after a socket client's exchange (pglite-socket-server.ts) its reply went to that
    // client's socket and it returned no messages. A raw stream always installs its own.
    const collector = new PipelineCollector(sent);
    const parser = new protocol.Parser();
    const bounder = new MessageBounder();
    const onMessage = (message: { name: string }) => collector.on(message as PipelineMessage, message.name === 'error' ? message : undefined);
    try {
      await this.pglite.execRaw(
        Buffer.concat(parts),
        (chunk) => bounder.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length), (bytes) => parser.parse(bytes, onMessage)),
        signal,
      );
    } catch (error) {
      // Ended at its timeout or by the caller's signal: an outcome, as PostgreSQL's own cancel is (a new session, rolled back).
      if (!(error instanceof StatementTimeoutError || error instanceof StatementCancelledError)) throw error;
      collector.on({ name: 'error' }, error);
    }
    // Refused at the claim: nothing ran, and the session is about to be replaced.
    if (collector.outcome.error && !(sent !== steps && refusedAtClaim(collector.outcome))) await this.pglite.exec(afterFailedPipeline(steps));
    return collector.outcome;
  }

  async close(): Promise<void> {
    await this.#maintenance?.stop();
    await this.#mutex.run(async () => {
      try {
        await this.pglite.close();
      } finally {
        // A damaged store's aborted instance may fail to close: the directory is free regardless.
        await this.lock.release();
      }
    });
  }
}
