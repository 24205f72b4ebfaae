import { DEFAULT_INDEX_BUILD_MEMORY_MB } from './config.js';
import type { Database } from './db/database.js';
import type { ConnectionShare } from './db/postgres/connection-share.js';
import type { EngineConfig, Ready } from './services.js';
import { createEmbedder } from './embeddings/http-embedder.js';
import { loadExtensions } from './extensions/load-extensions.js';
import { installExtensions } from './installer/install-extensions.js';
import { prepareInstallPlan, type InstallPlan } from './installer/install-plan.js';
import type { Logger } from './logger.js';
import { builtinExtensionDirs } from './extensions/builtin-extensions.js';
import { DEFAULT_SQL_LIMITS } from './sandbox/workspace-sandbox.js';
import { sandboxedWorkspaces } from './sandboxed-workspaces.js';
import { WorkspaceFleet } from './workspaces/workspace-fleet.js';
import { DEFAULT_SNAPSHOT_LIMITS, type SnapshotLimits } from './workspaces/workspace-snapshots.js';
import { readInstallState } from './registry/registry-sql.js';
import { SearchService } from './search/search-service.js';
import { MemberDatabases } from './databases/member-databases.js';
import { checkCanSpread, MemberDatabaseError, memberDatabases as listMemberDatabases, memberUrl } from './databases/placements.js';

/*
 * Everything boot needs that is heavy to load (the SQL parser, PGlite, pg) is reached from this
 * module only, which the engine imports lazily: the MCP server answers `initialize` without
 * waiting for it.
 */

/** Extensions are files: they are read and parsed once, whatever happens to the database. */
export function planInstall(config: EngineConfig): Promise<InstallPlan> {
  return loadExtensions([...builtinExtensionDirs, ...config.extensionDirs], config.disabledExtensions).then(prepareInstallPlan);
}

export async function openDatabase(config: EngineConfig, log: Logger, share?: ConnectionShare): Promise<Database> {
  if (!config.databaseUrl) {
    const { SharedStore } = await import('./db/embedded/shared-store.js');
    return SharedStore.open(config.dataDir, log, {
      ...(config.maintenanceIdleMs ? { maintenanceIdleMs: config.maintenanceIdleMs } : {}),
      // Server work that runs agent code (index expressions), bounded as upgrades are.
      ...(config.upgradeTimeoutMs ? { maintenanceTimeoutMs: config.upgradeTimeoutMs } : {}),
    });
  }
  const { PostgresDatabase } = await import('./db/postgres/postgres-database.js');
  return new PostgresDatabase({
    connectionString: config.databaseUrl,
    ...(config.maxConnections ? { maxConnections: config.maxConnections } : {}),
    ...(config.connectWaitMs !== undefined ? { connectWaitMs: config.connectWaitMs } : {}),
    sharedSlots: true,
    ...(share ? { share } : {}),
  });
}

/** Installs the extension schemas and builds the services that run on the result. */
export async function installAndServe(db: Database, plan: InstallPlan, config: EngineConfig, log: Logger): Promise<Ready> {
  const report = await installExtensions(db, plan, { lockTimeoutMs: config.lockTimeoutMs, log });
  if (plan.pgExtensions.has('vector')) await db.registerVectorTypes();
  log.info(report.outcome === 'up-to-date' ? 'database schema up to date' : 'extension schemas installed', {
    database: db.description,
    ms: report.ms,
    extensions: report.extensions,
    ...(report.citus ? { citus: report.citus } : {}),
  });
  const { workspaces, sandbox } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, log, {
    citus: report.citus !== null,
    ...(config.upgradeTimeoutMs ? { upgradeTimeoutMs: config.upgradeTimeoutMs } : {}),
    snapshotLimits: snapshotLimits(config),
    limits: {
      statementTimeoutMs: config.statementTimeoutMs ?? DEFAULT_SQL_LIMITS.statementTimeoutMs,
      maxRowsCap: config.maxRowsCap ?? DEFAULT_SQL_LIMITS.maxRowsCap,
      maxResultBytes: config.maxResultBytes ?? DEFAULT_SQL_LIMITS.maxResultBytes,
      maxCallsPerWorkspace: config.maxCallsPerWorkspace ?? DEFAULT_SQL_LIMITS.maxCallsPerWorkspace,
    },
  });
  const embedder = createEmbedder(config.embeddings, log);
  if (embedder) log.info('embedding provider configured', { provider: embedder.space.provider, model: embedder.space.model, dimensions: embedder.space.dimensions });
  const search = new SearchService(db, sandbox, embedder, config.allowedRoots ?? [], log, {
    ...(config.upgradeTimeoutMs ? { rebuildTimeoutMs: config.upgradeTimeoutMs } : {}),
    // Not on the embedded store: PGlite's WebAssembly heap is bounded, and every workspace shares it.
    ...(config.databaseUrl ? { indexBuildMemoryKb: (config.indexBuildMemoryMb ?? DEFAULT_INDEX_BUILD_MEMORY_MB) * 1024 } : {}),
  });
  return { report, db, workspaces, fleet: new WorkspaceFleet(db, plan, workspaces, sandbox), sandbox, embedder, search };
}

/**
 * On PostgreSQL, the member databases workspaces are spread over (databases/member-databases.ts):
 * with --workspaces-per-database, or while the home database has placements from a run with it.
 * Refused on Citus, which spreads workspaces over its nodes instead, and without CREATEDB.
 */
export async function memberDatabases(home: Ready, plan: InstallPlan, config: EngineConfig, log: Logger, share: ConnectionShare): Promise<MemberDatabases | undefined> {
  const { databaseUrl, workspacesPerDatabase } = config;
  if (!databaseUrl) return undefined;
  if (workspacesPerDatabase !== undefined) {
    if (home.report.citus) {
      throw new MemberDatabaseError(
        '--workspaces-per-database is for a single PostgreSQL server: on Citus, workspaces are spread over its worker nodes ' +
          '(docs/citus.md). Leave --workspaces-per-database (PG_WORKSPACE_WORKSPACES_PER_DATABASE) out.',
      );
    }
    memberUrl(databaseUrl, 'check'); // a DATABASE_URL that cannot name a member database fails the boot, saying why
    await checkCanSpread(home.db);
  } else if (home.report.citus || (await listMemberDatabases(home.db)).length === 0) {
    return undefined;
  }
  const { PostgresDatabase } = await import('./db/postgres/postgres-database.js');
  return new MemberDatabases(home, workspacesPerDatabase, async (database) => {
    const db = new PostgresDatabase({
      connectionString: memberUrl(databaseUrl, database),
      ...(config.maxConnections ? { maxConnections: config.maxConnections } : {}),
      ...(config.connectWaitMs !== undefined ? { connectWaitMs: config.connectWaitMs } : {}),
      sharedSlots: true,
      warmForMs: MEMBER_WARM_MS,
      share,
    });
    try {
      return await installAndServe(db, plan, config, log);
    } catch (error) {
      await db.close();
      throw error;
    }
  });
}

/**
 * A member database's pool keeps its warm connection this long after its last call: a server
 * spread over a hundred databases would otherwise keep one open in each it ever served.
 */
const MEMBER_WARM_MS = 60_000;

/** The per-workspace snapshot limits a configuration sets (docs/snapshots.md). */
export function snapshotLimits(config: Partial<Pick<EngineConfig, 'maxSnapshots' | 'snapshotBudgetBytes'>>): SnapshotLimits {
  return {
    maxSnapshots: config.maxSnapshots ?? DEFAULT_SNAPSHOT_LIMITS.maxSnapshots,
    budgetBytes: config.snapshotBudgetBytes ?? DEFAULT_SNAPSHOT_LIMITS.budgetBytes,
  };
}

/** The database holds no install of this server any more (its registry dropped, or restored from before it). */
export async function installGone(db: Database): Promise<boolean> {
  return (await readInstallState(db)) === undefined;
}
