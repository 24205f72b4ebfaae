import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEmbeddingsConfig, type EmbeddingsConfig } from '../src/embeddings/embeddings-config.js';
import { HttpEmbedder } from '../src/embeddings/http-embedder.js';
import { silentLogger } from '../src/logger.js';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import { SearchService } from '../src/search/search-service.js';
import { BACKEND_KINDS, backendPerKind } from './support/backend-per-kind.js';
import { startEmbeddingStub, type EmbeddingStub } from './support/embedding-stub.js';
import { install, planFor, tempDir } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';

/*
 * index_directory's runs share one budget of file text held in memory (issue 27, red team round
 * 3): each run held a batch, files of up to 64 MiB, and nothing bounded how many runs an agent
 * started (one per subdirectory, or per workspace), so the server ran out of memory for everyone.
 */

let cluster: PgCluster | null = null;
let stub: EmbeddingStub;
beforeAll(async () => {
  [cluster, stub] = await Promise.all([startPgCluster(), startEmbeddingStub()]);
}, 120_000);
afterAll(async () => Promise.all([cluster?.destroy(), stub?.close()]));

const EMBEDDINGS_ENV = {
  PG_WORKSPACE_EMBEDDINGS: 'openai',
  PG_WORKSPACE_EMBEDDINGS_MODEL: 'stub-embed',
  PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '768',
  PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: '64',
  // Room for both runs' requests at once: only the budget keeps them apart.
  PG_WORKSPACE_EMBEDDINGS_CONCURRENCY: '4',
};

for (const kind of BACKEND_KINDS) {
  describe(`index_directory's memory on ${kind}`, () => {
    const available = backendPerKind(kind, () => cluster);

    it('two runs whose files together exceed the budget never hold them at once: the second reads once the first has written', async (ctx) => {
      const db = await available(ctx).fresh();
      const plan = await planFor([]);
      const report = await install(db, plan);
      const { sandbox } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, silentLogger);
      const config = parseEmbeddingsConfig({}, { ...EMBEDDINGS_ENV, PG_WORKSPACE_EMBEDDINGS_URL: stub.openaiUrl }) as EmbeddingsConfig;
      const base = await tempDir('pgw-budget-');
      const dirs = ['one', 'two'].map((name) => path.join(base, name));
      // 40 kB a file, about 27 chunks: one provider request per run.
      const line = (word: string, i: number) => `export const ${word}${i} = '${word} line ${i} of the file, padded to a few dozen bytes';\n`;
      await Promise.all(
        dirs.map(async (dir, d) => {
          await mkdir(dir, { recursive: true });
          await writeFile(path.join(dir, 'big.ts'), Array.from({ length: 480 }, (_, i) => line(d === 0 ? 'first' : 'second', i)).join(''));
        }),
      );
      const search = new SearchService(db, sandbox, new HttpEmbedder(config, silentLogger), [base], silentLogger, { readBudgetBytes: 50_000 });
      stub.reset();
      stub.delayMs = 400;
      const runs = await Promise.all(dirs.map((dir, d) => search.indexDirectory({ projectId: `budget-${d}`, path: dir }, { roots: undefined, elsewhere: false })));
      const done = await Promise.all(runs.map((r) => r.done));
      expect(done).toMatchObject([
        { state: 'done', files_changed: 1 },
        { state: 'done', files_changed: 1 },
      ]);
      expect(stub.requests).toHaveLength(2);
      expect(stub.maxInFlight).toBe(1);
      await search.close();
    }, 120_000);

    it("runs at once are bounded, two a workspace: one workspace's runs wait their turn while another's goes", async (ctx) => {
      const db = await available(ctx).fresh();
      const plan = await planFor([]);
      const report = await install(db, plan);
      const { sandbox } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, silentLogger);
      const config = parseEmbeddingsConfig({}, { ...EMBEDDINGS_ENV, PG_WORKSPACE_EMBEDDINGS_URL: stub.openaiUrl }) as EmbeddingsConfig;
      const base = await tempDir('pgw-runs-');
      const dirs = await Promise.all(
        Array.from({ length: 6 }, async (_, i) => {
          const dir = path.join(base, `dir${i}`);
          await mkdir(dir, { recursive: true });
          await writeFile(path.join(dir, 'note.md'), `note ${i} of the directory\n`);
          return dir;
        }),
      );
      const search = new SearchService(db, sandbox, new HttpEmbedder(config, silentLogger), [base], silentLogger);
      stub.reset();
      stub.delayMs = 300;
      const phases = new Map<string, { projectId: string; phase: string }>();
      let mostOfHog = 0;
      let otherWentWhileHogQueued = false;
      const watch = (status: { job_id: string; project_id: string; phase: string }) => {
        phases.set(status.job_id, { projectId: status.project_id, phase: status.phase });
        const of = (id: string, wanted: (phase: string) => boolean) => [...phases.values()].filter((p) => p.projectId === id && wanted(p.phase)).length;
        mostOfHog = Math.max(mostOfHog, of('hog', (p) => p !== 'queued' && p !== 'finished'));
        if (status.project_id === 'other' && status.phase === 'walking' && of('hog', (p) => p === 'queued') > 0) otherWentWhileHogQueued = true;
      };
      const start = async (projectId: string, dir: string) => {
        const run = await search.indexDirectory({ projectId, path: dir }, { roots: undefined, elsewhere: false }, watch);
        // A run waiting its turn has reported nothing yet.
        if (!phases.has(run.status.job_id)) watch(run.status);
        return run;
      };
      const hog = [];
      // One workspace starts five runs (one per directory), then another workspace one.
      for (const dir of dirs.slice(0, 5)) hog.push(await start('hog', dir));
      const other = await start('other', dirs[5] as string);
      const done = await Promise.all([...hog, other].map((r) => r.done));
      expect(done.every((d) => d.state === 'done')).toBe(true);
      expect(mostOfHog).toBe(2);
      expect(otherWentWhileHogQueued).toBe(true);
      await search.close();
    }, 120_000);
  });
}
