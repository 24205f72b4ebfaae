import { afterAll, beforeAll, type TestContext } from 'vitest';
import { pgliteBackend, postgresBackend, type Backend } from './fixtures.js';
import type { PgCluster } from './pg-cluster.js';
import { EMBEDDED_ONLY } from './test-layer.js';

export type BackendKind = 'pglite' | 'postgres';
export const BACKEND_KINDS: readonly BackendKind[] = EMBEDDED_ONLY ? ['pglite'] : ['pglite', 'postgres'];

/**
 * The backend of a `describe` block run once per kind: made before its tests, cleaned up after.
 * Tests call the returned function with their context. Without a PostgreSQL cluster the
 * real-server tests skip; startPgCluster has already failed the run under CI=true, and said so
 * loudly elsewhere.
 */
export function backendPerKind(kind: BackendKind, cluster: () => PgCluster | null): (ctx: TestContext) => Backend {
  let backend: Backend | undefined;
  beforeAll(async () => {
    const running = cluster();
    if (kind === 'pglite') backend = await pgliteBackend();
    else if (running) backend = postgresBackend(running);
  }, 60_000);
  afterAll(async () => backend?.cleanup());
  return (ctx) => {
    if (!backend) ctx.skip();
    return backend as Backend;
  };
}
