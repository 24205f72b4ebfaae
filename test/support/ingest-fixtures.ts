import { afterAll, beforeAll, beforeEach } from 'vitest';
import type { InstallPlan } from '../../src/installer/install-plan.js';
import { startEmbeddingStub, type EmbeddingStub } from './embedding-stub.js';
import { planFor } from './fixtures.js';
import { startPgCluster, type PgCluster } from './pg-cluster.js';

/** What an ingest test file shares: a throwaway cluster (null without PostgreSQL binaries), the loopback stub, the install plan. */
export interface IngestFixtures {
  cluster: PgCluster | null;
  stub: EmbeddingStub;
  plan: InstallPlan;
}

/** Starts the file's fixtures before its tests, resets the stub before each, and stops them after. */
export function ingestFixtures(): IngestFixtures {
  const fixtures = {} as IngestFixtures;
  beforeAll(async () => {
    [fixtures.cluster, fixtures.stub, fixtures.plan] = await Promise.all([startPgCluster(), startEmbeddingStub(), planFor([])]);
  }, 120_000);
  afterAll(async () => Promise.all([fixtures.cluster?.destroy(), fixtures.stub?.close()]));
  beforeEach(() => fixtures.stub.reset());
  return fixtures;
}
