import path from 'node:path';
import type { Logger } from '../../logger.js';
import { SessionDatabase, type Database, type LockHolder, type LockTry, type PipelineOutcome, type PipelineStep, type Queryable } from '../database.js';
import { DataDirInUseError } from './data-dir-lock.js';
import { fileLockHolders, tryFileLock } from './file-locks.js';
import { PGliteDatabase, type PGliteOptions } from './pglite-database.js';
import { NotServingError, SocketClientDatabase, socketUrl } from './pglite-socket-database.js';
import { PGliteSocketServer, type SocketServerOptions } from './pglite-socket-server.js';
import { ConnectionLostError, describePgError, isConnectionFailure, StoreOwnerLostError } from '../sql-errors.js';

/** Where the owner of `dataDir` serves it: a directory only this user may enter. */
export const socketDirOf = (dataDir: string) => path.join(dataDir, 'socket');

/** What `pg-workspace-mcp db-url` prints: psql and GUIs connect with it. */
export const dbUrlOf = (dataDir: string) => socketUrl(socketDirOf(dataDir));

export interface SharedStoreOptions extends SocketServerOptions, PGliteOptions {
  /** How long a call waits for an owner to serve the store before it fails (default 60 s). */
  connectWaitMs?: number;
  /** How often a process that does not own the store checks whether it can (default 250 ms). */
  takeoverPollMs?: number;
}

interface Owner {
  db: PGliteDatabase;
  /** Absent when the socket could not be made (the store then serves this process only). */
  server: PGliteSocketServer | undefined;
}

/**
 * The embedded store shared by every process on one data directory. The first to take the data
 * directory's lock (an flock) owns PGlite and serves it on a unix socket in the data directory;
 * the others connect through that socket and wait for the lock in the background (a cheap
 * non-blocking try every `takeoverPollMs`). When the owner exits, or is killed, the kernel frees
 * the lock, one waiting process takes it, opens PGlite (its recovery replays what was committed
 * and drops what was not) and serves on the same socket path; the others reconnect to it.
 *
 * A call that was running on the owner when it died fails with a StoreOwnerLostError: its
 * transaction committed before or was rolled back, never half-applied (the MCP server repeats
 * the tools that are safe to repeat). A call that could not
 * connect (no owner serving yet, as during a hand-over) waits for one instead.
 */
export class SharedStore extends SessionDatabase {
  #owner: Owner | undefined;
  #client: SocketClientDatabase | undefined;
  #takeover: Promise<boolean> | undefined;
  #watch: NodeJS.Timeout | undefined;
  #lastTakeoverError = '';
  #vectorTypes = false;
  #closed = false;

  private constructor(
    readonly dataDir: string,
    private readonly log: Logger,
    private readonly options: SharedStoreOptions,
  ) {
    super();
  }

  static async open(dataDir: string, log: Logger, options: SharedStoreOptions = {}): Promise<SharedStore> {
    const store = new SharedStore(dataDir, log, options);
    if (!(await store.#own())) store.#becomeClient();
    return store;
  }

  get description(): string {
    return `embedded PGlite at ${this.dataDir}`;
  }

  /** True while this process owns PGlite (and serves it to the others). */
  get owner(): boolean {
    return this.#owner !== undefined;
  }

  withSession<T>(fn: (session: Queryable) => Promise<T>, agentOf?: string): Promise<T> {
    return this.#route((db) => db.withSession(fn, agentOf));
  }

  override transaction<T>(fn: (tx: Queryable) => Promise<T>, agentOf?: string): Promise<T> {
    return this.#route((db) => db.transaction(fn, agentOf));
  }

  pipeline(steps: readonly PipelineStep[], agentOf?: string, signal?: AbortSignal): Promise<PipelineOutcome> {
    return this.#route((db) => db.pipeline(steps, agentOf, signal));
  }

  /** Runs `use` on the owner's PGlite or through the socket, waiting for an owner (hand-over). */
  async #route<T>(use: (db: Database) => Promise<T>): Promise<T> {
    const deadline = Date.now() + (this.options.connectWaitMs ?? 60_000);
    for (let delay = 25; ; delay = Math.min(delay * 2, 250)) {
      if (this.#closed) throw new ConnectionLostError(`The embedded store at ${this.dataDir} is closed: the server is shutting down.`);
      await this.#takeover;
      if (this.#owner) return use(this.#owner.db);
      const client = this.#client as SocketClientDatabase;
      try {
        return await use(client);
      } catch (error) {
        if (!(error instanceof NotServingError)) throw this.#lost(error);
        if (Date.now() >= deadline) {
          throw new ConnectionLostError(
            `No process serves the embedded store at ${this.dataDir}: another process holds its lock but ` +
              `${socketDirOf(this.dataDir)} does not answer (${error.message}). Retry shortly; if this persists, ` +
              `stop the process whose pid is in ${path.join(this.dataDir, 'lock')}.`,
            { cause: error },
          );
        }
        if (await this.#tryTakeover()) continue;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  runAsRole(role: string, sql: string, timeoutMs: number, agentOf?: string): Promise<void> {
    return this.#route((db) => db.runAsRole(role, sql, timeoutMs, agentOf));
  }

  /** The store's processes share its one session: their locks are files in the data directory. */
  tryExclusive<T>(key: bigint, attempt: LockTry, body: () => Promise<T>): Promise<T | undefined> {
    return tryFileLock(this.dataDir, key, attempt, body);
  }

  lockHolders(key: bigint): Promise<LockHolder[]> {
    return fileLockHolders(this.dataDir, key);
  }

  async registerVectorTypes(): Promise<void> {
    this.#vectorTypes = true;
    await (this.#owner?.db ?? this.#client)?.registerVectorTypes();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#watch);
    await this.#takeover;
    const owner = this.#owner;
    this.#owner = undefined;
    if (owner) {
      // Unbind and disconnect the clients before the lock is released with PGlite: the next
      // owner binds the socket path only once it holds the lock.
      await owner.server?.close();
      await owner.db.close();
    }
    await this.#client?.close();
    this.#client = undefined;
  }

  /** Opens PGlite if the lock is free, and serves it; false when another process owns it. */
  async #own(): Promise<boolean> {
    let db: PGliteDatabase;
    try {
      db = await PGliteDatabase.open(this.dataDir, this.log, this.options);
    } catch (error) {
      if (error instanceof DataDirInUseError) return false;
      throw error;
    }
    if (this.#closed) {
      await db.close();
      return false;
    }
    let server: PGliteSocketServer | undefined;
    try {
      server = await PGliteSocketServer.listen(db.shared, socketDirOf(this.dataDir), this.options);
    } catch (error) {
      this.log.warn('cannot serve the embedded store to other processes; it serves this one only', { error: (error as Error).message });
    }
    if (this.#vectorTypes) await db.registerVectorTypes();
    const client = this.#client;
    this.#owner = { db, server };
    this.#client = undefined;
    clearInterval(this.#watch);
    // Not awaited: ending the pool waits for its sessions, which end as their calls fail or finish.
    void client?.close().catch(() => undefined);
    this.log.info(client ? 'took over the embedded store' : 'owns the embedded store', {
      data_dir: this.dataDir,
      socket: server?.socketPath ?? null,
    });
    return true;
  }

  #becomeClient(): void {
    this.#client = new SocketClientDatabase(this.dataDir, socketDirOf(this.dataDir));
    if (this.#vectorTypes) void this.#client.registerVectorTypes();
    this.log.info('another process owns the embedded store: using it through its socket', { socket: socketDirOf(this.dataDir) });
    this.#watch = setInterval(() => void this.#tryTakeover(), this.options.takeoverPollMs ?? 250);
    this.#watch.unref();
  }

  /** One attempt at a time; an error opening PGlite is logged (once) and tried again later. */
  #tryTakeover(): Promise<boolean> {
    if (this.#owner || this.#closed) return Promise.resolve(this.#owner !== undefined);
    this.#takeover ??= this.#own()
      .catch((error: unknown) => {
        const message = (error as Error).message;
        if (message !== this.#lastTakeoverError) this.log.error('cannot take over the embedded store', { error: message });
        this.#lastTakeoverError = message;
        return false;
      })
      .finally(() => (this.#takeover = undefined));
    return this.#takeover;
  }

  /** A connection that broke mid-call: the owner is gone (or going); say so, and look for the lock. */
  #lost(error: unknown): unknown {
    if (!isConnectionFailure(error) || error instanceof ConnectionLostError) return error;
    void this.#tryTakeover();
    return new StoreOwnerLostError(
      `The process serving the embedded store at ${this.dataDir} went away during this call (${describePgError(error)}). ` +
        'What the call changed was committed before that or rolled back whole, never half-applied; another ' +
        'pg-workspace-mcp process takes the store over at once: retry the call.',
      { cause: error },
    );
  }
}
