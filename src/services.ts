import type { Config } from './config.js';
import type { Database } from './db/database.js';
import type { Embedder } from './embeddings/embedder.js';
import type { InstallReport } from './installer/install-extensions.js';
import type { SearchService } from './search/search-service.js';
import type { WorkspaceSandbox } from './sandbox/workspace-sandbox.js';
import type { WorkspaceFleet } from './workspaces/workspace-fleet.js';
import type { WorkspaceManager } from './workspaces/workspace-manager.js';

/*
 * What boot (boot.ts) builds from the configuration and the engine (engine.ts) serves: its own
 * module, so that the engine, which loads boot lazily, and boot itself both depend on it and not
 * on each other.
 */

export type EngineConfig = Pick<Config, 'databaseUrl' | 'dataDir' | 'extensionDirs' | 'disabledExtensions' | 'lockTimeoutMs'> &
  Partial<Pick<Config, 'statementTimeoutMs' | 'maxRowsCap' | 'maxResultBytes' | 'maxCallsPerWorkspace' | 'upgradeTimeoutMs' | 'indexBuildMemoryMb' | 'connectWaitMs' | 'maintenanceIdleMs' | 'embeddings' | 'maxSnapshots' | 'snapshotBudgetBytes' | 'workspacesPerDatabase'>> & {
  /** Pool size on PostgreSQL (default 10); the fleet upgrade needs one per worker. */
  maxConnections?: number;
  /** --allow-root: directories index_directory may read (besides the client's MCP roots). */
  allowedRoots?: readonly string[] | undefined;
};

export interface Ready {
  report: InstallReport;
  /** The database itself (tests and the bench look at it directly). */
  db: Database;
  workspaces: WorkspaceManager;
  fleet: WorkspaceFleet;
  sandbox: WorkspaceSandbox;
  search: SearchService;
  /** The configured embedding provider; undefined with `--embeddings none`. */
  embedder: Embedder | undefined;
}
