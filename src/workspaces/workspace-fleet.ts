import type { Database, Queryable } from '../db/database.js';
import type { InstallPlan } from '../installer/install-plan.js';
import { appliedMigrationsOf, fleetCounts, laggingWorkspaces, workspaceWithLedger } from '../registry/registry-sql.js';
import type { WorkspaceSandbox } from '../sandbox/workspace-sandbox.js';
import type { WorkspaceManager } from './workspace-manager.js';

export interface WorkspaceStatus {
  projectId: string;
  schemaName: string;
  /** The workspace holds exactly the current workspace DDL and migrations. */
  upToDate: boolean;
  applied: string[];
  pending: string[];
}

export interface FleetStatus {
  workspaces: number;
  upToDate: number;
  lagging: number;
  /** Each pending workspace migration (`extension/name`) and how many workspaces lack it. */
  pending: { migration: string; workspaces: number }[];
}

export interface UpgradeProgress {
  total: number;
  done: number;
  upgraded: number;
  skipped: number;
  failed: number;
}

export interface UpgradeOptions {
  concurrency: number;
  dryRun?: boolean;
  signal?: AbortSignal;
  onProgress?: (progress: UpgradeProgress) => void;
}

export interface UpgradeSummary extends UpgradeProgress {
  /** Dry run: what would run where. */
  plan: { projectId: string; pending: string[] }[];
  failures: { projectId: string; error: string }[];
  /** Workspaces given their SQL sandbox (role and function), or why none could be. */
  sandboxes: { adopted: number; problem: string | undefined };
  interrupted: boolean;
  ms: number;
}

/**
 * Which workspaces lag behind the current workspace DDL and migrations: what workspace_status
 * and doctor report, on any Queryable (doctor reads in its own read-only transaction). Lagging
 * is one indexed query on the registry's fingerprint column (registry-sql.ts).
 */
export class FleetStatusReader {
  constructor(
    private readonly db: Queryable,
    private readonly plan: InstallPlan,
  ) {}

  async lagging(): Promise<string[]> {
    return laggingWorkspaces(this.db, this.plan.workspaceFingerprint);
  }

  /** Migrations each workspace lacks, for a dry run or a status report. */
  async pendingFor(projectIds: readonly string[]): Promise<Map<string, string[]>> {
    const applied = await appliedMigrationsOf(this.db, projectIds);
    const all = this.#allMigrations();
    return new Map(projectIds.map((id) => [id, all.filter((m) => !applied.get(id)?.has(m))]));
  }

  async status(projectId: string): Promise<WorkspaceStatus | undefined> {
    const row = await workspaceWithLedger(this.db, projectId);
    if (!row) return undefined;
    return {
      projectId,
      schemaName: row.schema_name,
      upToDate: row.workspace_fingerprint === this.plan.workspaceFingerprint,
      applied: row.applied,
      pending: this.#allMigrations().filter((m) => !row.applied.includes(m)),
    };
  }

  async fleetStatus(): Promise<FleetStatus> {
    const { total, current, applied } = await fleetCounts(this.db, this.plan.workspaceFingerprint);
    return {
      workspaces: total,
      upToDate: current,
      lagging: total - current,
      pending: this.#allMigrations()
        .map((migration) => ({ migration, workspaces: total - (applied.get(migration) ?? 0) }))
        .filter((p) => p.workspaces > 0),
    };
  }

  #allMigrations(): string[] {
    return this.plan.extensions.flatMap((p) => p.workspace.migrations.map((m) => `${p.extension.id}/${m.migration.name}`));
  }
}

/** fleetStatus() of several databases (databases/member-databases.ts), added up. */
export function addFleetStatuses(all: readonly FleetStatus[]): FleetStatus {
  const pending = new Map<string, number>();
  for (const s of all) for (const p of s.pending) pending.set(p.migration, (pending.get(p.migration) ?? 0) + p.workspaces);
  return {
    workspaces: all.reduce((n, s) => n + s.workspaces, 0),
    upToDate: all.reduce((n, s) => n + s.upToDate, 0),
    lagging: all.reduce((n, s) => n + s.lagging, 0),
    pending: [...pending].map(([migration, workspaces]) => ({ migration, workspaces })),
  };
}

/** The workspaces as a fleet: their status, and bringing them all up to date. */
export class WorkspaceFleet extends FleetStatusReader {
  constructor(
    db: Database,
    plan: InstallPlan,
    private readonly manager: WorkspaceManager,
    private readonly sql?: WorkspaceSandbox,
  ) {
    super(db, plan);
  }

  /**
   * Upgrades every lagging workspace, `concurrency` at a time, each in its own transaction: a
   * rerun after a crash or an interrupt simply finds fewer lagging workspaces, and one failing
   * workspace is reported without stopping the others.
   */
  async upgrade(options: UpgradeOptions): Promise<UpgradeSummary> {
    const started = performance.now();
    const ids = await this.lagging();
    const summary: UpgradeSummary = { total: ids.length, done: 0, upgraded: 0, skipped: 0, failed: 0, plan: [], failures: [], sandboxes: { adopted: 0, problem: undefined }, interrupted: false, ms: 0 };
    if (options.dryRun) {
      const pending = await this.pendingFor(ids);
      summary.plan = ids.map((projectId) => ({ projectId, pending: pending.get(projectId) ?? [] }));
      summary.ms = performance.now() - started;
      return summary;
    }
    let next = 0;
    const worker = async () => {
      while (next < ids.length && !options.signal?.aborted) {
        const projectId = ids[next++] as string;
        try {
          const result = await this.manager.upgrade(projectId);
          if (result.outcome === 'upgraded') summary.upgraded++;
          else summary.skipped++;
        } catch (error) {
          summary.failed++;
          summary.failures.push({ projectId, error: error instanceof Error ? error.message : String(error) });
        }
        summary.done++;
        options.onProgress?.({ ...summary });
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker));
    summary.interrupted = summary.done < ids.length;
    // Every workspace gets its principal (role, sandbox) here too, used by an agent or not.
    if (!summary.interrupted && this.sql) summary.sandboxes = await this.sql.adoptAll();
    summary.ms = performance.now() - started;
    return summary;
  }
}
