import type { Database } from '../src/db/database.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { managerFor } from './provisioning.js';
import { sampleInterleaved, type Distribution } from './stats.js';

/**
 * Scenario 13: ensure on an existing workspace this process has cached, in process (no MCP): the
 * hit reads the registry generation (one row) so that a drop committed by another process is
 * seen. Against the floor of any query (SELECT 1) and an uncached lookup (a manager that has
 * not seen the id: the registry probe the cache saves).
 */
export async function cacheHitInProcess(
  db: Database,
  plan: InstallPlan,
  iterations: number,
): Promise<{ hit: Distribution; lookup: Distribution; trip: Distribution }> {
  const manager = await managerFor(db, plan);
  await manager.ensure('bench-cached');
  // The search path only matters to provisioning, which a lookup of a current workspace never reaches.
  const lookup = () => new WorkspaceManager(db, plan, [], silentLogger).ensure('bench-cached');
  return sampleInterleaved(iterations, { hit: () => manager.ensure('bench-cached'), lookup, trip: () => db.query('SELECT 1') }, 20);
}
