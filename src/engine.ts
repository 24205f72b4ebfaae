import type { Config } from './config.js';
import type { Database } from './db/database.js';
import { isRetriedBootFailure } from './boot-failures.js';
import { explainError } from './db/sql-errors.js';
import type { InstallReport } from './installer/install-extensions.js';
import type { InstallPlan } from './installer/install-plan.js';
import type { Logger } from './logger.js';
import type { WorkspaceFleet } from './workspaces/workspace-fleet.js';
import type { WorkspaceManager } from './workspaces/workspace-manager.js';
import type { WorkspaceSql } from './sandbox/workspace-sql.js';

export type EngineConfig = Pick<Config, 'databaseUrl' | 'dataDir' | 'extensionDirs' | 'disabledExtensions' | 'lockTimeoutMs'> &
  Partial<Pick<Config, 'statementTimeoutMs' | 'maxRowsCap' | 'maxResultBytes'>> & {
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
  /** The database itself (tests and the bench look at it directly). */
  db: Database;
  workspaces: WorkspaceManager;
  fleet: WorkspaceFleet;
  sql: WorkspaceSql;
}

/**
 * The provisioning engine: opens the database, runs the extension installer and then serves
 * workspace operations. Boot runs in the background so the MCP server can answer `initialize`
 * at once; callers wait for it with a bound. A boot that failed for a reason that can pass (see
 * isRetriedBootFailure) is retried on the next call, any other failure is final and reported as is.
 */
export class ProvisioningEngine {
  #db: Database | undefined;
  #plan: Promise<InstallPlan> | undefined;
  #boot: Promise<Ready> | undefined;
  /** Set once boot succeeded: the hot path (every tool call) returns it without a timer. */
  #ready: Ready | undefined;
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

  /** The engine's services once boot has succeeded, waiting at most `timeoutMs` for it. */
  async ready(timeoutMs: number): Promise<Ready> {
    if (this.#closed) throw new EngineUnavailableError('The server is shutting down.');
    if (this.#ready) return this.#ready;
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
      const boot = await import('./boot.js');
      this.#plan ??= boot.planInstall(this.config);
      const plan = await this.#plan;
      this.#db ??= await boot.openDatabase(this.config, this.log);
      const ready = await boot.installAndServe(this.#db, plan, this.config, this.log);
      this.#status = { state: 'ready', report: ready.report };
      this.#ready = ready;
      return ready;
    } catch (error) {
      const retrying = isRetriedBootFailure(error);
      const message = explainError(error, this.description);
      this.#status = { state: 'failed', error: message, retrying };
      this.log.error('boot failed', { error: message });
      throw new EngineUnavailableError(message, { cause: error });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    // A boot still waiting for the install lock fails on the closed database and ends with it.
    await this.#db?.close();
    this.#db = undefined;
  }
}
