import type { Database } from '../src/db/database.js';
import { silentLogger } from '../src/logger.js';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { install } from '../harness/fixtures.js';
import { sampleInterleaved, type Distribution } from './stats.js';

/**
 * Scenario 15: what claiming the session costs a call that runs agent code (session-claims.ts).
 * On one database: a one-statement pipeline claimed for a workspace (again, or for the other of
 * two in turn) against the same pipeline unclaimed (the server's own), and, for scale, the
 * `query` tool's call in process, which claims.
 * On the embedded store also a `query` passing from a workspace that leaves a custom setting to
 * another, which replaces the session first (the worst case: every pass pays it), against passes
 * between two workspaces that leave none.
 */
export async function sessionClaims(
  db: Database,
  plan: InstallPlan,
  iterations: number,
  embedded: boolean,
): Promise<Record<string, Distribution>> {
  const report = await install(db, plan);
  const { sandbox, workspaces } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, silentLogger);
  for (const id of ['bench-claim-a', 'bench-claim-b']) await workspaces.ensure(id);
  const steps = [{ sql: 'SELECT 1' }];
  const figures: Record<string, Distribution> = await sampleInterleaved(iterations, {
    claimed: () => db.pipeline(steps, 'bench-claim-a'),
    // Each claimed for the other workspace than the last: on the embedded store the claim then reads the session's GUC memory.
    claimedTurns: (i) => db.pipeline(steps, i % 2 === 0 ? 'bench-claim-a' : 'bench-claim-b'),
    unclaimed: () => db.pipeline(steps),
    query: () => sandbox.query('bench-claim-a', 'SELECT 1 AS one', []),
  });
  if (!embedded) return figures;
  const pass = (leave: boolean) => async () => {
    await sandbox.query('bench-claim-a', leave ? "SELECT set_config('bench.mark', '1', false)" : 'SELECT 1', []);
    await sandbox.query('bench-claim-b', 'SELECT 1', []);
  };
  // Fewer: each marked pass restarts the engine (0.2-0.7 s).
  return { ...figures, ...(await sampleInterleaved(Math.min(iterations, 10), { passClean: pass(false), passMarked: pass(true) }, 1)) };
}
