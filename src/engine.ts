import type { Database } from './db/database.js';
import type { MemberDatabases, WorkspaceUse } from './databases/member-databases.js';
import { ConnectionShare, DEFAULT_MAX_CONNECTIONS } from './db/postgres/connection-share.js';
import { isRetriedBootFailure } from './boot-failures.js';
import { explainError, isConnectionFailure, pgError, sqlState } from './db/sql-errors.js';
import type { InstallReport } from './installer/install-extensions.js';
import type { InstallPlan } from './installer/install-plan.js';
import type { Logger } from './logger.js';
import { WorkspacePlacedElsewhereError } from './workspaces/workspace-errors.js';
import type { ListOptions, WorkspacePage } from './workspaces/workspace-manager.js';
import type { EngineConfig, Ready } from './services.js';

export class EngineUnavailableError extends Error {
  override name = 'EngineUnavailableError';
}

export type EngineStatus =
  | { state: 'booting' }
  | { state: 'ready'; report: InstallReport }
  | { state: 'failed'; error: string; retrying: boolean };

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
  /** On PostgreSQL: the databases workspaces are spread over (databases/member-databases.ts), set at boot. */
  #members: MemberDatabases | undefined;
  /** #followPlacements at work: one at a time. */
  #following: Promise<void> | undefined;
  /** On PostgreSQL, the pool size the home database's pool and the member databases' keep to together. */
  readonly #share: ConnectionShare;
  #status: EngineStatus = { state: 'booting' };
  #closed = false;

  constructor(
    private readonly config: EngineConfig,
    private readonly log: Logger,
  ) {
    this.#share = new ConnectionShare(config.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  }

  get status(): EngineStatus {
    return this.#status;
  }

  /** Where the data lives, for messages (no password). */
  get description(): string {
    return this.#db?.description ?? (this.config.databaseUrl ? 'the PostgreSQL server in DATABASE_URL' : this.config.dataDir);
  }

  /** What a command reports for a failure. */
  explain(error: unknown): string {
    return explainError(error, this.description);
  }

  /**
   * What a tool reports for a failed call. A failure that names the registry is checked against
   * the database (an agent's query may name a table there that does not exist): if the install
   * is gone, dropped or restored away under the running server, it is made again at once and the
   * message says so, instead of every later call failing until a restart. `projectId`: the
   * workspace the call is about, whose database (a member database's, when spread) is checked.
   */
  async explainFailedCall(error: unknown, projectId?: string): Promise<string> {
    if (error instanceof WorkspacePlacedElsewhereError) {
      await this.#followPlacements();
      return error.message;
    }
    const lost = namesMissingRegistryObject(error) ? await this.#reinstallIfGone(projectId) : undefined;
    if (lost !== undefined) {
      return (
        `The server's registry (schema project_registry) is gone from the database ${lost}: it was dropped, ` +
        'or the database restored from before the server installed it. The server is installing it again now: retry the call. ' +
        "Workspace schemas that outlived it are listed by 'pg-workspace-mcp doctor', and 'pg-workspace-mcp repair --adopt-orphans' registers them again."
      );
    }
    const gone = mayNameGoneDatabase(error) ? await this.#members?.remakeGone().catch(() => []) : undefined;
    if (gone?.length) {
      return (
        `The database ${gone.map((name) => `"${name}"`).join(', ')} that this server spreads workspaces over is gone from the PostgreSQL server ` +
        `(${this.description}): it was dropped, or the server restored from before it was made. The server is making it again now: retry the call. ` +
        'Its workspaces come back new and empty where they are placed, on their next use; their data is only in a backup of it ' +
        '(docs/operations.md, Many workspaces: to restore it instead, stop the servers first).'
      );
    }
    return this.explain(error);
  }

  /**
   * The database (for the message) when this server's install is no longer in the one of
   * `projectId`'s workspace, or else in the home database; it is then installed there again (the
   * home database's by booting again).
   */
  async #reinstallIfGone(projectId: string | undefined): Promise<string | undefined> {
    const ready = this.#ready;
    if (!ready) return undefined;
    const member = projectId === undefined ? undefined : await this.#members?.databaseOf(projectId, 'existing').catch(() => undefined);
    if (member !== undefined && (await this.#members?.reinstallIfGone(member))) {
      this.log.warn('the registry is gone from a member database: installing it again', { database: member });
      return `"${member}" on the PostgreSQL server (${this.description})`;
    }
    const { installGone } = await import('./boot.js');
    if (!(await installGone(ready.db).catch(() => false))) return undefined;
    // Only the first call to see it starts the boot; tools wait for it through ready().
    if (this.#ready === ready) {
      this.log.warn('the registry is gone from the database: installing it again', { database: this.description });
      this.#ready = undefined;
      this.#boot = this.#bootOnce();
      this.#boot.catch(() => undefined);
    }
    return `(${this.description})`;
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

  /**
   * The services of the database holding `projectId` (databases/member-databases.ts): the home
   * database's, unless the server spreads workspaces over databases or did before. Every tool
   * call that names a workspace comes through here; undefined: the home database's. `use`: only
   * a call that makes the workspace places a new id in a member database.
   */
  async readyFor(projectId: string | undefined, use: WorkspaceUse, timeoutMs: number): Promise<Ready> {
    const home = await this.ready(timeoutMs);
    return projectId === undefined || !this.#members ? home : this.#members.readyFor(projectId, use);
  }

  /** A page of list_workspaces over every database the workspaces are in (MemberDatabases.list). */
  async list(options: ListOptions, timeoutMs: number, signal?: AbortSignal): Promise<WorkspacePage> {
    const home = await this.ready(timeoutMs);
    await this.#followPlacements();
    signal?.throwIfAborted();
    return this.#members ? this.#members.list(options, signal) : home.workspaces.list(options);
  }

  /**
   * `read` on every database's services, a few at a time, making none: what counts every
   * workspace (the fleet's workspace_status; MemberDatabases.readEach).
   */
  async readEach<T>(read: (ready: Ready) => Promise<T>, timeoutMs: number): Promise<T[]> {
    const home = await this.ready(timeoutMs);
    await this.#followPlacements();
    return this.#members ? this.#members.readEach(read) : [await read(home)];
  }

  /**
   * A PostgreSQL server without --workspaces-per-database follows placements only if the home
   * database had some at its boot: one started before another server spread workspaces (during a
   * rolling restart that turns the setting on) looked for every workspace at home, so it listed
   * none of the spread ones and would have made a placed id again at home. It follows them from
   * the first read over every database (one query while there are none), or the first call the
   * home database refuses for a placed id (WorkspacePlacedElsewhereError). Routing stays as cheap
   * as before until then: no placement lookup per call.
   */
  async #followPlacements(): Promise<void> {
    const ready = this.#ready;
    if (this.#members || !ready || !this.#plan) return;
    const plan = this.#plan;
    this.#following ??= (async () => {
      const boot = await import('./boot.js');
      const members = await boot.memberDatabases(ready, await plan, this.config, this.log, this.#share);
      if (this.#ready === ready && !this.#members) this.#members = members;
      else await members?.close();
    })().finally(() => (this.#following = undefined));
    await this.#following;
  }

  /** The home database's services, then every member database's: what spans every workspace (the commands). */
  async readyAll(timeoutMs: number): Promise<Ready[]> {
    const home = await this.ready(timeoutMs);
    return this.#members ? this.#members.all() : [home];
  }

  /** The services a fork of `from` to `to` runs on: `to` is placed beside `from` (a fork copies within one database). */
  async readyForFork(from: string, to: string, timeoutMs: number): Promise<Ready> {
    const home = await this.ready(timeoutMs);
    return this.#members ? this.#members.placeBeside(to, from) : home;
  }

  async #bootOnce(): Promise<Ready> {
    this.#status = { state: 'booting' };
    try {
      const boot = await import('./boot.js');
      this.#plan ??= boot.planInstall(this.config);
      const plan = await this.#plan;
      this.#db ??= await boot.openDatabase(this.config, this.log, this.#share);
      const ready = await boot.installAndServe(this.#db, plan, this.config, this.log);
      await this.#members?.close();
      this.#members = await boot.memberDatabases(ready, plan, this.config, this.log, this.#share);
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
    // Directory runs stop between files first: what they wrote is whole, and the next run resumes.
    await this.#members?.close();
    await this.#ready?.search.close();
    // A boot still waiting for the install lock fails on the closed database and ends with it.
    await this.#db?.close();
    this.#db = undefined;
  }
}

/** A database that does not exist (3D000), or a connection it closed as it was dropped: is a member database gone? */
function mayNameGoneDatabase(error: unknown): boolean {
  return sqlState(error) === '3D000' || isConnectionFailure(error);
}

/** Undefined table, schema or function in project_registry: what calls see once the install is gone. */
function namesMissingRegistryObject(error: unknown): boolean {
  return ['42P01', '3F000', '42883'].includes(sqlState(error) ?? '') && (pgError(error)?.message.includes('project_registry') ?? false);
}
