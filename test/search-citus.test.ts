import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCitusCluster, sqlOn, type CitusCluster } from '../harness/citus-cluster.js';
import { parseEmbeddingsConfig, type EmbeddingsConfig } from '../src/embeddings/embeddings-config.js';
import { HttpEmbedder } from '../src/embeddings/http-embedder.js';
import { reembed } from '../src/embeddings/reembed.js';
import { ProvisioningEngine } from '../src/engine.js';
import { DEFAULT_LOCK_TIMEOUT_MS } from '../src/config.js';
import { silentLogger } from '../src/logger.js';
import { SearchService } from '../src/search/search-service.js';
import { cosine, startEmbeddingStub, stubEmbedding, type EmbeddingStub } from './support/embedding-stub.js';
import { tempDir } from './support/fixtures.js';
import { callTool, connectInProcess, embeddingsAt } from './support/mcp.js';
import { BUILD_OBSERVER_SQL } from './support/build-observer.js';

/*
 * Search and ingest on Citus: the codebase tables' new columns and indexes are distributed with
 * the workspace's schema (on its worker), and add_documents, index_directory and every search
 * mode work there; so do the pinned space, reembed, and a large load's deferred HNSW index.
 */

const EMBEDDINGS_ENV = { PG_WORKSPACE_EMBEDDINGS: 'openai', PG_WORKSPACE_EMBEDDINGS_MODEL: 'stub-embed', PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '768' };

let citus: CitusCluster | null = null;
let stub: EmbeddingStub;
beforeAll(async () => {
  citus = await startCitusCluster({ workers: 2 });
  stub = await startEmbeddingStub();
}, 180_000);
afterAll(async () => {
  await citus?.destroy();
  await stub?.close();
});

/** How many shard indexes named like `index` a worker holds. */
async function shardIndexes(workerUrl: string, index: string): Promise<number> {
  const client = new pg.Client({ connectionString: workerUrl });
  await client.connect();
  try {
    await client.query('SET citus.override_table_visibility = off');
    const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_indexes WHERE indexname ~ ('^' || $1 || '_[0-9]+$')`, [index]);
    return rows[0]?.n ?? 0;
  } finally {
    await client.end();
  }
}

describe('search and ingest on Citus (coordinator + 2 workers)', () => {
  it('stores documents and a directory in the distributed workspace and finds them in every mode', async (ctx) => {
    if (!citus) ctx.skip();
    const c = citus as CitusCluster;
    const url = await c.createDatabase('search');
    const dir = path.join(await tempDir('pgw-citus-repo-'), 'repo');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'ranker.ts'), 'export function reciprocalRankFusion(a: number[], b: number[]) {\n  return a.concat(b);\n}\n');
    const mcp = await connectInProcess({ databaseUrl: url, roots: [dir], embeddings: embeddingsAt(stub.openaiUrl) });
    try {
      const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
      const added = await run('add_documents', {
        project_id: 'dist',
        documents: [
          { source: 'a.md', text: 'Shards are placed on workers by the coordinator.' },
          { source: 'b.md', text: 'Reference tables are copied to every node.' },
        ],
      });
      expect(added.isError, added.text).toBe(false);
      expect(added.data).toMatchObject({ added: 2, embedded: 2 });
      const indexed = await mcp.client.callTool({ name: 'index_directory', arguments: { project_id: 'dist', path: dir } }, undefined, { onprogress: () => undefined });
      expect(indexed.structuredContent).toMatchObject({ state: 'done', files_changed: 1 });

      for (const mode of ['text', 'vector', 'hybrid']) {
        const found = await run('search', { project_id: 'dist', query: 'which node gets reference tables', mode, k: 1 });
        expect(found.isError, found.text).toBe(false);
        expect((found.data['results'] as Array<{ source: { path: string } }>)[0]?.source.path, mode).toBe('b.md');
      }
      const code = await run('search', { project_id: 'dist', query: 'reciprocalRankFusion', k: 1 });
      expect((code.data['results'] as Array<{ source: unknown }>)[0]?.source).toMatchObject({ path: 'ranker.ts', start_line: 1, end_line: 3, repository: dir });

      // The tables, their generated column and GIN index live on the workspace's worker, colocated.
      const placed = await sqlOn(
        url,
        `SELECT p.logicalrelid::text AS t FROM pg_dist_partition p JOIN pg_dist_schema d ON d.colocationid = p.colocationid
          WHERE d.schemaid = 'project_dist'::regnamespace ORDER BY 1`,
      );
      expect(placed.map((r) => r['t'])).toEqual(expect.arrayContaining(['project_dist.chunks', 'project_dist.files', 'project_dist.repositories']));
      const gin = await Promise.all([0, 1].map((i) => shardIndexes(c.workerUrl(i, url), 'chunks_content_tsv_idx')));
      expect(gin.reduce((a, b) => a + b, 0)).toBe(1);
      const [generated] = await sqlOn(url, `SELECT count(*)::int AS n FROM project_dist.chunks WHERE content_tsv IS NOT NULL`);
      expect(generated?.['n']).toBe(3);
    } finally {
      await mcp.close();
      await rm(path.dirname(dir), { recursive: true, force: true });
    }
  }, 240_000);

  it("defers the HNSW index over a large load there too: gone from the coordinator and the workspace's shard while it loads, back on both after, the registry clean", async (ctx) => {
    if (!citus) ctx.skip();
    const c = citus as CitusCluster;
    const url = await c.createDatabase('deferral');
    const embeddings = embeddingsAt(stub.openaiUrl);
    const engine = new ProvisioningEngine(
      { databaseUrl: url, dataDir: await tempDir('pgw-citus-deferral-'), extensionDirs: [], disabledExtensions: [], lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS, embeddings },
      silentLogger,
    );
    engine.start();
    try {
      const { db, sandbox } = await engine.ready(120_000);
      const indexes = async () => ({
        coordinator: (await sqlOn(url, `SELECT indexdef FROM pg_indexes WHERE schemaname = 'project_dist' AND indexname = 'chunks_embedding_hnsw_idx'`)).map((r) => r['indexdef']),
        shards: (await Promise.all([0, 1].map((i) => shardIndexes(c.workerUrl(i, url), 'chunks_embedding_hnsw_idx')))).reduce((a, b) => a + b, 0),
      });
      // The sandbox, looking at the indexes before a call's first write of chunks: inside the load, after its deferral.
      let during: Awaited<ReturnType<typeof indexes>> | undefined;
      const observed = new Proxy(sandbox, {
        get(target, key) {
          if (key === 'writeAsWorkspace') {
            return async (...args: Parameters<typeof sandbox.writeAsWorkspace>) => {
              // Chunk writes stage their rows; the deferral's drop and build do not.
              if (args[4]) during ??= await indexes();
              return target.writeAsWorkspace(...args);
            };
          }
          const value: unknown = Reflect.get(target, key, target);
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
      // As boot makes it on PostgreSQL: builds at PG_WORKSPACE_INDEX_BUILD_MEMORY_MB (256 MB by default).
      const search = new SearchService(db, observed, new HttpEmbedder(embeddings, silentLogger), [], silentLogger, { indexBuildMemoryKb: 256 * 1024 });
      await search.addDocuments({ projectId: 'dist', documents: [{ source: 'seed.md', text: 'The lighthouse keeper polishes the great lens every evening.' }] });
      const before = await indexes();
      expect(before).toMatchObject({ coordinator: [expect.stringMatching(/USING hnsw \(embedding vector_cosine_ops\)/)], shards: 1 });

      // The test's own observer on each worker (a superuser's event trigger): the setting inside each shard's CREATE INDEX.
      for (const i of [0, 1]) {
        await sqlOn(
          c.workerUrl(i, url),
          `SET citus.enable_ddl_propagation = off; ${BUILD_OBSERVER_SQL}`,
        );
      }
      during = undefined;
      // 100 documents of three chunks each: 300 chunks into a table of one, in two write groups
      // (the second's rows written before its vectors, which an UPDATE of the distributed table then fills).
      const documents = Array.from({ length: 100 }, (_, i) => ({
        source: `doc-${i}.md`,
        text: [0, 1, 2].map((p) => `doc ${i} part ${p}: words of note ${i * 7 + p}, written out at some length.`).join('\n\n'),
      }));
      expect(await search.addDocuments({ projectId: 'dist', documents, chunkSize: 100, chunkOverlap: 0 })).toMatchObject({ added: 300, embedded: 300 });
      expect(await sqlOn(url, 'SELECT count(*)::int AS n, count(embedding)::int AS embedded FROM project_dist.chunks')).toEqual([{ n: 301, embedded: 301 }]);
      expect(during).toEqual({ coordinator: [], shards: 0 });
      // Built once the call has returned.
      await search.settled();
      expect(await indexes()).toEqual(before);
      expect(await sqlOn(url, 'SELECT index_name FROM project_registry.deferred_indexes')).toEqual([]);
      // The shard's index was built on its worker with the memory raised there too (Citus passes on SET LOCAL, not set_config).
      const built = (await Promise.all([0, 1].map((i) => sqlOn(c.workerUrl(i, url), 'SELECT identity, setting FROM observer.builds')))).flat();
      expect(built.filter((b) => /_[0-9]+$/.test(String(b['identity'])))).toEqual([{ identity: expect.stringMatching(/^project_dist\.chunks_embedding_hnsw_idx_[0-9]+$/), setting: '256MB' }]);
      const found = await search.search({ projectId: 'dist', query: 'lighthouse keeper lens', mode: 'vector', k: 1 });
      expect(found.results[0]?.content).toContain('lighthouse keeper');
    } finally {
      await engine.close();
    }
  }, 240_000);

  it('moves the chunks to a new embedding space: one reembed run at a time, and an ingest write of the old space arriving meanwhile refused', async (ctx) => {
    if (!citus) ctx.skip();
    const url = await (citus as CitusCluster).createDatabase('reembed');
    const mcp = await connectInProcess({ databaseUrl: url, embeddings: embeddingsAt(stub.openaiUrl) });
    // A second engine (as the reembed command runs), configured for the new space: "new: " before each document.
    const moving = new ProvisioningEngine(
      { databaseUrl: url, dataDir: await tempDir('pgw-citus-reembed-'), extensionDirs: [], disabledExtensions: [], lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS },
      silentLogger,
    );
    moving.start();
    try {
      const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
      const added = await run('add_documents', { project_id: 'dist', documents: [{ source: 'a.md', text: 'Shards are placed on workers by the coordinator.' }] });
      expect(added.isError, added.text).toBe(false);
      const { db, sandbox: sql } = await moving.ready(120_000);
      const config = parseEmbeddingsConfig({}, { ...EMBEDDINGS_ENV, PG_WORKSPACE_EMBEDDINGS_URL: stub.openaiUrl, PG_WORKSPACE_EMBEDDINGS_DOCUMENT_PREFIX: 'new: ' }) as EmbeddingsConfig;
      const options = { projectId: 'dist', batchRows: 64, maxInputChars: 8000 };

      // The ingest passes the pin's check and waits for its embedding; the move starts meanwhile.
      stub.reset();
      stub.fail({ delayMs: 1500 }, { delayMs: 1000 });
      const writing = run('add_documents', { project_id: 'dist', documents: [{ source: 'b.md', text: 'Reference tables are copied to every node.' }] });
      while (stub.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      const first = reembed(db, sql, new HttpEmbedder(config, silentLogger), options);
      while (stub.requests.length === 1) await new Promise((resolve) => setTimeout(resolve, 10));
      // A second run beside the first leaves the column alone.
      expect(await reembed(db, sql, new HttpEmbedder(config, silentLogger), options)).toMatchObject([{ table: 'chunks', outcome: 'busy' }]);
      expect(await first).toMatchObject([{ table: 'chunks', outcome: 'moved', done: 1, total: 1 }]);
      const refused = await writing;
      expect(refused.isError).toBe(true);
      expect(refused.text).toContain('holds vectors of openai "stub-embed" (768 dimensions, document prefix "new: ")');

      const rows = await sqlOn(url, 'SELECT content, embedding::text AS embedding FROM project_dist.chunks ORDER BY id');
      expect(rows.map((r) => r['content'])).toEqual(['Shards are placed on workers by the coordinator.']);
      expect(cosine(JSON.parse(String(rows[0]?.['embedding'])) as number[], stubEmbedding('new: Shards are placed on workers by the coordinator.', 768))).toBeGreaterThan(0.9999);
    } finally {
      await moving.close();
      await mcp.close();
    }
  }, 240_000);
});
