// The cluster harness is shared with bench/, so it lives in harness/.
import { startPgCluster as startHarnessCluster, startPgvectorCluster as startHarnessPgvectorCluster, type PgCluster } from '../../harness/pg-cluster.js';
import { EMBEDDED_ONLY } from './test-layer.js';

export * from '../../harness/pg-cluster.js';

/** The harness's cluster, except in the embedded layer, which runs no PostgreSQL server by design. */
export function startPgCluster(options?: Parameters<typeof startHarnessCluster>[0]): Promise<PgCluster | null> {
  return EMBEDDED_ONLY ? Promise.resolve(null) : startHarnessCluster(options);
}

/** The harness's cluster with pgvector (or a loud skip), except in the embedded layer. */
export function startPgvectorCluster(what: string): Promise<PgCluster | null> {
  return EMBEDDED_ONLY ? Promise.resolve(null) : startHarnessPgvectorCluster(what);
}
