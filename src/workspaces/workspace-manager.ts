import type { Database, Queryable } from '../db/database.js';
import { validateIdentifier } from '../db/identifiers.js';
import { privilegeAdvice } from '../db/privilege-advice.js';
import { DEFAULT_UPGRADE_TIMEOUT_MS } from '../config.js';
import { isConnectionFailure, pgError, sqlState } from '../db/sql-errors.js';
import { SHARDING_OFF } from '../db/postgres/citus.js';
import { quoteIdent } from '../db/identifiers.js';
import type { InstallPlan } from '../installer/install-plan.js';
import type { Logger } from '../logger.js';
import {
  appliedWorkspaceMigrations,
  checkColumns,
  createWorkspace,
  isWorkspaceSchema,
  listWorkspaces,
  lockWorkspace,
  lookupWorkspace,
  lookupWorkspaceWithGeneration,
  markWorkspaceSchema,
  workspaceSchemaState,
  MISSING_COLUMNS,
  PLACED_ELSEWHERE,
  registryGeneration,
  registerWorkspace,
  type ColumnCheck,
  type CreatedWorkspace,
  type RegisteredWorkspace,
  type Registration,
  type WorkspaceRow,
} from '../registry/registry-sql.js';
import { WORKSPACE_LOCK_TIMEOUT_MS } from '../registry/workspace-lock.js';
import { distributeNewTables } from '../sandbox/sandbox-ddl.js';
import { explainCitusRefusal, runScriptStatementwise } from './citus-workspaces.js';
import { PROJECT_ID_MAX_LENGTH, ReservedSchemas, validateProjectId, WorkspaceIdError } from './project-id.js';
import { searchVectors, type VectorSearchInput, type VectorSearchResult, type WorkspaceReader } from './vector-search.js';
import { describeWorkspace, type RelationDescription } from './workspace-description.js';
import { buildWorkspaceScript, locateFailure, type WorkspaceScript } from './workspace-ddl.js';
import { dropWorkspace, renameWorkspace, WorkspaceLifecycleError, type DropOutcome } from './workspace-lifecycle.js';
import {
  DEFAULT_SNAPSHOT_LIMITS,
  dropSnapshot,
  forkWorkspace,
  prepareForkOnCitus,
  prepareSnapshotOnCitus,
  restoreSnapshot,
  snapshotsOf,
  takeSnapshot,
  type RestoreOutcome,
  type SnapshotLimits,
  type WorkspaceRunner,
} from './workspace-snapshots.js';
import type { SnapshotRow } from '../registry/snapshot-queries.js';
import { discardCitusCopy, finishCitusCopy, placeNearSource, type CitusCopyPlan } from '../snapshots/citus-schema-copy.js';
import {
  ForeignSchemaError,
  WorkspaceNotFoundError,
  WorkspacePermissionError,
  WorkspacePlacedElsewhereError,
  WorkspaceProvisionError,
} from './workspace-errors.js';

export interface Workspace {
  projectId: string;
  schemaName: string;
  /** True only for the one call that created the schema. */
  created: boolean;
  createdAt: Date;
  tables: string[];
}

/** A snapshot, and whether it is at this server's workspace migration level (else a restore is upgraded on next use). */
export type SnapshotInfo = SnapshotRow & { levelCurrent: boolean };

export interface WorkspaceSummary {
  projectId: string;
  schemaName: string;
  createdAt: Date;
}

export interface WorkspacePage {
  workspaces: WorkspaceSummary[];
  nextCursor: string | null;
}

export interface ListOptions {
  limit?: number;
  cursor?: string | undefined;
  prefix?: string | undefined;
  /** Only these project ids (the --allow-project allowlist); pages and cursors work as without. */
  only?: readonly string[] | undefined;
}

export const LIST_LIMIT_DEFAULT = 50;
export const LIST_LIMIT_MAX = 500;
const LIST_PREFIX = new RegExp(`^[a-z0-9-]{0,${PROJECT_ID_MAX_LENGTH}}$`);

export interface ColumnValidation extends ColumnCheck {
  schema: string;
  table: string;
  valid: boolean;
}

interface Provisioned {
  /** Absent when the workspace does not exist and was not to be created. */
  workspace?: Workspace;
  changed: boolean;
  migrations: string[];
}

/** The registry row says the workspace is there and current, and its schema is. */
const isCurrent = (row: RegisteredWorkspace, plan: InstallPlan): boolean =>
  row.schema_exists && row.workspace_fingerprint === plan.workspaceFingerprint;

/** The SQL sandbox function an upgrade script must run in (see WorkspaceSandbox.scriptSandbox), if any. */
export interface ScriptSandbox extends WorkspaceReader, WorkspaceRunner {
  scriptSandbox(tx: Queryable, projectId: string, schemaName: string): Promise<string | undefined>;
}

/** How a WorkspaceManager is set up; every field has a default. */
export interface WorkspaceManagerOptions {
  citus?: boolean;
  lockTimeoutMs?: number;
  upgradeTimeoutMs?: number;
  snapshotLimits?: SnapshotLimits;
  /**
   * The SQL tools' sandbox (src/sandboxed-workspaces.ts builds the pair): upgrades of workspaces
   * agents have used run inside it, and so do vector searches and snapshot copies. Without it
   * (tests of provisioning alone) those refuse or run as before agents had SQL.
   */
  sandbox?: ScriptSandbox;
}

export class WorkspaceManager {
  readonly sandbox: ScriptSandbox | undefined;
  /** Workspaces known to exist, each with the registry generation it was known at (see ensure). */
  readonly #cache = new Map<string, { workspace: Omit<Workspace, 'created'>; generation: string }>();
  readonly #inflight = new Map<string, Promise<{ workspace: Workspace; generation: string }>>();
  /** Every extension's required workspace columns, as missing_workspace_columns() takes them. */
  readonly #required: string;
  readonly #reserved = new ReservedSchemas();
  /** On a Citus coordinator every workspace is a distributed schema (see db/postgres/citus.ts). */
  readonly #citus: boolean;
  /** How long provisioning waits for a workspace's lock before naming its holder. */
  readonly #lockTimeoutMs: number;
  readonly #upgradeTimeoutMs: number;

  /** Per-workspace snapshot count and bytes (PG_WORKSPACE_MAX_SNAPSHOTS, PG_WORKSPACE_SNAPSHOT_BUDGET_BYTES). */
  readonly #snapshotLimits: SnapshotLimits;

  constructor(
    private readonly db: Database,
    private readonly plan: InstallPlan,
    private readonly searchPathSchemas: readonly string[],
    private readonly log: Logger,
    options: WorkspaceManagerOptions = {},
  ) {
    this.sandbox = options.sandbox;
    this.#citus = options.citus ?? false;
    this.#upgradeTimeoutMs = options.upgradeTimeoutMs ?? DEFAULT_UPGRADE_TIMEOUT_MS;
    this.#lockTimeoutMs = options.lockTimeoutMs ?? WORKSPACE_LOCK_TIMEOUT_MS;
    this.#snapshotLimits = options.snapshotLimits ?? DEFAULT_SNAPSHOT_LIMITS;
    const required: Record<string, string[]> = {};
    for (const p of plan.extensions) {
      for (const { table, columns } of p.workspaceRequiredColumns) required[table] = [...new Set([...(required[table] ?? []), ...columns])];
    }
    this.#required = JSON.stringify(required);
    for (const [schema, extensionIds] of plan.globalSchemas) {
      this.#reserved.add(schema, `used by the global SQL of extension ${extensionIds.map((id) => `"${id}"`).join(', ')}`);
    }
    const pgExtensions = [...plan.pgExtensions.keys()].join(', ');
    for (const schema of searchPathSchemas) this.#reserved.add(schema, `where the PostgreSQL extensions this server requires (${pgExtensions}) are installed`);
  }

  /** Whether workspaces are Citus distributed schemas (a Citus coordinator). */
  get citus(): boolean {
    return this.#citus;
  }

  /** The schema of `projectId`'s workspace; ReservedProjectIdError for an id no workspace can have (its schema is the server's or an extension's). */
  schemaNameOf(projectId: string): string {
    return this.#reserved.schemaFor(projectId);
  }

  /**
   * Returns the workspace, creating or upgrading it first when needed. A cache hit sends one
   * read of the registry's generation, which every drop (in any process) bumps as it commits: a
   * workspace cached at an older generation is looked up again, so a workspace dropped elsewhere
   * is re-created, never reported from the cache. Callers in this process asking for the same
   * id at once share one provisioning.
   */
  async ensure(projectId: string): Promise<Workspace> {
    const schemaName = this.#reserved.schemaFor(projectId);
    const cached = this.#cache.get(projectId);
    if (cached) {
      if ((await registryGeneration(this.db)) === cached.generation) return { ...cached.workspace, created: false };
      this.#cache.delete(projectId);
    }
    const pending = this.#inflight.get(projectId);
    if (pending) return { ...(await pending).workspace, created: false };
    const work = this.#ensureUncached(projectId, schemaName).finally(() => this.#inflight.delete(projectId));
    this.#inflight.set(projectId, work);
    const { workspace, generation } = await work;
    const { created: _created, ...known } = workspace;
    this.#cache.set(projectId, { workspace: known, generation });
    return workspace;
  }

  /**
   * The workspace, and the registry generation read (with the lookup, in one snapshot) before
   * anything was decided: the workspace existed at that generation or later.
   */
  async #ensureUncached(projectId: string, schemaName: string): Promise<{ workspace: Workspace; generation: string }> {
    const { generation, row, placed } = await lookupWorkspaceWithGeneration(this.db, projectId);
    if (row && isCurrent(row, this.plan)) return { workspace: this.#workspace(projectId, schemaName, false, row.created_at), generation };
    // Its workspace belongs to a member database: made here too, one id would have two. Only a
    // server that has not followed the placements yet asks here (the engine follows them now).
    if (!row && placed) throw new WorkspacePlacedElsewhereError(projectId);
    // Unregistered: create in one round trip, unless a concurrent creator registered it at
    // another version meanwhile, which the general path below then upgrades (as it does a
    // lagging workspace, or one whose schema is gone), or its schema exists without a registry
    // row, which the general path takes back (as the workspace's role) or refuses.
    const created = row ? undefined : await this.#create(projectId, schemaName);
    if (created) return { workspace: created, generation };
    const result = await this.#provision(projectId, schemaName, { create: true });
    return { workspace: result.workspace as Workspace, generation };
  }

  /**
   * Drops the workspace (schema with everything in it, registry and ledger rows, SQL sandbox
   * function and role) in one transaction under its lock; `dropped` is false when nothing of it
   * existed. Other servers caching it notice on their next ensure (the registry generation).
   */
  async drop(projectId: string): Promise<DropOutcome> {
    const schemaName = this.#reserved.schemaFor(projectId);
    let outcome: DropOutcome;
    try {
      outcome = await this.db.transaction((tx) => dropWorkspace(tx, projectId, schemaName, { lockTimeoutMs: this.#lockTimeoutMs, citus: this.#citus }));
    } finally {
      this.#cache.delete(projectId);
    }
    if (outcome.dropped) this.log.warn('dropped workspace', { project_id: projectId, schema: schemaName, changes: outcome.changes });
    return outcome;
  }

  /**
   * The one-round-trip form of #provisionIn for an id found unregistered: core's
   * create_workspace() runs the same lock, re-check, script and registration server-side.
   */
  async #create(projectId: string, schemaName: string): Promise<Workspace | undefined> {
    const script = buildWorkspaceScript(schemaName, this.searchPathSchemas, this.plan.extensions, [], {
      schemaFiles: true,
      citus: this.#citus,
      create: true,
    });
    let row: CreatedWorkspace;
    try {
      row = await createWorkspace(this.db, this.#registration(projectId, schemaName), script.sql, script.migrations, this.#required, this.#lockTimeoutMs);
    } catch (error) {
      // The schema appeared meanwhile: the general path decides whether it is the server's.
      if (sqlState(error) === '42P06') return undefined;
      // Placed in a member database since the lookup, by a server spreading workspaces (core's PW003).
      if (sqlState(error) === PLACED_ELSEWHERE) throw new WorkspacePlacedElsewhereError(projectId);
      // An SQL error here is the script's, the required-column check's or the lock's; PostgreSQL
      // gives the position in the script only with the script as internal query.
      const fields = pgError(error);
      const position = fields?.internalQuery === script.sql ? Number(fields.internalPosition) : NaN;
      throw await this.#explain(fields ? new ScriptError(script, error, position) : error, projectId, schemaName);
    }
    if (!row.created && row.registered_fingerprint !== this.plan.workspaceFingerprint) return undefined;
    if (row.created) this.log.info('created workspace', { project_id: projectId, schema: schemaName, migrations: script.migrations.names });
    return this.#workspace(projectId, schemaName, row.created, row.registered_at);
  }

  /**
   * Applies pending workspace migrations to an existing workspace, in its own transaction under
   * its lock (safe beside running servers). Never creates a workspace.
   */
  async upgrade(projectId: string): Promise<{ outcome: 'upgraded' | 'up-to-date' | 'missing'; migrations: string[] }> {
    const result = await this.#provision(projectId, this.#reserved.schemaFor(projectId), { create: false });
    if (!result.workspace) return { outcome: 'missing', migrations: [] };
    return { outcome: result.changed ? 'upgraded' : 'up-to-date', migrations: result.migrations };
  }

  async #provision(projectId: string, schemaName: string, options: { create: boolean }): Promise<Provisioned> {
    try {
      // An upgrade may run the workspace's agent code (in its sandbox): see Database.pipeline's agentOf.
      return await this.db.transaction((tx) => this.#provisionIn(tx, projectId, schemaName, options), projectId);
    } catch (error) {
      throw await this.#explain(error, projectId, schemaName);
    }
  }

  /**
   * One transaction of core's steps (lock_workspace, register_workspace) around a script that
   * runs where it must: in the workspace's sandbox, or on Citus a statement at a time.
   */
  async #provisionIn(tx: Queryable, projectId: string, schemaName: string, { create }: { create: boolean }): Promise<Provisioned> {
    await lockWorkspace(tx, projectId, this.#lockTimeoutMs);
    // The script may fire the agent's triggers (an UPDATE) and run its operators: each statement
    // from here is bounded, the sandbox putting the bound back after agent code ran.
    await tx.query(`SELECT pg_catalog.set_config('statement_timeout', $1, true)`, [String(this.#upgradeTimeoutMs)]);
    const row = await lookupWorkspace(tx, projectId);
    if (!row && !create) return { changed: false, migrations: [] };
    if (row && isCurrent(row, this.plan)) return { workspace: this.#workspace(projectId, schemaName, false, row.created_at), changed: false, migrations: [] };
    // Registered, but its schema was dropped: its ledger rows describe nothing any more.
    const lost = row !== undefined && !row.schema_exists;
    // Unregistered with a schema: taken back only if the server made it (its marker), never
    // someone else's schema of that name.
    const schema = row ? undefined : await workspaceSchemaState(tx, schemaName, projectId);
    if (schema?.exists && !schema.marked) throw new ForeignSchemaError(projectId, schemaName);
    if (lost || (schema && !schema.exists)) {
      if (this.#citus) await tx.exec(SHARDING_OFF);
      await tx.exec(`CREATE SCHEMA ${quoteIdent(schemaName)}`);
      await markWorkspaceSchema(tx, schemaName, projectId);
    }
    const applied = row && !lost ? await appliedWorkspaceMigrations(tx, projectId) : [];
    const script = buildWorkspaceScript(schemaName, this.searchPathSchemas, this.plan.extensions, applied, {
      schemaFiles: lost || row?.workspace_schema_fingerprint !== this.plan.workspaceSchemaFingerprint,
      citus: this.#citus,
    });
    await this.#runScript(tx, projectId, schemaName, script, lost || schema?.exists === false);
    const createdAt = await registerWorkspace(tx, this.#registration(projectId, schemaName), script.migrations, this.#required, lost);
    const fields = { project_id: projectId, schema: schemaName, migrations: script.migrations.names };
    if (lost) this.log.warn('re-created workspace whose schema had been dropped', fields);
    else if (schema?.exists) this.log.warn('took back a workspace schema whose registry row was lost', fields);
    else this.log.info(row ? 'upgraded workspace' : 'created workspace', fields);
    const { extensionIds, names } = script.migrations;
    return { workspace: this.#workspace(projectId, schemaName, (!row && !schema?.exists) || lost, createdAt), changed: true, migrations: names.map((name, i) => `${extensionIds[i]}/${name}`) };
  }

  /**
   * Agent code may live in a workspace its agent has used (triggers an UPDATE fires, rules and
   * views an extension's table name now resolves to, operators shadowing an extension's): there
   * the script runs as the workspace's role, in its sandbox, on every backend. Elsewhere (only
   * the server's own objects) it runs as the server.
   */
  async #runScript(tx: Queryable, projectId: string, schemaName: string, script: WorkspaceScript, fresh: boolean): Promise<void> {
    if (fresh) {
      // The schema was made in this transaction: nothing of the agent's is in it. A role the
      // workspace kept (its schema was dropped by hand) then gets the new schema and its objects.
      await this.#runAsServer(tx, script);
      await this.sandbox?.scriptSandbox(tx, projectId, schemaName);
      return;
    }
    const sandbox = await this.sandbox?.scriptSandbox(tx, projectId, schemaName);
    if (this.#citus) {
      // Citus forwards DDL on a distributed table to its worker as the query string it came in,
      // which must hold one statement: a statement at a time, here or through the sandbox.
      if (!sandbox) {
        await this.#runAsServer(tx, script);
        return;
      }
      await tx.exec(script.prelude);
      for (const { at, statement } of script.starts) {
        try {
          await tx.query(`SELECT ${sandbox}('script', $1, 0, 0)`, [statement.sql]);
        } catch (error) {
          const fields = pgError(error);
          const position = at + (fields?.internalQuery === statement.sql ? Number(fields.internalPosition) : 1);
          throw new ScriptError(script, error, position, true);
        }
      }
      // A table a migration made from the sandbox (not a top-level CREATE TABLE) is still local.
      await tx.query(`SELECT ${sandbox}('script', $1, 0, 0)`, [distributeNewTables(schemaName)]);
      return;
    }
    if (!sandbox) {
      await this.#runAsServer(tx, script);
      return;
    }
    const body = script.sql.slice(script.prelude.length);
    try {
      await tx.query(`SELECT ${sandbox}('script', $1, 0, 0)`, [body]);
    } catch (error) {
      const fields = pgError(error);
      const inBody = fields?.internalQuery === body;
      throw new ScriptError(script, error, inBody ? script.prelude.length + Number(fields.internalPosition) : NaN, true);
    }
  }

  /** The script as the server (on Citus a statement at a time): only where nothing of the agent's is. */
  async #runAsServer(tx: Queryable, script: WorkspaceScript): Promise<void> {
    if (this.#citus) {
      await runScriptStatementwise(tx, script, (error, position) => new ScriptError(script, error, position));
      return;
    }
    try {
      await tx.exec(script.sql);
    } catch (error) {
      throw new ScriptError(script, error, Number(pgError(error)?.position));
    }
  }

  #workspace(projectId: string, schemaName: string, created: boolean, createdAt: Date): Workspace {
    return { projectId, schemaName, created, createdAt, tables: [...this.plan.workspaceTables] };
  }

  #registration(projectId: string, schemaName: string): Registration {
    return { projectId, schemaName, fingerprint: this.plan.workspaceFingerprint, schemaFingerprint: this.plan.workspaceSchemaFingerprint };
  }

  /** What missing_workspace_columns() reported ("table" or "table.column"), per extension. */
  #missingColumnsError(missing: readonly string[]): Error {
    for (const p of this.plan.extensions) {
      for (const { table, columns } of p.workspaceRequiredColumns) {
        const absent = columns.filter((c) => missing.includes(`${table}.${c}`));
        if (!missing.includes(table) && absent.length === 0) continue;
        return new Error(
          `Extension "${p.extension.id}" requires ${table}(${columns.join(', ')}) in every workspace, but ` +
            (absent.length > 0 ? `${absent.join(', ')} is missing` : `the table does not exist`) +
            ` after its workspace DDL and migrations ran. Fix the extension's workspace/ files.`,
        );
      }
    }
    return new Error(`Required workspace columns are missing: ${missing.join(', ')}. Fix the extensions' workspace/ files.`);
  }

  async #explain(error: unknown, projectId: string, schemaName: string): Promise<unknown> {
    const cause = error instanceof ScriptError ? error.cause : error;
    const fields = pgError(cause);
    if (fields?.code === MISSING_COLUMNS) return this.#missingColumnsError(JSON.parse(fields.detail ?? '[]') as string[]);
    // The session or the server went away (57P01, 53300, a broken socket): nothing in the DDL
    // to point at, and the caller is told to retry (explainError).
    if (isConnectionFailure(cause)) return cause;
    const refused = this.#citus ? explainCitusRefusal(this.plan, projectId, cause) : undefined;
    if (refused) return refused;
    if (fields?.code === '42501') {
      // The workspace's DDL runs in its own new schema (CREATE on the database), with the schemas
      // of the required PostgreSQL extensions on its search path.
      const advice = await privilegeAdvice(this.db, { uses: this.searchPathSchemas });
      return new WorkspacePermissionError(schemaName, advice, cause);
    }
    if (!fields) return cause;
    let where = '';
    if (error instanceof ScriptError) {
      const statement =
        error.sandboxed && !Number.isFinite(error.position)
          ? undefined
          : await locateFailure(this.db, error.script, error.position).catch(() => undefined);
      where = statement
        ? ` at ${statement.file} statement ${statement.number}/${statement.total} (line ${statement.line})`
        : ' in the workspace DDL';
    }
    return new WorkspaceProvisionError(projectId, where, cause);
  }

  /**
   * Renames a workspace (schema, registry and ledger rows, role, SQL sandbox) in one transaction
   * under both ids' locks; what it changed. Not on Citus, where it is not tested.
   */
  async rename(from: string, to: string): Promise<string[]> {
    const request = { from, to, fromSchema: this.#reserved.schemaFor(from), toSchema: this.#reserved.schemaFor(to) };
    if (this.#citus) throw new WorkspaceLifecycleError('Renaming a workspace is not supported on Citus (a distributed schema); nothing was changed.');
    try {
      const changes = await this.db.transaction((tx) => renameWorkspace(tx, request, this.searchPathSchemas, this.#lockTimeoutMs));
      this.log.warn('renamed workspace', { project_id: from, to, changes });
      return changes;
    } finally {
      this.#cache.delete(from);
      this.#cache.delete(to);
    }
  }

  /**
   * A point-in-time copy of the workspace (docs/snapshots.md), in one transaction under its
   * lock; reads go on meanwhile. Counted against the per-workspace limits.
   */
  async snapshot(projectId: string, label?: string): Promise<SnapshotInfo> {
    const schemaName = this.#reserved.schemaFor(projectId);
    const c = { projectId, schemaName, lockTimeoutMs: this.#lockTimeoutMs, runner: this.#snapshotRunner(), citus: this.#citus };
    const row = await this.#withCitusCopy(
      projectId,
      (tx) => prepareSnapshotOnCitus(tx, c, this.searchPathSchemas),
      (tx, prepared) => takeSnapshot(tx, c, label ?? null, this.#snapshotLimits, prepared),
    );
    this.log.info('took a snapshot of a workspace', { project_id: projectId, snapshot: row.snapshot, bytes: row.size_bytes });
    return this.#snapshotInfo(row);
  }

  /**
   * The transaction `run` (which runs `agentOf`'s code), on Citus after `prepare` committed and
   * its schema was placed beside its source (citus-schema-copy.ts), discarding what it prepared
   * when `run` fails. Neither preparing nor discarding runs agent code.
   */
  async #withCitusCopy<T>(
    agentOf: string,
    prepare: (tx: Queryable) => Promise<CitusCopyPlan>,
    run: (tx: Queryable, prepared?: CitusCopyPlan) => Promise<T>,
  ): Promise<T> {
    // The copy runs the agent's code (a CHECK, a domain, a materialized view): bounded like an
    // upgrade's, or one sleeping there held a connection (PGlite's one session) and the lock.
    const bounded = async (tx: Queryable, prepared?: CitusCopyPlan) => {
      await tx.query(`SELECT pg_catalog.set_config('statement_timeout', $1, true)`, [String(this.#upgradeTimeoutMs)]);
      return run(tx, prepared);
    };
    return this.#snapshotRunner().inTurn(agentOf, async () => {
      if (!this.#citus) return this.db.transaction((tx) => bounded(tx), agentOf);
      const prepared = await this.db.transaction(prepare);
      try {
        await placeNearSource(this.db, prepared);
        const outcome = await this.db.transaction((tx) => bounded(tx, prepared), agentOf);
        await this.#underLock(agentOf, (tx) => finishCitusCopy(tx, prepared), "could not finish a Citus copy: the workspace's next snapshot does (doctor lists what is left)", prepared.target);
        return outcome;
      } catch (error) {
        // Under the lock, like every change to the workspace's snapshot readings (snapshot-reader.ts).
        await this.#underLock(agentOf, (tx) => discardCitusCopy(tx, prepared), 'could not drop a Citus copy that failed', prepared.target);
        throw error;
      }
    });
  }

  /** A Citus copy's last step, in a transaction of its own under the workspace's lock; a failure is logged (`warning`), the copy's outcome stands. */
  async #underLock(projectId: string, step: (tx: Queryable) => Promise<void>, warning: string, schema: string): Promise<void> {
    await this.db
      .transaction(async (tx) => {
        await lockWorkspace(tx, projectId, this.#lockTimeoutMs);
        await step(tx);
      })
      .catch((error: unknown) => this.log.warn(warning, { schema, error: String(error) }));
  }

  async listSnapshots(projectId: string): Promise<SnapshotInfo[]> {
    this.#reserved.schemaFor(projectId);
    return (await snapshotsOf(this.db, projectId)).map((row) => this.#snapshotInfo(row));
  }

  #snapshotInfo(row: SnapshotRow): SnapshotInfo {
    return { ...row, levelCurrent: row.workspace_fingerprint === this.plan.workspaceFingerprint };
  }

  /** Drops one snapshot; false when the workspace has no such snapshot (nothing changed). */
  async dropSnapshot(projectId: string, snapshot: number): Promise<boolean> {
    const schemaName = this.#reserved.schemaFor(projectId);
    const drop = () => this.db.transaction((tx) => dropSnapshot(tx, { projectId, schemaName, lockTimeoutMs: this.#lockTimeoutMs, citus: this.#citus }, snapshot));
    const dropped = await (this.sandbox ? this.sandbox.inTurn(projectId, drop) : drop());
    if (dropped) this.log.warn('dropped a snapshot of a workspace', { project_id: projectId, snapshot });
    return dropped;
  }

  /** The workspace becomes the snapshot's state, atomically; the state it replaced is kept as a new snapshot. */
  async restore(projectId: string, snapshot: number): Promise<RestoreOutcome> {
    const schemaName = this.#reserved.schemaFor(projectId);
    const runner = this.#snapshotRunner();
    try {
      const outcome = await runner.inTurn(projectId, () =>
        this.db.transaction(
          (tx) => restoreSnapshot(tx, { projectId, schemaName, lockTimeoutMs: this.#lockTimeoutMs, citus: this.#citus }, snapshot, this.searchPathSchemas),
          projectId,
        ),
      );
      this.log.warn('restored a workspace from a snapshot', { project_id: projectId, snapshot, kept_as: outcome.kept.snapshot });
      return outcome;
    } finally {
      this.#cache.delete(projectId);
    }
  }

  /** A new workspace `to` holding a copy of `from` (or of one of its snapshots), with its own role and sandbox. */
  async fork(from: string, to: string, snapshot?: number): Promise<{ createdAt: Date; schemaName: string; changes: string[] }> {
    const request = { from, to, fromSchema: this.#reserved.schemaFor(from), toSchema: this.#reserved.schemaFor(to), snapshot };
    const runner = this.#snapshotRunner();
    try {
      // The copy runs the source's code (as the new workspace's role), which is the source's to see.
      const outcome = await this.#withCitusCopy(
        from,
        (tx) => prepareForkOnCitus(tx, request, this.searchPathSchemas, this.#lockTimeoutMs, runner),
        (tx, prepared) => forkWorkspace(tx, request, this.searchPathSchemas, this.#lockTimeoutMs, runner, prepared),
      );
      this.log.info('forked a workspace', { project_id: from, to, snapshot });
      return { ...outcome, schemaName: request.toSchema };
    } finally {
      this.#cache.delete(to);
    }
  }

  /** Snapshots copy in SQL sandboxes (as the workspace's role, or on Citus as the copy's owner). */
  #snapshotRunner(): WorkspaceRunner {
    if (!this.sandbox) throw new WorkspaceLifecycleError('Snapshots need the SQL tools (the copy runs as the workspace\'s role), which this process has not set up.');
    return this.sandbox;
  }

  /** Keyset pages over the registry's primary key: the cost does not grow with the registry. */
  async list(options: ListOptions = {}): Promise<WorkspacePage> {
    const { after, prefix, limit } = listRange(options);
    return pageOf((await listWorkspaces(this.db, after, prefix, limit + 1, options.only)).map(summaryOf), limit);
  }

  /** The workspaces of these ids that this database has, in id order (a list over databases, databases/member-databases.ts). */
  async summariesOf(projectIds: readonly string[]): Promise<WorkspaceSummary[]> {
    return (await listWorkspaces(this.db, '', '', projectIds.length, projectIds)).map(summaryOf);
  }

  /** The relations of a workspace, or one of them, from pg_catalog (see describeWorkspace). */
  async describe(projectId: string, table?: string): Promise<RelationDescription[]> {
    return describeWorkspace(this.db, validateProjectId(projectId), table === undefined ? undefined : validateIdentifier(table, 'table'));
  }

  /** Nearest rows to a vector in a workspace's pgvector column (see searchVectors). */
  async searchVectors(input: VectorSearchInput): Promise<VectorSearchResult> {
    return searchVectors(this.db, this.sandbox, { ...input, projectId: validateProjectId(input.projectId) });
  }

  /**
   * Which columns a table has, from pg_catalog. With a project id the table is looked up in that
   * workspace; otherwise `table` may be `schema.table` (default `public`), in a workspace schema
   * or among the global tables of the enabled extensions, and nowhere else: the server's role
   * reads every catalog, so this must not become a way to map the rest of the database.
   */
  async validateColumns(input: { projectId?: string | undefined; table: string; columns: readonly string[] }): Promise<ColumnValidation> {
    const columns = [...new Set(input.columns.map((c) => validateIdentifier(c, 'column')))];
    if (columns.length === 0) throw new RangeError('columns must list at least one column name.');
    let schema: string;
    let table: string;
    if (input.projectId !== undefined) {
      schema = this.#reserved.schemaFor(input.projectId);
      table = validateIdentifier(input.table, 'table');
    } else {
      const parts = input.table.split('.');
      if (parts.length > 2) {
        throw new RangeError(`table ${JSON.stringify(input.table.slice(0, 130))} has more than one dot: use "table" or "schema.table".`);
      }
      [schema, table] = parts.length === 2 ? [parts[0] as string, parts[1] as string] : ['public', parts[0] as string];
      schema = validateIdentifier(schema, 'schema');
      table = validateIdentifier(table, 'table');
      await this.#checkAnswerable(schema, table);
    }
    const { schemaExists, ...check } = await checkColumns(this.db, schema, table, columns);
    if (!schemaExists && input.projectId !== undefined) {
      // Gone (or never made): the next ensure must look again rather than trust the cache.
      this.#cache.delete(input.projectId);
      throw new WorkspaceNotFoundError(input.projectId);
    }
    return { schema, table, ...check, valid: check.tableExists && check.missing.length === 0 };
  }

  async #checkAnswerable(schema: string, table: string): Promise<void> {
    if (this.plan.globalTables.includes(`${schema}.${table}`)) return;
    if (await isWorkspaceSchema(this.db, schema)) return;
    throw new RangeError(
      `validate_columns answers for workspace tables and for the global tables of the enabled extensions ` +
        `(${this.plan.globalTables.join(', ') || 'none'}), not for ${schema}.${table}. For a workspace table pass ` +
        `project_id and the bare table name.`,
    );
  }
}

class ScriptError extends Error {
  /**
   * Where in the script PostgreSQL says it failed (NaN when it does not say). A script that ran
   * in the sandbox is never replayed as the server to find the statement.
   */
  constructor(
    readonly script: WorkspaceScript,
    override readonly cause: unknown,
    readonly position: number,
    readonly sandboxed = false,
  ) {
    super((cause as Error)?.message ?? String(cause));
  }
}

/** The paging of list() a call asks for, checked: ids after `after` that start with `prefix`, `limit` of them. */
export function listRange(options: ListOptions): { after: string; prefix: string; limit: number } {
  const limit = options.limit ?? LIST_LIMIT_DEFAULT;
  if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX) {
    throw new RangeError(`limit must be an integer from 1 to ${LIST_LIMIT_MAX}, got ${limit}.`);
  }
  const prefix = options.prefix ?? '';
  if (!LIST_PREFIX.test(prefix)) {
    throw new WorkspaceIdError(
      `Invalid prefix ${JSON.stringify(prefix.slice(0, 80))}: a prefix is the start of a project id (lower-case letters, digits, hyphens; at most ${PROJECT_ID_MAX_LENGTH}).`,
    );
  }
  return { after: options.cursor === undefined ? '' : decodeCursor(options.cursor), prefix, limit };
}

/**
 * The page of `limit` from the workspaces after the cursor, in id order, read one past the page
 * (or all there are): the cursor is set exactly when a workspace follows the page.
 */
export function pageOf(found: readonly WorkspaceSummary[], limit: number): WorkspacePage {
  const page = found.slice(0, limit);
  const last = page.at(-1);
  return { workspaces: page, nextCursor: found.length > limit && last ? encodeCursor(last.projectId) : null };
}

export function summaryOf(r: WorkspaceRow): WorkspaceSummary {
  return { projectId: r.project_id, schemaName: r.schema_name, createdAt: r.created_at };
}

function encodeCursor(projectId: string): string {
  return Buffer.from(projectId, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  try {
    return validateProjectId(decoded);
  } catch {
    throw new RangeError('Invalid cursor: pass back the next_cursor value of a previous list_workspaces result unchanged.');
  }
}
