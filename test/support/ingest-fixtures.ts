import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import type { InstallPlan } from '../../src/installer/install-plan.js';
import type { SearchService } from '../../src/search/search-service.js';
import { startEmbeddingStub, type EmbeddingStub } from './embedding-stub.js';
import { planFor } from './fixtures.js';
import { startPgCluster, type PgCluster } from './pg-cluster.js';

/** What an ingest test file shares: a throwaway cluster (null without PostgreSQL binaries), the loopback stub, the install plan. */
export interface IngestFixtures {
  cluster: PgCluster | null;
  stub: EmbeddingStub;
  plan: InstallPlan;
  /**
   * `search`, closed after the test that made it: a load's index build runs on after its call, and
   * a test failing meanwhile left it running, so the file's database close waited for it (90 s).
   * Closed, its builds are cancelled (IndexDeferral.close).
   */
  closedAfterTest(search: SearchService): SearchService;
}

/** Starts the file's fixtures before its tests, resets the stub before each, and stops them after. */
export function ingestFixtures(): IngestFixtures {
  const services: SearchService[] = [];
  const fixtures = {
    closedAfterTest: (search: SearchService) => {
      services.push(search);
      return search;
    },
  } as IngestFixtures;
  beforeAll(async () => {
    [fixtures.cluster, fixtures.stub, fixtures.plan] = await Promise.all([startPgCluster(), startEmbeddingStub(), planFor([])]);
  }, 120_000);
  afterAll(async () => Promise.all([fixtures.cluster?.destroy(), fixtures.stub?.close()]));
  beforeEach(() => fixtures.stub.reset());
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.close()));
  });
  return fixtures;
}
