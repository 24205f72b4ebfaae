import type { Database } from './db/database.js';
import type { InstallPlan } from './installer/install-plan.js';
import type { Logger } from './logger.js';
import { DEFAULT_SQL_LIMITS, WorkspaceSandbox, type SqlLimits, type WorkspaceProvisioner } from './sandbox/workspace-sandbox.js';
import { WorkspaceManager, type WorkspaceManagerOptions } from './workspaces/workspace-manager.js';

/**
 * The workspace engine and the SQL sandbox, built as a pair: the manager runs agent-touched
 * upgrades, vector searches and snapshot copies in the sandbox, and the sandbox creates a
 * workspace before its first call. Each gets the other through its constructor; the sandbox
 * holds only the narrow WorkspaceProvisioner view, which reaches the manager when first called.
 */
export function sandboxedWorkspaces(
  db: Database,
  plan: InstallPlan,
  searchPathSchemas: readonly string[],
  log: Logger,
  options: Omit<WorkspaceManagerOptions, 'sandbox'> & { limits?: SqlLimits } = {},
): { workspaces: WorkspaceManager; sandbox: WorkspaceSandbox } {
  const { limits = DEFAULT_SQL_LIMITS, ...managerOptions } = options;
  const provisioner: WorkspaceProvisioner = { citus: managerOptions.citus ?? false, ensure: (projectId) => workspaces.ensure(projectId) };
  const sandbox = new WorkspaceSandbox(db, provisioner, searchPathSchemas, limits, log);
  const workspaces: WorkspaceManager = new WorkspaceManager(db, plan, searchPathSchemas, log, { ...managerOptions, sandbox });
  return { workspaces, sandbox };
}
