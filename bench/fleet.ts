import type { Database } from '../src/db/database.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { countWorkspaces } from '../src/registry/registry-sql.js';
import { WorkspaceFleet, type UpgradeSummary } from '../src/workspaces/workspace-fleet.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { install } from '../harness/fixtures.js';

/** One migrate-workspaces pass (the command's engine call) with the given plan installed first. */
export async function fleetPass(db: Database, plan: InstallPlan, concurrency: number): Promise<UpgradeSummary & { perSecond: number }> {
  const report = await install(db, plan);
  const manager = new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger);
  const fleet = new WorkspaceFleet(db, plan, manager);
  const started = performance.now();
  const summary = await fleet.upgrade({ concurrency });
  const seconds = (performance.now() - started) / 1000;
  // A no-op pass still covers the whole fleet: throughput is over every workspace checked.
  return { ...summary, perSecond: Math.round(((summary.total || (await countWorkspaces(db))) / seconds) * 10) / 10 };
}
