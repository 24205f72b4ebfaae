import type { Config } from './config.js';
import type { Database } from './db/database.js';
import { PGliteDatabase } from './db/pglite-database.js';
import { PostgresDatabase } from './db/postgres-database.js';
import { explainError, isConnectionFailure } from './db/sql-errors.js';
import { loadExtensions } from './extensions/load-extensions.js';
import { installExtensions, type InstallReport } from './installer/install-extensions.js';
import { prepareInstallPlan, type InstallPlan } from './installer/install-plan.js';
import type { Logger } from './logger.js';
import { builtinExtensionDirs } from './package-info.js';
import { WorkspaceFleet } from './workspaces/workspace-fleet.js';
import { WorkspaceManager } from './workspaces/workspace-manager.js';

export type EngineConfig = Pick<Config, 'databaseUrl' | 'dataDir' | 'extensionDirs' | 'disabledExtensions' | 'lockTimeoutMs'> & {
  /** Pool size on PostgreSQL (default 10); the fleet upgrade needs one per worker. */
  maxConnections?: number;
};

export class EngineUnavailableError extends Error {
  override name = 'EngineUnavailableError';
}

export type EngineStatus =
  | { state: 'booting' }
  | { state: 'ready'; report: InstallReport }
  | { state: 'failed'; error: string; retrying: boolean };

export interface Ready {
  report: InstallReport;
  workspaces: WorkspaceManager;
  fleet: WorkspaceFleet;
}

/**
 * The provisioning engine: opens the database, runs the extension installer and then serves
 * workspace operations. Boot runs in the background so the MCP server can answer `initialize`
 * at once; callers wait for it with a bound. A boot that failed because the database could not
 * be reached is retried on the next call, any other failure is final and reported as is.
 */
export class ProvisioningEngine {
  #db: Database | undefined;
  #boot: Promise<Ready> | undefined;
  #status: EngineStatus = { state: 'booting' };
  #closed = false;

  constructor(
    private readonly config: EngineConfig,
    private readonly log: Logger,
  ) {}

  get status(): EngineStatus {
    return this.#status;
  }

  /** Where the data lives, for messages (no password). */
  get description(): string {
    return this.#db?.description ?? (this.config.databaseUrl ? 'the PostgreSQL server in DATABASE_URL' : this.config.dataDir);
  }

  /** What a tool reports for a failed call. */
  explain(error: unknown): string {
    return explainError(error, this.description);
  }

  /** Starts booting (once); never rejects: the outcome is read through `ready` or `status`. */
  start(): void {
    this.#boot ??= this.#bootOnce();
    this.#boot.catch(() => undefined);
  }

  /** The workspace manager once boot has succeeded, waiting at most `timeoutMs` for it. */
  async ready(timeoutMs: number): Promise<Ready> {
    if (this.#closed) throw new EngineUnavailableError('The server is shutting down.');
    if (this.#status.state === 'failed' && this.#status.retrying) this.#boot = undefined;
    this.start();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new EngineUnavailableError(
              `The server is still starting (installing extension schemas) after ${timeoutMs} ms; try again shortly.`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.#boot as Promise<Ready>, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #bootOnce(): Promise<Ready> {
    this.#status = { state: 'booting' };
    try {
      const plan = await this.#plan();
      this.#db ??= await this.#openDatabase();
      const report = await installExtensions(this.#db, plan, { lockTimeoutMs: this.config.lockTimeoutMs, log: this.log });
      if (plan.pgExtensions.has('vector')) await this.#db.registerVectorTypes();
      this.log.info(report.outcome === 'up-to-date' ? 'database schema up to date' : 'extension schemas installed', {
        database: this.#db.description,
        ms: report.ms,
        extensions: report.extensions,
      });
      this.#status = { state: 'ready', report };
      const workspaces = new WorkspaceManager(this.#db, plan, report.searchPathSchemas, this.log);
      return { report, workspaces, fleet: new WorkspaceFleet(this.#db, plan, workspaces) };
    } catch (error) {
      const retrying = isConnectionFailure(error);
      const message = explainError(error, this.description);
      this.#status = { state: 'failed', error: message, retrying };
      this.log.error('boot failed', { error: message });
      throw new EngineUnavailableError(message, { cause: error });
    }
  }

  #planned: Promise<InstallPlan> | undefined;

  /** Extensions are read and parsed once: they are files, not database state. */
  #plan(): Promise<InstallPlan> {
    this.#planned ??= loadExtensions([...builtinExtensionDirs, ...this.config.extensionDirs], this.config.disabledExtensions).then(
      prepareInstallPlan,
    );
    return this.#planned;
  }

  #openDatabase(): Promise<Database> {
    return this.config.databaseUrl
      ? Promise.resolve(
          new PostgresDatabase({
            connectionString: this.config.databaseUrl,
            ...(this.config.maxConnections ? { maxConnections: this.config.maxConnections } : {}),
          }),
        )
      : PGliteDatabase.open(this.config.dataDir);
  }

  async close(): Promise<void> {
    this.#closed = true;
    // A boot still waiting for the install lock fails on the closed database and ends with it.
    await this.#db?.close();
    this.#db = undefined;
  }
}
