import { DEFAULT_MAX_CALLS_PER_WORKSPACE, DEFAULT_MAX_RESULT_BYTES } from '../config.js';
import type { Database, PipelineField, PipelineStep, Queryable } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { completeOutcome } from '../db/pipeline.js';
import { pgError, sqlState } from '../db/sql-errors.js';
import { undoTableCodeGrants } from '../db/table-code-grants.js';
import type { Logger } from '../logger.js';
import { projectIdOfSchema, schemaNameFor } from '../workspaces/project-id.js';
import { WorkspaceNotFoundError } from '../workspaces/workspace-errors.js';
import {
  holdsOthersObjects,
  lockWorkspace,
  lookupWorkspace,
  recordWorkspaceRole,
  roleUsesElsewhere,
  workspaceOfRole,
  workspacesWithoutSandbox,
} from '../registry/registry-sql.js';
import { AgentSqlError, prepareAgentStatement, type AgentParam } from './agent-statement.js';
import { maintenanceSql, parseMaintenance, RESOLVE_NAMED, WORKSPACE_TABLES } from './maintenance-statement.js';
import { PerWorkspaceLimit } from './per-workspace-limit.js';
import { readSandboxAnswer } from './sandbox-answer.js';
import { capabilityProblems, readSandboxCapability } from './sandbox-capability.js';
import { workspaceRoleOf } from './workspace-role.js';
import {
  principalScript,
  RESULT_PORTAL,
  SANDBOX_BODY,
  SANDBOX_BROKEN,
  SANDBOX_SCHEMA,
  anchorStatements,
  distributeNewTables,
  distributionAnchor,
  NEEDS_DISTRIBUTION_ANCHOR,
  sandboxBodySource,
  sandboxFunction,
  sandboxSearchPath,
  sandboxSource,
  type Principal,
} from './sandbox-ddl.js';

export interface SqlLimits {
  /** Every call's statement timeout (on PGlite enforced by restarting its engine, see docs/isolation.md). */
  statementTimeoutMs: number;
  /** The largest max_rows a call may ask for. */
  maxRowsCap: number;
  /**
   * The most bytes of rows one call returns (their JSON, as the sandbox builds it): rows of
   * large values stop a result before max_rows does, and no more than this is ever held.
   */
  maxResultBytes: number;
  /** The most calls of one workspace that run at once (the rest wait): others are always served. */
  maxCallsPerWorkspace: number;
}

export const DEFAULT_SQL_LIMITS: SqlLimits = {
  statementTimeoutMs: 10_000,
  maxRowsCap: 10_000,
  maxResultBytes: DEFAULT_MAX_RESULT_BYTES,
  maxCallsPerWorkspace: DEFAULT_MAX_CALLS_PER_WORKSPACE,
};
export const DEFAULT_MAX_ROWS = 100;

export interface Column {
  name: string;
  /** PostgreSQL's name for the type, with its modifier, e.g. `bigint`, `vector(768)`. */
  type: string;
}

export interface RowsResult {
  columns: Column[];
  rows: unknown[][];
  /** Rows returned (after the cap). */
  rowCount: number;
  /** More rows existed than were returned. */
  truncated: boolean;
  /** Which bound cut the rows, when one did. */
  truncatedBy?: 'max_rows' | 'max_bytes';
}

export interface ExecuteResult extends RowsResult {
  command: string;
  /** Rows the statement affected (for a data change), all of them, returned or not. */
  affected: number;
}

/** The SQL tools cannot run safely here; the message says what to GRANT or ALTER. */
export class SqlToolsUnavailableError extends Error {
  override name = 'SqlToolsUnavailableError';
}

/** What writeAsWorkspace may set for its transaction instead of the server's limits. */
export interface WriteSettings {
  statementMs?: number;
  lockMs?: number;
  /** Aborted, the running statement is cancelled and the transaction rolled back (Database.pipeline). */
  signal?: AbortSignal | undefined;
  /**
   * maintenance_work_mem for each statement (an index build), in kB: raised to it, never lowered
   * below the session's own nor past the server's maximum. Set before each statement in its
   * transaction only, since the sandbox resets every setting after each (RESET ALL).
   */
  maintenanceWorkMemKb?: number;
}

/** maintenance_work_mem raised to $1 kB, capped at the server's maximum, never below the session's own (kB). */
const RAISED_MAINTENANCE_WORK_MEM =
  `SELECT GREATEST(LEAST($1::pg_catalog.int8, s.max_val::pg_catalog.int8), s.setting::pg_catalog.int8)::pg_catalog.int8 AS kb ` +
  `FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) 'maintenance_work_mem'`;

/** Raises maintenance_work_mem for the transaction to $1 kB, capped at the server's maximum, never below the session's own. */
const RAISE_MAINTENANCE_WORK_MEM =
  `SELECT pg_catalog.set_config('maintenance_work_mem', ` +
  `GREATEST(LEAST($1::pg_catalog.int8, s.max_val::pg_catalog.int8), s.setting::pg_catalog.int8)::pg_catalog.text, true) ` +
  `FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) 'maintenance_work_mem'`;

/**
 * Rows writeAsWorkspace's statements read, loaded into a table of the server's by `copy` (a
 * `COPY ... FROM STDIN` as the server, with `data`) after the guard, and deleted by `clear` after
 * the statements, in the same transaction: the table's rows are never committed.
 */
export interface StagedRows {
  copy: string;
  data: Uint8Array;
  clear: string;
}

/** The guard of writeAsWorkspace failed: nothing was written. */
export class WriteGuardError extends Error {
  override name = 'WriteGuardError';

  constructor(cause: unknown) {
    super(`the check before this write failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/**
 * A call that ran past the statement timeout, as PostgreSQL reports it (SQLSTATE 57014, its words
 * first), saying which limit it hit and what the agent can do about it.
 */
export class StatementTimeoutError extends Error {
  override name = 'StatementTimeoutError';
  readonly code = '57014';

  constructor(timeoutMs: number, cause: unknown) {
    super(
      `canceling statement due to statement timeout: it ran past this server's limit of ${timeoutMs} ms ` +
        '(PG_WORKSPACE_STATEMENT_TIMEOUT_MS) and its transaction was rolled back. Narrow it (WHERE, LIMIT, an index) ' +
        'or split the work into smaller statements; the operator can raise the limit.',
      { cause },
    );
  }
}

export class SqlLimitError extends RangeError {
  override name = 'SqlLimitError';
}

/** Types whose JSON numbers are safe as JavaScript numbers; bigint and numeric stay strings. */
const NUMBER_TYPES = new Set([21, 23, 26, 700, 701]);

/** Statements that may create a table (distributed afterwards on Citus, see distributeNewTables). */
const CREATES_TABLE = new Set(['CreateStmt', 'CreateTableAsStmt']);

interface Capability {
  database: string;
  serverRole: string;
  problem: string | undefined;
}

/**
 * What the SQL tools need of the workspace engine (WorkspaceManager): a workspace made before
 * its first call, and whether workspaces are distributed. Narrow, so the sandbox does not
 * depend on the manager, which runs its upgrade scripts in the sandbox.
 */
export interface WorkspaceProvisioner {
  ensure(projectId: string): Promise<unknown>;
  readonly citus: boolean;
}

/**
 * Runs agent SQL inside a workspace, as the workspace's own PostgreSQL role, in its sandbox
 * function (see sandbox-ddl.ts). A call is one pipeline, one round trip, one implicit
 * transaction: settings (statement timeout, READ ONLY), the sandbox opening the statement, a
 * Describe of the portal it opened (columns and types without running anything as the
 * server), and the sandbox fetching at most max_rows + 1 rows and checking that nothing
 * outlives the call. The workspace's principal is made on first use, and again whenever it
 * was dropped or altered.
 */
export class WorkspaceSandbox {
  #capability: Promise<Capability> | undefined;
  readonly #principals = new Map<string, Principal>();
  readonly #typeNames = new Map<string, string>();
  readonly #turns: PerWorkspaceLimit;

  constructor(
    private readonly db: Database,
    private readonly workspaces: WorkspaceProvisioner,
    private readonly searchPathSchemas: readonly string[],
    private readonly limits: SqlLimits,
    private readonly log: Logger,
  ) {
    this.#turns = new PerWorkspaceLimit(limits.maxCallsPerWorkspace);
  }

  /** The largest max_rows a call may ask for. */
  get maxRowsCap(): number {
    return this.limits.maxRowsCap;
  }

  /** The most bytes of rows a call returns. */
  get maxResultBytes(): number {
    return this.limits.maxResultBytes;
  }

  /** One read-only statement of agent SQL. */
  query(projectId: string, sql: string, params: readonly AgentParam[], maxRows = DEFAULT_MAX_ROWS): Promise<RowsResult> {
    return this.readAsWorkspace(projectId, sql, params, maxRows);
  }

  /**
   * The engine API for server code that reads tables an agent controls (say, search_vectors'
   * nearest-neighbour SELECT): operators, functions, views and triggers there may be the
   * agent's, so the statement runs exactly as `query` does, as the workspace, read-only, with
   * the same limits. Identifiers must be validated and quoted by the caller; values go in
   * `params` ($1, $2, ...; a vector as an array of numbers). `settings` (names chosen by the
   * server, e.g. `hnsw.ef_search`) are set transaction-locally before the statement, in the
   * same transaction; the sandbox resets them when it finishes.
   */
  readAsWorkspace(
    projectId: string,
    sql: string,
    params: readonly AgentParam[] = [],
    maxRows = DEFAULT_MAX_ROWS,
    settings: Readonly<Record<string, string>> = {},
  ): Promise<RowsResult> {
    return this.#read(projectId, sql, params, maxRows, settings, true);
  }

  /**
   * readAsWorkspace for the read-only tools (search, search_vectors, index_status): never makes
   * the workspace (its role and sandbox only for one that exists). They check that it exists first,
   * but a drop may commit between that check and this read: made here, it would come back from a
   * read. Gone by then, the read is WorkspaceNotFoundError, checked under the workspace's lock.
   */
  readExisting(
    projectId: string,
    sql: string,
    params: readonly AgentParam[],
    maxRows: number,
    settings: Readonly<Record<string, string>> = {},
  ): Promise<RowsResult> {
    return this.#read(projectId, sql, params, maxRows, settings, false);
  }

  async #read(
    projectId: string,
    sql: string,
    params: readonly AgentParam[],
    maxRows: number,
    settings: Readonly<Record<string, string>>,
    ensure: boolean,
  ): Promise<RowsResult> {
    this.#checkMaxRows(maxRows);
    const statement = await prepareAgentStatement(sql, params, 'query');
    const principal = await this.#principal(projectId, { ensure });
    const { result } = await this.#turns.run(projectId, () =>
      this.#run(projectId, principal, statement.sql, { readOnly: true, rows: true, maxRows, count: false, settings, ensure }),
    );
    return result;
  }

  /** One statement that may change the workspace's data or objects. */
  async execute(projectId: string, sql: string, params: readonly AgentParam[], maxRows = DEFAULT_MAX_ROWS): Promise<ExecuteResult> {
    const statement = await prepareAgentStatement(sql, params, 'execute');
    const principal = await this.#principal(projectId);
    if (statement.kind === 'VacuumStmt') return this.#turns.run(projectId, () => this.#maintain(projectId, principal, statement.sql));
    const { result, affected } = await this.#turns.run(projectId, () =>
      this.#run(projectId, principal, statement.sql, {
        readOnly: false,
        rows: statement.returnsRows,
        maxRows: Math.min(maxRows, this.limits.maxRowsCap),
        count: statement.returnsRows && statement.kind !== 'SelectStmt',
        distribute: this.workspaces.citus && CREATES_TABLE.has(statement.kind),
      }),
    );
    return { ...result, command: statement.command, affected };
  }

  /**
   * For server code that writes tables an agent controls (ingest into `files`/`chunks`): several
   * data changes in one transaction, each as `execute` runs one (parsed, values bound as
   * literals, as the workspace's role in its sandbox, under the statement timeout), in one
   * round trip. All commit or none does. `guard`, a statement of the server's own (no agent code)
   * run first in the same transaction, may lock what the writes depend on and fail to stop them:
   * its failure is a WriteGuardError. `settings.statementMs` replaces the server's limit for this
   * transaction (an index build runs longer than any one call should); `settings.lockMs` bounds
   * the first statement's wait for a lock (the sandbox resets every other setting after each
   * statement); `settings.maintenanceWorkMemKb` is set again before each statement. `staged`:
   * rows the statements read, copied in after the guard and deleted after them (StagedRows).
   * Returns the rows each statement affected.
   */
  writeAsWorkspace(
    projectId: string,
    statements: ReadonlyArray<{ sql: string; params: readonly AgentParam[] }>,
    guard?: { sql: string; params: readonly string[] },
    settings: WriteSettings = {},
    staged?: StagedRows,
  ): Promise<number[]> {
    return this.#write(projectId, statements, guard, settings, staged, false);
  }

  async #write(
    projectId: string,
    statements: ReadonlyArray<{ sql: string; params: readonly AgentParam[] }>,
    guard: { sql: string; params: readonly string[] } | undefined,
    settings: WriteSettings,
    staged: StagedRows | undefined,
    retried: boolean,
  ): Promise<number[]> {
    const prepared = await Promise.all(statements.map((s) => prepareAgentStatement(s.sql, s.params, 'execute')));
    const principal = await this.#principal(projectId);
    const fn = sandboxFunction(principal.schemaName);
    // Steps before each statement: the sandbox's RESET ALL after one would undo them for the next.
    const before: PipelineStep[] =
      settings.maintenanceWorkMemKb === undefined ? [] : await this.#raiseMaintenanceWorkMem(settings.maintenanceWorkMemKb);
    // SET LOCAL (Citus's build settings) counts only in a transaction block: the protocol's implicit one is not.
    const block = before.some((step) => 'sql' in step && step.sql.startsWith('SET LOCAL'));
    const steps: PipelineStep[] = [
      ...(block ? [{ sql: 'BEGIN' }] : []),
      {
        sql:
          `SELECT pg_catalog.set_config('statement_timeout', $1, true), pg_catalog.set_config('transaction_read_only', 'off', true)` +
          (settings.lockMs === undefined ? '' : `, pg_catalog.set_config('lock_timeout', $2, true)`),
        params: [String(settings.statementMs ?? this.limits.statementTimeoutMs), ...(settings.lockMs === undefined ? [] : [String(settings.lockMs)])],
      },
      ...(guard ? [guard] : []),
      ...(staged ? [{ sql: staged.copy, copyIn: staged.data }] : []),
      ...prepared.flatMap((statement) => [...before, { sql: `SELECT ${fn}('run', $1, 0, 0)`, params: [statement.sql] }]),
      ...(staged ? [{ sql: staged.clear }] : []),
      ...(block ? [{ sql: 'COMMIT' }] : []),
    ];
    const settingsDone = block ? 2 : 1;
    const firstWrite = settingsDone + (guard ? 1 : 0) + (staged ? 1 : 0) + before.length;
    // Within the workspace's limit of calls at once, as execute is: ingest's writes run its triggers.
    const outcome = completeOutcome(await this.#turns.run(projectId, () => this.db.pipeline(steps, projectId, settings.signal)), steps);
    if (outcome.error) {
      if (guard && outcome.results.length === settingsDone) throw new WriteGuardError(outcome.error);
      const code = sqlState(outcome.error);
      if ((code === SANDBOX_BROKEN || (code === '42883' && outcome.results.length === firstWrite)) && !retried) {
        this.#principals.delete(projectId);
        return this.#write(projectId, statements, guard, settings, staged, true);
      }
      throw outcome.error;
    }
    return outcome.results
      .slice(firstWrite, firstWrite + prepared.length * (before.length + 1))
      .filter((_, i) => i % (before.length + 1) === 0)
      .map((r) => readSandboxAnswer(r.rows[0]?.[0] ?? '{}').total);
  }

  /**
   * The steps that raise maintenance_work_mem for the next statement. On Citus a shard's index is
   * built on its worker, which takes a setting from the coordinator's transaction only as a
   * top-level SET LOCAL with citus.propagate_set_commands 'local', not from set_config() (its
   * workers built at their own 64 MB): the value raised is read first and set so, as a literal.
   */
  async #raiseMaintenanceWorkMem(kb: number): Promise<PipelineStep[]> {
    if (!this.workspaces.citus) return [{ sql: RAISE_MAINTENANCE_WORK_MEM, params: [String(kb)] }];
    const [row] = await this.db.query<{ kb: string }>(RAISED_MAINTENANCE_WORK_MEM, [String(kb)]);
    const raised = Number(row?.kb);
    if (!Number.isSafeInteger(raised)) throw new Error(`could not read maintenance_work_mem to raise it (got ${String(row?.kb)})`);
    return [{ sql: `SET LOCAL citus.propagate_set_commands = 'local'` }, { sql: `SET LOCAL maintenance_work_mem = '${raised}kB'` }];
  }

  /**
   * VACUUM or ANALYZE of the workspace's own tables (maintenance-statement.ts): the names are
   * resolved and checked as the workspace, then ANALYZE runs in the sandbox like any statement
   * and VACUUM, which cannot run in a transaction, outside it as the workspace's role.
   */
  async #maintain(projectId: string, principal: Principal, sql: string): Promise<ExecuteResult> {
    const statement = await parseMaintenance(sql);
    const asWorkspace = async (text: string, params: AgentParam[]) =>
      (await this.#run(projectId, principal, (await prepareAgentStatement(text, params, 'query')).sql, {
        readOnly: true,
        rows: true,
        maxRows: this.limits.maxRowsCap,
        count: false,
      })).result.rows;
    let tables: { qualified: string; columns: string }[];
    if (statement.tables.length === 0) {
      tables = (await asWorkspace(WORKSPACE_TABLES, [])).map(([qualified]) => ({ qualified: String(qualified), columns: '' }));
    } else {
      const rows = await asWorkspace(RESOLVE_NAMED, [statement.tables.map((t) => t.name)]);
      tables = rows.map(([name, qualified, found, inside, owned], i) => {
        if (!found) throw new AgentSqlError(`${statement.command}: there is no table ${String(name)} in workspace ${projectId}.`);
        if (!inside || !owned) {
          throw new AgentSqlError(
            `${statement.command} runs on the workspace's own tables only, and ${String(qualified)} is not one of workspace ${projectId}'s.`,
          );
        }
        return { qualified: String(qualified), columns: statement.tables[i]?.columns ?? '' };
      });
    }
    const done: ExecuteResult = { columns: [], rows: [], rowCount: 0, truncated: false, command: statement.command, affected: 0 };
    if (tables.length === 0) return done;
    const text = maintenanceSql(statement, tables);
    if (statement.command === 'ANALYZE') {
      await this.#run(projectId, principal, text, { readOnly: false, rows: false, maxRows: 0, count: false });
      return done;
    }
    await this.db.runAsRole(principal.roleName, text, this.limits.statementTimeoutMs, projectId);
    // Outside the sandbox, the tables' code (index expressions) ran unchecked: what it granted to
    // other roles, or set on the role, was committed with the VACUUM, and is undone now.
    const undone = await this.db.transaction((tx) => undoTableCodeGrants(tx, principal.roleName));
    if (undone.length > 0) {
      throw new AgentSqlError(
        `VACUUM ran and committed, but the code of a table it processed (an index expression) granted to roles outside the workspace ` +
          `or changed the role's settings, which the server undid (${undone.join('; ')}): pg_stats would show the values to them. ` +
          "Drop that index: `pg-workspace-mcp doctor` lists it (autovacuum-agent-code).",
      );
    }
    return done;
  }

  /**
   * For workspace upgrades and take-backs: the sandbox function (its qualified name) to run the
   * workspace DDL/migration script in, as `SELECT <fn>('script', statement, 0, 0)`, in the
   * caller's transaction (which holds the workspace lock), when agent code may live in the
   * workspace (triggers, rules, views, operators the script would otherwise run as the server):
   * the workspace has a role, or anything in its schema belongs to a role other than the
   * server's (the role is then made). Undefined otherwise: only the server's own objects are there.
   */
  async scriptSandbox(tx: Queryable, projectId: string, schemaName: string): Promise<string | undefined> {
    // On the caller's session: PGlite's only one is busy with the caller's transaction.
    const capability = await this.#capabilityOnce(tx);
    const principal = await this.#principalIn(tx, capability, projectId);
    const [role] = await tx.query<{ present: boolean }>('SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1) AS present', [
      principal.roleName,
    ]);
    // No role, and nothing in the schema but the server's own objects: no agent code to run.
    if (!role?.present && !(await holdsOthersObjects(tx, schemaName, SANDBOX_SCHEMA))) return undefined;
    if (capability.problem) {
      throw new SqlToolsUnavailableError(
        `Schema ${schemaName} may hold agent code, so its workspace DDL must run as the workspace's role, ` +
          `which needs the SQL tools: ${capability.problem}`,
      );
    }
    await tx.exec(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schemaName)}`);
    await this.#repairIn(tx, projectId, principal, capability);
    return sandboxFunction(schemaName);
  }

  /**
   * Makes the workspace's role and SQL sandbox unless they are there and intact, in the caller's
   * transaction, which holds the workspace's lock (snapshots, restores and forks).
   */
  async ensurePrincipal(tx: Queryable, projectId: string): Promise<void> {
    const capability = await this.#capabilityOnce(tx);
    if (capability.problem) throw new SqlToolsUnavailableError(capability.problem);
    await this.#repairIn(tx, projectId, await this.#principalIn(tx, capability, projectId), capability);
  }

  /**
   * For snapshots, restores and forks: one of the workspace's calls at once (PG_WORKSPACE_MAX_CALLS_PER_WORKSPACE).
   * Each holds a connection, also while it waits for the workspace's lock: twelve forks of one
   * workspace took every pooled connection, and another workspace's query waited for three copies.
   */
  inTurn<T>(projectId: string, fn: () => Promise<T>): Promise<T> {
    return this.#turns.run(projectId, fn);
  }

  /**
   * Runs server-built SQL (a snapshot's copy) as the workspace's role, inside its sandbox, in the
   * caller's transaction: whatever agent code it touches runs as the workspace, never as the server.
   */
  async runAsWorkspace(tx: Queryable, projectId: string, script: string): Promise<void> {
    await this.ensurePrincipal(tx, projectId);
    await tx.query(`SELECT ${sandboxFunction(schemaNameFor(projectId))}('script', $1, 0, 0)`, [script]);
  }

  /** Makes the principal of every registered workspace that lacks one (the fleet command). */
  async adoptAll(): Promise<{ adopted: number; problem: string | undefined }> {
    const capability = await this.#capabilityOnce();
    if (capability.problem) return { adopted: 0, problem: capability.problem };
    const ids = await workspacesWithoutSandbox(this.db, SANDBOX_SCHEMA);
    let adopted = 0;
    const failed: string[] = [];
    for (const project_id of ids) {
      // Registered, so no ensure(): a workspace whose upgrade just failed keeps its error there.
      await this.#principal(project_id, { ensure: false }).then(
        () => adopted++,
        (error: unknown) => failed.push(`${project_id}: ${(error as Error).message}`),
      );
    }
    return { adopted, problem: failed.length > 0 ? `failed for ${failed.join('; ')}` : undefined };
  }

  #checkMaxRows(maxRows: number): void {
    if (!Number.isInteger(maxRows) || maxRows < 0 || maxRows > this.limits.maxRowsCap) {
      throw new SqlLimitError(`max_rows must be a whole number from 0 to ${this.limits.maxRowsCap} (this server's cap), got ${maxRows}.`);
    }
  }

  async #run(
    projectId: string,
    principal: Principal,
    sql: string,
    options: { readOnly: boolean; rows: boolean; maxRows: number; count: boolean; settings?: Readonly<Record<string, string>>; distribute?: boolean; ensure?: boolean },
    retried = false,
  ): Promise<{ result: RowsResult; affected: number }> {
    const fn = sandboxFunction(principal.schemaName);
    const params: string[] = [String(this.limits.statementTimeoutMs), options.readOnly ? 'on' : 'off'];
    const set = [`pg_catalog.set_config('statement_timeout', $1, true)`, `pg_catalog.set_config('transaction_read_only', $2, true)`];
    for (const [name, value] of Object.entries(options.settings ?? {})) {
      set.push(`pg_catalog.set_config($${params.push(name)}, $${params.push(value)}, true)`);
    }
    // A read is an explicit transaction ended by ROLLBACK, never the commit Sync would make: NOTIFY
    // (which needs no privilege and runs in a read-only transaction, from an agent's function too)
    // and transactional logical messages take effect only at commit. Explicit, since a ROLLBACK
    // in the protocol's implicit transaction warns, into the server log too; after a failed step
    // the database's clean-up rolls it back (afterFailedPipeline).
    const steps: PipelineStep[] = options.readOnly ? [{ sql: 'BEGIN' }] : [];
    const settingsStep = steps.push({ sql: `SELECT ${set.join(', ')}`, params }) - 1;
    const server = options.distribute ? await this.#anchorNeededBy(principal.schemaName) : undefined;
    const anchor = distributionAnchor(principal.schemaName);
    if (server) steps.push(...anchorStatements(principal, server, `CREATE TABLE ${anchor} ()`).map((sql) => ({ sql })));
    const agentStep = steps.length;
    if (options.rows) {
      steps.push(
        { sql: `SELECT ${fn}('open', $1, 0, 0)`, params: [sql] },
        // The open put the statement timeout back (agent code may run while it plans).
        { describePortal: RESULT_PORTAL },
        {
          sql: `SELECT ${fn}('fetch', $1, $2, $3)`,
          params: [options.count ? 'count' : null, String(options.maxRows), String(this.limits.maxResultBytes)],
        },
      );
    } else {
      steps.push({ sql: `SELECT ${fn}('run', $1, 0, 0)`, params: [sql] });
    }
    const answered = steps.length - 1;
    // Same implicit transaction: the new table is distributed, or the statement undone.
    if (options.distribute) steps.push({ sql: `SELECT ${fn}('run', $1, 0, 0)`, params: [distributeNewTables(principal.schemaName)] });
    if (server) steps.push(...anchorStatements(principal, server, `DROP TABLE ${anchor}`).map((sql) => ({ sql })));
    if (options.readOnly) steps.push({ sql: 'ROLLBACK' });
    // Never an empty result for a reply that lost its steps: an agent could not tell it from the truth.
    const outcome = completeOutcome(await this.db.pipeline(steps, projectId), steps);
    if (outcome.error) {
      const code = sqlState(outcome.error);
      // The function was dropped (DROP OWNED BY CURRENT_USER) or altered: make it again, once.
      const sandboxGone = code === SANDBOX_BROKEN || (code === '42883' && outcome.results.length === settingsStep + 1);
      if (sandboxGone && !retried) {
        this.log.warn('re-creating the SQL sandbox of a workspace', { project_id: projectId, code });
        this.#principals.delete(projectId);
        return this.#run(projectId, await this.#principal(projectId, { ensure: options.ensure ?? true }), sql, options, true);
      }
      // 57014 is also a cancel on request; only the timeout's wording is the limit's.
      if (code === '57014' && /statement timeout/.test(pgError(outcome.error)?.message ?? '')) {
        throw new StatementTimeoutError(this.limits.statementTimeoutMs, outcome.error);
      }
      throw outcome.error;
    }
    const answer = readSandboxAnswer(outcome.results[answered]?.rows[0]?.[0] ?? '{}');
    const fields = options.rows ? (outcome.results[agentStep + 1]?.fields ?? []) : [];
    const columns = await this.#columns(fields);
    const rows = answer.rows.map((row) => row.map((value, i) => decodeValue(value, fields[i], columns[i])));
    return {
      result: {
        columns,
        rows,
        rowCount: rows.length,
        truncated: answer.more,
        ...(answer.more ? { truncatedBy: answer.byBytes ? ('max_bytes' as const) : ('max_rows' as const) } : {}),
      },
      affected: answer.total,
    };
  }

  /** On Citus: the server's role when the workspace's colocation group holds no table for an agent's new one to join (NEEDS_DISTRIBUTION_ANCHOR). */
  async #anchorNeededBy(schemaName: string): Promise<string | undefined> {
    const [row] = await this.db.query<{ server: string; needed: boolean }>(NEEDS_DISTRIBUTION_ANCHOR, [schemaName]);
    return row?.needed ? row.server : undefined;
  }

  async #columns(fields: readonly PipelineField[]): Promise<Column[]> {
    const key = (f: PipelineField) => `${f.dataTypeID}:${f.dataTypeModifier}`;
    const unknown = [...new Set(fields.filter((f) => !this.#typeNames.has(key(f))).map(key))];
    if (unknown.length > 0) {
      // Type names are catalog reads (format_type), which run no agent code.
      const rows = await this.db.query<{ key: string; name: string }>(
        `SELECT k AS key, pg_catalog.format_type(split_part(k, ':', 1)::oid, split_part(k, ':', 2)::int) AS name
           FROM unnest($1::text[]) k`,
        [unknown],
      );
      for (const r of rows) this.#typeNames.set(r.key, r.name);
    }
    return fields.map((f) => ({ name: f.name, type: this.#typeNames.get(key(f)) ?? String(f.dataTypeID) }));
  }

  /** Checked once; a problem is checked again on the next call, so its fix needs no restart. */
  async #capabilityOnce(q: Queryable = this.db): Promise<Capability> {
    const checking = (this.#capability ??= this.#checkCapability(q));
    const capability = await checking.catch((error: unknown) => {
      if (this.#capability === checking) this.#capability = undefined;
      throw error;
    });
    if (capability.problem && this.#capability === checking) this.#capability = undefined;
    return capability;
  }

  /** The SQL tools refuse, never a weaker mode, while the database allows an escape (sandbox-capability.ts). */
  async #checkCapability(q: Queryable): Promise<Capability> {
    const capability = await readSandboxCapability(q, this.searchPathSchemas, { workers: true });
    const [first] = capabilityProblems(capability);
    const problem = first && `${first.message} Run: ${first.grants.join(' ')} (in database ${quoteIdent(capability.database)})`;
    return { database: capability.database, serverRole: capability.role, problem };
  }

  /** The workspace's recorded role, or for one that has none yet the name it gets (roleNameFor). */
  async #principalIn(q: Queryable, capability: Capability, projectId: string): Promise<Principal> {
    return {
      schemaName: schemaNameFor(projectId),
      roleName: await workspaceRoleOf(q, projectId, capability.database),
      searchPath: this.searchPathSchemas,
    };
  }

  /** The workspace (created if needed, as ensure_workspace would) and its intact principal. */
  async #principal(projectId: string, { ensure = true } = {}, visiting = new Set<string>()): Promise<Principal> {
    const cached = this.#principals.get(projectId);
    if (cached) return cached;
    const capability = await this.#capabilityOnce();
    if (capability.problem) throw new SqlToolsUnavailableError(capability.problem);
    if (ensure) await this.workspaces.ensure(projectId);
    visiting.add(projectId);
    // A role two workspaces share (made by the naming of before 2026-12) first leaves the
    // workspace it was not recorded for: that one gets a role of its own, with its objects.
    for (const other of await this.#sharingWorkspaces(projectId, capability)) {
      if (!visiting.has(other)) await this.#principal(other, { ensure: false }, visiting);
    }
    const principal = await this.db.transaction(async (tx) => {
      await lockWorkspace(tx, projectId);
      // Not made by this call: it must exist (a drop may have committed since the caller looked),
      // or the script below would make its role and sandbox for a workspace that is not there.
      if (!ensure && !(await lookupWorkspace(tx, projectId))?.schema_exists) throw new WorkspaceNotFoundError(projectId);
      const found = await this.#principalIn(tx, capability, projectId);
      await this.#repairIn(tx, projectId, found, capability);
      return found;
    });
    this.#principals.set(projectId, principal);
    return principal;
  }

  /** Registered workspaces other than `projectId` whose schema its role reaches but whose role it is not. */
  async #sharingWorkspaces(projectId: string, capability: Capability): Promise<string[]> {
    const { roleName, schemaName } = await this.#principalIn(this.db, capability, projectId);
    const others: string[] = [];
    for (const place of await roleUsesElsewhere(this.db, roleName, schemaName, SANDBOX_SCHEMA)) {
      const other = place.startsWith('schema ') ? projectIdOfSchema(place.slice('schema '.length)) : undefined;
      if (other === undefined || (await workspaceOfRole(this.db, roleName)) === other) continue;
      if ((await this.#principalIn(this.db, capability, other)).roleName !== roleName) others.push(other);
    }
    return others;
  }

  /**
   * Makes the role, privileges and sandbox function unless all are there and intact: the
   * function with its flags, exactly this server's body (an older server's is replaced),
   * nothing but its search path as settings (PostgreSQL stores SET clauses quote_ident-ed) and
   * the server's own EXECUTE grant; the role a member of no role (principalScript revokes any).
   * An existing role is taken only if it serves nothing outside this workspace (another
   * workspace, another database: a role is never shared), and is recorded in the registry.
   */
  async #repairIn(tx: Queryable, projectId: string, principal: Principal, capability: Capability): Promise<void> {
    const [state] = await tx.query<{ role_exists: boolean; intact: boolean; body_intact: boolean }>(
      `SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $2) AS role_exists,
              EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $2 AND rolvaliduntil = '-infinity' AND (rolcanlogin OR NOT $4::boolean)
                         AND pg_catalog.has_schema_privilege(oid, pg_catalog.to_regnamespace($1)::oid, 'USAGE')
                         AND NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.member = pg_roles.oid))
              AND EXISTS (SELECT FROM pg_catalog.pg_proc p
                       WHERE p.pronamespace = pg_catalog.to_regnamespace($3) AND p.proname = $1
                         AND p.prosecdef AND NOT p.proisstrict
                         AND p.proconfig = ARRAY['search_path=' || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(e), ', ' ORDER BY o)
                                                                       FROM pg_catalog.unnest($6::text[]) WITH ORDINALITY u(e, o))] AND p.pronargs = 4 AND p.prosrc = $5
                         AND p.proowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2)
                         AND EXISTS (SELECT FROM pg_catalog.aclexplode(p.proacl) a
                                      WHERE a.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $9) AND a.privilege_type = 'EXECUTE'))
              AND (SELECT count(*) FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = pg_catalog.to_regnamespace($3) AND p.proname = $1) = 1 AS intact,
              EXISTS (SELECT FROM pg_catalog.pg_proc b
                       WHERE b.oid = pg_catalog.to_regprocedure($7) AND NOT b.prosecdef AND b.proconfig IS NULL AND b.prosrc = $8) AS body_intact`,
      [
        principal.schemaName,
        principal.roleName,
        SANDBOX_SCHEMA,
        this.workspaces.citus,
        sandboxSource(principal),
        sandboxSearchPath(principal),
        SANDBOX_BODY,
        sandboxBodySource(),
        capability.serverRole,
      ],
    );
    if (!state?.intact) {
      const elsewhere = state?.role_exists ? await roleUsesElsewhere(tx, principal.roleName, principal.schemaName, SANDBOX_SCHEMA) : [];
      if (elsewhere.length > 0) {
        throw new SqlToolsUnavailableError(
          `The PostgreSQL role ${principal.roleName} that workspace ${principal.schemaName} would run as already serves ` +
            `${elsewhere.join(', ')}: a workspace role never serves two workspaces (or databases), so the SQL tools are refused here. ` +
            `\`pg-workspace-mcp doctor\` lists shared roles; drop the other use of the role, or the role, as an administrator.`,
        );
      }
    }
    if (!state?.intact || !state.body_intact) {
      try {
        // principalScript writes the shared body too, under the sandbox lock.
        await tx.exec(principalScript(principal, !state?.role_exists, capability.serverRole, this.workspaces.citus, !state?.body_intact));
      } catch (error) {
        if (sqlState(error) === '42501') {
          throw new SqlToolsUnavailableError(
            `Could not set up the PostgreSQL role of workspace ${principal.schemaName}: ${pgError(error)?.message}. ` +
              `The server's role ${capability.serverRole} needs CREATEROLE and must own the workspace schemas it created.`,
          );
        }
        throw error;
      }
      this.log.info('made the SQL sandbox of a workspace', { schema: principal.schemaName, role: principal.roleName });
    }
    try {
      await recordWorkspaceRole(tx, projectId, principal.roleName);
    } catch (error) {
      if (sqlState(error) !== '23505') throw error;
      throw new SqlToolsUnavailableError(
        `The PostgreSQL role ${principal.roleName} is recorded for another workspace, so workspace ${principal.schemaName} cannot use it: a workspace role never serves two workspaces.`,
      );
    }
  }
}

/** JSON values as the sandbox sent them (top-level numbers as their text), typed by the portal's columns. */
function decodeValue(value: unknown, field: PipelineField | undefined, column: Column | undefined): unknown {
  if (typeof value !== 'string' || !field) return value;
  if (NUMBER_TYPES.has(field.dataTypeID)) {
    const n = Number(value);
    return Number.isFinite(n) ? n : value;
  }
  if (column && /^(vector|halfvec)\b/.test(column.type) && value.startsWith('[')) return JSON.parse(value) as number[];
  return value;
}
