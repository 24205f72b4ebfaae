import type { Queryable } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { sqlState } from '../db/sql-errors.js';
import type { Logger } from '../logger.js';
import {
  claimDeferralGuard,
  deferredIndexes,
  recordDeferralGuard,
  renewLease,
  vectorIndexesOf,
  type DeferredIndexRow,
} from '../registry/deferred-index-sql.js';
import { WriteGuardError } from '../sandbox/workspace-sandbox.js';
import { schemaNameFor } from '../workspaces/project-id.js';
import type { ChunkLoad, ChunkLoads, WorkspaceWriter } from './chunk-store.js';
import { recreateStatement, VECTOR_INDEX_METHODS } from './index-definition.js';

/** The table ingest loads, whose vector indexes a large load defers. */
const CHUNKS = 'chunks';

/**
 * The smallest load that defers: one write group (chunk-store.ts). Smaller ones are the frequent
 * calls (an agent adding a note or two), for which the drop and the build again would each take
 * the table's ACCESS EXCLUSIVE lock and leave dead catalog rows while saving a few milliseconds.
 */
export const MIN_DEFERRED_LOAD = 64;

/**
 * How long a deferral stays a running load's without renewal. A load renews it every quarter of
 * this while it runs; past it, the load is taken to have stopped (a crash) and the next ingest or
 * search of the workspace creates the indexes again. A restarted server cannot tell its crashed
 * load from another server's running one any sooner, so this bounds how long searches stay exact.
 */
export const DEFAULT_LEASE_MS = 60_000;

/** How long the drop waits for the table's lock (searches running on it hold it): a busy table keeps its indexes. */
const DROP_LOCK_TIMEOUT_MS = 2_000;

/**
 * The statement timeout of `repair --restore-indexes`, an operator's command: a large index may
 * take long to build. Builds the server starts itself (at a load's end, on a later ingest or
 * search) have the upgrade timeout instead: the agent decides their cost (rows, m,
 * ef_construction), and on PGlite a build holds the one session every workspace shares.
 */
export const REPAIR_REBUILD_TIMEOUT_MS = 15 * 60_000;

/**
 * How the server builds deferred indexes: `statementMs`, the statement timeout; `maintenanceWorkMemKb`
 * (PostgreSQL only, PG_WORKSPACE_INDEX_BUILD_MEMORY_MB): an HNSW graph larger than
 * maintenance_work_mem is built on disk, two to three times slower (docs/search.md).
 */
export interface BuildSettings {
  statementMs: number;
  maintenanceWorkMemKb?: number | undefined;
}

const NO_DEFERRAL: ChunkLoad = { end: async () => undefined };

/** The chunks present, counted up to $1 (a bounded scan, as the workspace). */
const CHUNKS_UP_TO = `SELECT pg_catalog.count(*)::int4 FROM (SELECT FROM chunks LIMIT $1) c`;

/**
 * Deferred vector indexes (docs/search.md, "Deferred indexes"): a load of at least
 * MIN_DEFERRED_LOAD chunks into a chunks table holding no more than it loads records the table's
 * HNSW and IVFFlat indexes in the registry (their pg_get_indexdef) and drops them, as the
 * workspace's role in its sandbox, in one transaction; it loads, then, once the call that loaded has
 * returned, creates them again from the recorded definitions and deletes the rows, again in one
 * transaction, renewing the lease until then. Building afterwards costs
 * a third (PostgreSQL) to a sixth (PGlite) of keeping the index up to date per insert, so a load
 * as large as the table gains even when the build covers the rows already there. Searches meanwhile
 * are exact (a sequential scan) until the build commits. A second load meanwhile (another call, another server) joins the
 * deferral, renewing its lease, and leaves the build to the load that deferred.
 */
export class IndexDeferral implements ChunkLoads {
  /** Builds started at a load's end and still running, with their workspace. */
  readonly #builds = new Map<Promise<void>, string>();
  /** Aborted by close: every build, running or to come, is cancelled. */
  readonly #closing = new AbortController();

  constructor(
    private readonly db: Queryable,
    private readonly sandbox: WorkspaceWriter,
    private readonly log: Logger,
    /** Each build's statement timeout (PG_WORKSPACE_UPGRADE_TIMEOUT_MS) and, on PostgreSQL, its maintenance_work_mem. */
    private readonly build: BuildSettings,
    private readonly leaseMs = DEFAULT_LEASE_MS,
  ) {}

  /** Never fails the load: whatever stops the deferral (a busy table, say) leaves the indexes as they are, logged. */
  async begin(projectId: string, incoming: number): Promise<ChunkLoad> {
    // After the build of the load before it: this one decides on the table as that one left it.
    await this.settled(projectId);
    await this.restoreExpired(projectId);
    try {
      return await this.#defer(projectId, incoming);
    } catch (error) {
      this.log.warn('loading without deferring the vector indexes', { project_id: projectId, table: CHUNKS, error: (error as Error).message });
      return NO_DEFERRAL;
    }
  }

  async #defer(projectId: string, incoming: number): Promise<ChunkLoad> {
    if ((await deferredIndexes(this.db, projectId, CHUNKS)).length > 0) return this.#hold(projectId, []);
    if (incoming < MIN_DEFERRED_LOAD) return NO_DEFERRAL;
    const { rows } = await this.sandbox.readAsWorkspace(projectId, CHUNKS_UP_TO, [incoming + 1], 1);
    if (Number(rows[0]?.[0]) > incoming) return NO_DEFERRAL;
    const schemaName = schemaNameFor(projectId);
    const names = (await vectorIndexesOf(this.db, schemaName, CHUNKS, VECTOR_INDEX_METHODS)).map((i) => i.name);
    // The build is bounded per statement: more than one index (the agent's own besides the server's) would multiply it.
    if (names.length !== 1) return NO_DEFERRAL;
    const drop = `DROP INDEX IF EXISTS ${names.map((n) => `${quoteIdent(schemaName)}.${quoteIdent(n)}`).join(', ')}`;
    try {
      // The drop queues for the table's ACCESS EXCLUSIVE lock, and every search of the table behind it: not for long.
      await this.sandbox.writeAsWorkspace(projectId, [{ sql: drop, params: [] }], recordDeferralGuard(projectId, schemaName, CHUNKS, names, this.leaseMs), {
        lockMs: DROP_LOCK_TIMEOUT_MS,
      });
    } catch (error) {
      // Another load recorded them first (its transaction committed before ours could): join it.
      if (error instanceof WriteGuardError && sqlState(error.cause) === '23505') return this.#hold(projectId, []);
      throw error;
    }
    this.log.info('deferred the vector indexes of a workspace table for a load', { project_id: projectId, table: CHUNKS, indexes: names, incoming });
    return this.#hold(projectId, names);
  }

  /** Creates again the indexes of the workspace whose load stopped without doing so (their lease ran out); logs, never throws. */
  async restoreExpired(projectId: string): Promise<void> {
    try {
      const expired = (await deferredIndexes(this.db, projectId)).filter((r) => r.expired);
      if (expired.length === 0) return;
      if (await restoreDeferredIndexes(this.sandbox, projectId, expired, { expiredOnly: true, ...this.build, signal: this.#closing.signal })) {
        this.log.warn('created again the vector indexes a stopped load had deferred', { project_id: projectId, indexes: expired.map((r) => r.index_name) });
      }
    } catch (error) {
      this.log.warn('could not create again the vector indexes a stopped load deferred: tried again once their lease runs out (or by repair --restore-indexes)', {
        project_id: projectId,
        error: (error as Error).message,
      });
      // Not on every search: a build that times out would hold a connection (on PGlite, everyone's session) on each.
      await renewLease(this.db, projectId, CHUNKS, this.leaseMs).catch(() => undefined);
    }
  }

  /**
   * Settles once the builds loads' ends started (of workspace `projectId`, or all) have ended; each
   * logs its own failure. A load or a snapshot of the workspace waits for them before it starts,
   * and tests and the bench before they look.
   */
  async settled(projectId?: string): Promise<void> {
    for (;;) {
      const running = [...this.#builds].filter(([, p]) => projectId === undefined || p === projectId).map(([build]) => build);
      if (running.length === 0) return;
      await Promise.allSettled(running);
    }
  }

  /**
   * Cancels every build, running or to come, and settles once they have ended: the server closing
   * its database waits for nothing longer than a cancel. A build runs under the upgrade timeout (a
   * minute by default; an agent's large table with a high ef_construction takes that long), and a
   * server asked to stop would otherwise hold its connection, or on the embedded store its one
   * session, that long. A cancelled build is a rolled-back transaction (a plain CREATE INDEX, never
   * CONCURRENTLY, so no invalid index is left): the indexes stay deferred, recorded, their lease
   * ended here so that the next ingest or search of the workspace, by any server, builds them.
   */
  async close(): Promise<void> {
    this.#closing.abort();
    await this.settled();
  }

  /**
   * Renews the lease while the load runs; with `owned` names, starts creating those indexes
   * again at its end, after the call that loaded returns (searches stay exact until the build
   * commits), the lease renewed until the build ends.
   */
  #hold(projectId: string, owned: readonly string[]): ChunkLoad {
    const renew = () => renewLease(this.db, projectId, CHUNKS, this.leaseMs).catch((error: unknown) => {
      this.log.warn('could not renew the lease of deferred indexes', { project_id: projectId, error: (error as Error).message });
    });
    const timer = setInterval(() => void renew(), this.leaseMs / 4);
    timer.unref();
    return {
      end: async () => {
        if (owned.length === 0) return clearInterval(timer);
        const build = this.#build(projectId, owned)
          .then(async (stopped) => {
            clearInterval(timer);
            if (stopped) await renewLease(this.db, projectId, CHUNKS, 0).catch(() => undefined);
          })
          .finally(() => {
            clearInterval(timer);
            this.#builds.delete(build);
          });
        this.#builds.set(build, projectId);
      },
    };
  }

  /** Creates again the indexes `owned` deferred for a load; logs, never throws. True: close cancelled it. */
  async #build(projectId: string, owned: readonly string[]): Promise<boolean> {
    try {
      if (this.#closing.signal.aborted) return true;
      const rows = (await deferredIndexes(this.db, projectId, CHUNKS)).filter((r) => owned.includes(r.index_name));
      if (rows.length > 0) await restoreDeferredIndexes(this.sandbox, projectId, rows, { expiredOnly: false, ...this.build, signal: this.#closing.signal });
      return false;
    } catch (error) {
      if (this.#closing.signal.aborted) {
        this.log.info('left the vector indexes of a load deferred: the server is shutting down; the next ingest or search of the workspace builds them', { project_id: projectId, indexes: owned });
        return true;
      }
      this.log.warn('could not create again the vector indexes deferred for a load: the next ingest or search of the workspace retries once their lease runs out', {
        project_id: projectId,
        indexes: owned,
        error: (error as Error).message,
      });
      return false;
    }
  }
}

/**
 * Creates deferred indexes again from their recorded definitions (each checked and rewritten by
 * recreateStatement), as the workspace's role in its sandbox, and deletes their rows in the same
 * transaction, each build under BuildSettings. With `expiredOnly`, only rows whose lease ran out.
 * False when another process took them first (or, with `expiredOnly`, a load still renews them): nothing was done. An invalid
 * definition throws before anything runs.
 */
export async function restoreDeferredIndexes(
  sandbox: Pick<WorkspaceWriter, 'writeAsWorkspace'>,
  projectId: string,
  rows: readonly DeferredIndexRow[],
  { expiredOnly, statementMs, maintenanceWorkMemKb, signal }: { expiredOnly: boolean; signal?: AbortSignal } & BuildSettings,
): Promise<boolean> {
  const schemaName = schemaNameFor(projectId);
  const statements = await Promise.all(
    rows.map(async (r) => ({ sql: await recreateStatement(r.definition, { schemaName, tableName: r.table_name, indexName: r.index_name }), params: [] })),
  );
  try {
    await sandbox.writeAsWorkspace(projectId, statements, claimDeferralGuard(projectId, rows.map((r) => r.index_name), expiredOnly), {
      statementMs,
      signal,
      ...(maintenanceWorkMemKb === undefined ? {} : { maintenanceWorkMemKb }),
    });
    return true;
  } catch (error) {
    if (error instanceof WriteGuardError) return false;
    throw error;
  }
}
