import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labelledSet } from './support/labelled-set.js';
import { startEmbeddingStub, type EmbeddingStub } from './support/embedding-stub.js';
import { rm } from 'node:fs/promises';
import { parseEmbeddingsConfig, type EmbeddingsConfig } from '../src/embeddings/embeddings-config.js';
import { tempDir } from './support/fixtures.js';
import { callTool, connectInProcess, embeddingsAt } from './support/mcp.js';

/*
 * Recall@5 of each search mode on a labelled set (60 documents, 30 questions with one known
 * answer each), in the default set-up (embedded store) with an embedding provider: the loopback
 * stub. Hybrid must not be worse than the better of text and vector. The figures go to stderr
 * and into docs/search.md.
 */

const K = 5;

describe('search recall on a labelled set', () => {
  let stub: EmbeddingStub;
  let mcp: Awaited<ReturnType<typeof connectInProcess>>;
  let tools: Tool[];
  const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, tools, name, args);
  const { documents, queries } = labelledSet();

  let dataDir: string;
  beforeAll(async () => {
    stub = await startEmbeddingStub();
    dataDir = await tempDir('pgw-recall-');
    mcp = await connectInProcess({ dataDir, embeddings: embeddingsAt(stub.openaiUrl) });
    tools = mcp.tools;
  }, 120_000);
  afterAll(async () => {
    await mcp?.close();
    await stub?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('adds the set once: each chunk embedded once, and adding it again embeds nothing', async () => {
    const added = await run('add_documents', { project_id: 'recall', documents });
    expect(added.isError, added.text).toBe(false);
    expect(added.data).toMatchObject({ added: documents.length, skipped: 0, embedded: documents.length, embedding_model: 'stub-embed' });
    expect(stub.inputs).toBe(documents.length);
    const requests = stub.requests.length;
    const again = await run('add_documents', { project_id: 'recall', documents });
    expect(again.data).toMatchObject({ added: 0, skipped: documents.length, embedded: 0 });
    expect(stub.requests.length).toBe(requests);
  });

  it('hybrid recalls at least as well as the better of text and vector', async () => {
    const recall = async (mode: string, language?: string) => {
      let hits = 0;
      const misses: string[] = [];
      for (const q of queries) {
        const result = await run('search', { project_id: 'recall', query: q.query, k: K, mode, ...(language ? { language } : {}) });
        expect(result.isError, result.text).toBe(false);
        expect(result.data['mode']).toBe(mode);
        const sources = (result.data['results'] as Array<{ source: { path: string } }>).map((r) => r.source.path);
        if (sources.includes(q.answer)) hits++;
        else misses.push(`${q.style}: ${q.query}`);
      }
      return { recall: hits / queries.length, misses };
    };
    // The default configuration (chunks are indexed with 'english'), and 'simple' for comparison.
    const text = await recall('text');
    const vector = await recall('vector');
    const hybrid = await recall('hybrid');
    const simpleText = await recall('text', 'simple');
    const simpleHybrid = await recall('hybrid', 'simple');
    const figure = (r: { recall: number }) => r.recall.toFixed(2);
    process.stderr.write(
      `\nrecall@${K} on ${documents.length} documents, ${queries.length} queries: text ${figure(text)}, vector ${figure(vector)}, hybrid ${figure(hybrid)}; ` +
        `with 'simple': text ${figure(simpleText)}, hybrid ${figure(simpleHybrid)}\n` +
        `  text misses: ${text.misses.join(' | ')}\n  vector misses: ${vector.misses.join(' | ')}\n  hybrid misses: ${hybrid.misses.join(' | ')}\n`,
    );
    expect(hybrid.recall).toBeGreaterThanOrEqual(Math.max(text.recall, vector.recall));
  }, 120_000);

  it('a hybrid result says where it came from and how each ranking placed it', async () => {
    const q = queries[0];
    const result = await run('search', { project_id: 'recall', query: q?.query, k: 3 });
    expect(result.data).toMatchObject({ mode: 'hybrid', table: 'chunks' });
    expect(result.data['note']).toBeUndefined();
    const [best] = result.data['results'] as Array<Record<string, unknown>>;
    expect(best).toMatchObject({ source: { path: q?.answer, start_line: 1, end_line: 3, repository: 'documents:' } });
    // Found by both rankings; the score is half the text score's share of its maximum plus half the cosine similarity.
    expect(best?.['text_rank']).toEqual(expect.any(Number));
    expect(best?.['vector_rank']).toEqual(expect.any(Number));
    expect(best?.['score']).toBeGreaterThan(0.5 * (1 - (best?.['distance'] as number)));
    expect(best?.['score']).toBeLessThanOrEqual(0.5 + 0.5 * (1 - (best?.['distance'] as number)) + 1e-9);
    const scores = (result.data['results'] as Array<{ score: number }>).map((r) => r.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
  });

  it('a server embedding with another model is refused on the pinned chunks, naming both spaces; text search still works', async () => {
    await mcp.close();
    const other = parseEmbeddingsConfig(
      {},
      { PG_WORKSPACE_EMBEDDINGS: 'openai', PG_WORKSPACE_EMBEDDINGS_URL: stub.openaiUrl, PG_WORKSPACE_EMBEDDINGS_MODEL: 'other-model', PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '768' },
    ) as EmbeddingsConfig;
    mcp = await connectInProcess({ dataDir, embeddings: other });
    tools = mcp.tools;
    const requests = stub.requests.length;
    const added = await run('add_documents', { project_id: 'recall', documents: [{ source: 'new.md', text: 'a new note' }] });
    expect(added.isError).toBe(true);
    expect(added.text).toMatch(/holds vectors of openai "stub-embed".*embeds with openai "other-model".*reembed/);
    const hybrid = await run('search', { project_id: 'recall', query: queries[0]?.query });
    expect(hybrid.isError).toBe(true);
    expect(hybrid.text).toMatch(/holds vectors of openai "stub-embed"/);
    expect(stub.requests.length).toBe(requests);
    const text = await run('search', { project_id: 'recall', query: queries[0]?.query, mode: 'text', k: K });
    expect((text.data['results'] as Array<{ source: { path: string } }>).map((r) => r.source.path)).toContain(queries[0]?.answer);
  });
});
