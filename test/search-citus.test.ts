import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCitusCluster, sqlOn, type CitusCluster } from '../harness/citus-cluster.js';
import { startEmbeddingStub, type EmbeddingStub } from './support/embedding-stub.js';
import { tempDir } from './support/fixtures.js';
import { callTool, connectInProcess, embeddingsAt } from './support/mcp.js';

/*
 * Search and ingest on Citus: the codebase tables' new columns and indexes are distributed with
 * the workspace's schema (on its worker), and add_documents, index_directory and every search
 * mode work there.
 */

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
});
