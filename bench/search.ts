/**
 * `npm run bench:search`: search and ingest (issue 23), each figure a ratio taken in one run,
 * against a throwaway PostgreSQL cluster and the loopback stub provider:
 * The stub runs in a child process (both its floor and the ingest samples talk to it over loopback).
 * 1. ingest throughput: add_documents of BENCH_INGEST_DOCS documents through the engine, taking
 *    turns with the stub's own floor, the same texts sent directly by the same HttpEmbedder (same
 *    batch size and concurrency), and with ingest into a workspace whose HNSW index was dropped
 *    (the index's upkeep is most of a write: a load this large into an empty table defers the
 *    index and builds it again once the call has returned: the build is waited for after each
 *    sample, untimed, so it never overlaps the next, and timed on its own); with the stub answering at once, and after
 *    each of BENCH_STUB_DELAYS_MS per request (a provider's own time: 50 and 200 by default, a
 *    fast local model and about the fastest hosted one); and the writes alone, the same
 *    add_documents with a provider answering from vectors computed beforehand, in process (no
 *    HTTP, no stub): what ingest costs whatever the provider, so floor/writes bounds the ratio;
 *    and the CPU time each floor and ingest sample took in this process, PostgreSQL's and the
 *    stub's: spread over every core at once, ingest's bounds the ratio this machine allows;
 *    and the same ingest on the embedded store (PGlite, the default setup) against the same floor;
 * 2. search latency on BENCH_SEARCH_CHUNKS chunks (default 100000): hybrid and text against
 *    vector-only, taking turns;
 * 3. HNSW recall@10 (ef_search 40, pgvector's default, and 100) against exact search.
 * Writes bench/results/search.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseEmbeddingsConfig, type EmbeddingsConfig } from '../src/embeddings/embeddings-config.js';
import { HttpEmbedder } from '../src/embeddings/http-embedder.js';
import type { Embedder } from '../src/embeddings/embedder.js';
import { ProvisioningEngine } from '../src/engine.js';
import { silentLogger } from '../src/logger.js';
import { chunkText } from '../src/search/chunking.js';
import { SearchService } from '../src/search/search-service.js';
import { startPgCluster } from '../harness/pg-cluster.js';
import { tempDir } from '../harness/temp-dirs.js';
import { stubEmbedding } from '../harness/embedding-stub.js';
import { startEmbeddingStubProcess } from '../harness/embedding-stub-process.js';
import { clusterCpu, type CpuSnapshot } from './server-cpu.js';
import { distribution, ratio, sampleInterleaved } from './stats.js';
import { seededRandom } from '../harness/seeded-random.js';

const INGEST_DOCS = Number(process.env['BENCH_INGEST_DOCS'] ?? 200);
const CHUNKS = Number(process.env['BENCH_SEARCH_CHUNKS'] ?? 100_000);
const ITERATIONS = Number(process.env['BENCH_ITERATIONS'] ?? 30);
const STUB_DELAYS_MS = (process.env['BENCH_STUB_DELAYS_MS'] ?? '50,200').split(',').map(Number);
/** Timed ingest samples per contender (each into a workspace of its own), after one warm-up. */
const INGEST_SAMPLES = Number(process.env['BENCH_INGEST_SAMPLES'] ?? 3);
const RECALL_QUERIES = 50;
const log = (message: string) => process.stderr.write(`[bench:search] ${message}\n`);
const CORES = availableParallelism();

/** CPU time (ms) one sample took in this process (the engine and the floor's client), PostgreSQL's processes, and the stub's. */
interface CpuSpent {
  server: number;
  postgres: number;
  stub: number;
}
const cpuMedians = (samples: readonly CpuSpent[]) => {
  const p50 = (pick: (c: CpuSpent) => number) => Math.round(distribution(samples.map(pick)).p50);
  return { server: p50((c) => c.server), postgres: p50((c) => c.postgres), stub: p50((c) => c.stub), total: p50((c) => c.server + c.postgres + c.stub) };
};

const next = seededRandom(42);
/** 2000 made-up words, so texts share some and differ in most, as prose does. */
const VOCABULARY = Array.from({ length: 2000 }, (_, i) => {
  const syllables = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'ze', 'pa', 'qui', 'dor'];
  let word = '';
  for (let n = i + 1, k = 0; n > 0 || k < 2; n = Math.floor(n / syllables.length), k++) word += syllables[n % syllables.length];
  return word;
});
const sentence = (words: number) => Array.from({ length: words }, () => VOCABULARY[Math.floor(next() ** 2 * VOCABULARY.length)]).join(' ');

const cluster = await startPgCluster();
if (!cluster) throw new Error('The benchmark needs PostgreSQL binaries (see docs/development.md).');
// In a process of its own, as a real provider is: on this thread the engine's work would delay the
// stub's answers in the ingest samples and not in the floor's.
const stub = await startEmbeddingStubProcess();
const url = await cluster.createDatabase('search');
const admin = new pg.Client({ connectionString: url });
await admin.connect();
await admin.query('CREATE EXTENSION IF NOT EXISTS vector');
const embeddings = parseEmbeddingsConfig(
  {},
  { PG_WORKSPACE_EMBEDDINGS: 'openai', PG_WORKSPACE_EMBEDDINGS_URL: stub.openaiUrl, PG_WORKSPACE_EMBEDDINGS_MODEL: 'stub-embed', PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '768' },
) as EmbeddingsConfig;
const engine = new ProvisioningEngine(
  { databaseUrl: url, dataDir: await tempDir('pgw-bench-search-'), extensionDirs: [], disabledExtensions: [], lockTimeoutMs: 60_000, embeddings },
  silentLogger,
);
engine.start();
const { search, db, sandbox } = await engine.ready(120_000);
// Linux's /proc: without it the bound below is NaN, said as such.
const pgCpu = await clusterCpu(db, { countEnded: true });
async function cpuMark(): Promise<{ server: number; stub: number; postgres: CpuSnapshot }> {
  const postgres = pgCpu?.now() ?? new Map<number, number>();
  const stubMs = await stub.cpuMs();
  const { user, system } = process.cpuUsage();
  return { server: (user + system) / 1000, stub: stubMs, postgres };
}
const results: Record<string, unknown> = { sizes: { ingestDocs: INGEST_DOCS, chunks: CHUNKS, iterations: ITERATIONS, stubDelaysMs: STUB_DELAYS_MS, ingestSamples: INGEST_SAMPLES } };

try {
  // 1. Ingest throughput against the stub's floor.
  const documents = Array.from({ length: INGEST_DOCS }, (_, i) => ({
    source: `doc-${i}.md`,
    text: Array.from({ length: 4 }, () => Array.from({ length: 3 }, () => `${sentence(20)}.`).join(' ')).join('\n\n'),
  }));
  const texts = [...new Set(documents.flatMap((d) => chunkText(d.text).map((c) => c.content)))];
  const direct = new HttpEmbedder(embeddings, silentLogger);
  // The same space as the stub's, so the pin is the same; vectors computed before the clock starts.
  const precomputed = new Map(texts.map((t) => [t, stubEmbedding(t, 768)]));
  const answered: Embedder = {
    space: direct.space,
    embedDocuments: async (batch) => batch.map((t) => ({ vector: precomputed.get(t) ?? stubEmbedding(t, 768) })),
    embedQuery: async (t) => ({ vector: stubEmbedding(t, 768) }),
  };
  const writesAlone = new SearchService(db, sandbox, answered, [], silentLogger);
  for (const delay of [0, ...STUB_DELAYS_MS]) {
    await stub.setDelay(delay);
    const rounds = { ingest: 0, unindexed: 0, writes: 0 };
    // Each round stores the documents into workspaces of its own, made at the round's start, untimed
    // (a workspace's DDL and role are not ingest, nor is the first call's warming of its
    // connection: the engine keeps one per workspace in use). The unindexed ones lack the HNSW
    // index: what ingest costs without the index's upkeep.
    const prepare = async () => {
      for (const kind of ['ingest', 'unindexed', 'writes'] as const) {
        const r = rounds[kind];
        await search.addDocuments({ projectId: `${kind}-${delay}-${r}`, documents: [{ source: 'seed.md', text: `seed ${delay} ${r}` }] });
        if (kind === 'unindexed') await admin.query(`DROP INDEX project_unindexed_${delay}_${r}.chunks_embedding_hnsw_idx`);
      }
    };
    const ingest = (kind: keyof typeof rounds, service = search) => async () => {
      const result = await service.addDocuments({ projectId: `${kind}-${delay}-${rounds[kind]++}`, documents });
      if (result.embedded !== texts.length) throw new Error(`ingest embedded ${result.embedded} of ${texts.length}`);
    };
    // The index build a call leaves running (not in the call's sample): awaited before the next contender starts.
    const settle = (service: SearchService) => () => service.settled();
    // The CPU time every process spent on each floor and ingest sample, taken between them (untimed).
    const spent: Record<'floor' | 'ingest', CpuSpent[]> = { floor: [], ingest: [] };
    let mark!: Awaited<ReturnType<typeof cpuMark>>;
    const cpuOf = (of: keyof typeof spent) => async (i: number) => {
      const now = await cpuMark();
      if (i >= 0) spent[of].push({ server: now.server - mark.server, stub: now.stub - mark.stub, postgres: pgCpu?.since(mark.postgres) ?? NaN });
      mark = now;
    };
    const figures = await sampleInterleaved(
      INGEST_SAMPLES,
      {
        prepare,
        cpuStart: async () => {
          mark = await cpuMark();
        },
        floor: () => direct.embedDocuments(texts),
        cpuFloor: cpuOf('floor'),
        ingest: ingest('ingest'),
        cpuIngest: cpuOf('ingest'),
        ingestBuild: settle(search),
        unindexed: ingest('unindexed'),
        writes: ingest('writes', writesAlone),
        writesBuild: settle(writesAlone),
      },
      1,
    );
    // A load this large defers the HNSW index and builds it again after the call: each ingest workspace has it back.
    for (let r = 0; r < rounds.ingest; r++) {
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = $1 AND indexname = 'chunks_embedding_hnsw_idx'`, [`project_ingest_${delay}_${r}`]);
      if (rows[0]?.n !== 1) throw new Error(`workspace ingest-${delay}-${r} lacks its HNSW index after add_documents returned`);
    }
    const chunksPerSecond = (ms: number) => Math.round((texts.length / ms) * 1000);
    // What the machine's cores could do at best: ingest's CPU time spread over all of them at once.
    const ingestCpu = cpuMedians(spent.ingest);
    const throughputBound = ratio(figures.floor.p50 * CORES, ingestCpu.total);
    results[`ingest_delay_${delay}ms`] = {
      chunks: texts.length,
      floor: figures.floor,
      ingest: figures.ingest,
      unindexed: figures.unindexed,
      writesAlone: figures.writes,
      buildAfterCall: figures.ingestBuild,
      floorChunksPerSecond: chunksPerSecond(figures.floor.p50),
      ingestChunksPerSecond: chunksPerSecond(figures.ingest.p50),
      throughputRatio: ratio(figures.floor.p50, figures.ingest.p50),
      throughputRatioWithoutHnsw: ratio(figures.floor.p50, figures.unindexed.p50),
      floorOverWritesAlone: ratio(figures.floor.p50, figures.writes.p50),
      cpu: { cores: CORES, floor: cpuMedians(spent.floor), ingest: ingestCpu, throughputBound },
    };
    log(
      `ingest ${texts.length} chunks, stub delay ${delay} ms: floor p50 ${figures.floor.p50} ms, ingest p50 ${figures.ingest.p50} ms, ` +
        `throughput ${ratio(figures.floor.p50, figures.ingest.p50)} x floor; without the HNSW index ${figures.unindexed.p50} ms, ${ratio(figures.floor.p50, figures.unindexed.p50)} x; ` +
        `writes alone (vectors computed beforehand) ${figures.writes.p50} ms, ${ratio(figures.floor.p50, figures.writes.p50)} x; ` +
        `the HNSW build after the call ${figures.ingestBuild.p50} ms more; ` +
        `ingest's CPU ${ingestCpu.total} ms (this process ${ingestCpu.server}, PostgreSQL ${ingestCpu.postgres}, the stub ${ingestCpu.stub}), ` +
        `so on ${CORES} cores at best ${throughputBound} x floor`,
    );
  }
  // 1b. The same ingest on the embedded store (PGlite, the default setup), against the same floor.
  const embedded = new ProvisioningEngine(
    { databaseUrl: undefined, dataDir: await tempDir('pgw-bench-search-embedded-'), extensionDirs: [], disabledExtensions: [], lockTimeoutMs: 60_000, embeddings },
    silentLogger,
  );
  embedded.start();
  try {
    const { search: onPglite } = await embedded.ready(120_000);
    for (const delay of [0, ...STUB_DELAYS_MS]) {
      await stub.setDelay(delay);
      let round = 0;
      const figures = await sampleInterleaved(
        INGEST_SAMPLES,
        {
          // Each sample's workspace made first, untimed, as in 1.
          prepare: () => onPglite.addDocuments({ projectId: `embedded-${delay}-${round}`, documents: [{ source: 'seed.md', text: `seed ${delay} ${round}` }] }),
          floor: () => direct.embedDocuments(texts),
          ingest: async () => {
            const result = await onPglite.addDocuments({ projectId: `embedded-${delay}-${round++}`, documents });
            if (result.embedded !== texts.length) throw new Error(`ingest on PGlite embedded ${result.embedded} of ${texts.length}`);
          },
          build: () => onPglite.settled(),
        },
        1,
      );
      results[`embedded_ingest_delay_${delay}ms`] = { chunks: texts.length, floor: figures.floor, ingest: figures.ingest, throughputRatio: ratio(figures.floor.p50, figures.ingest.p50) };
      log(
        `ingest ${texts.length} chunks on the embedded store (PGlite), stub delay ${delay} ms: floor p50 ${figures.floor.p50} ms, ` +
          `ingest p50 ${figures.ingest.p50} ms, throughput ${ratio(figures.floor.p50, figures.ingest.p50)} x floor`,
      );
    }
  } finally {
    await embedded.close();
  }
  await stub.setDelay(0);

  // 2. A workspace of CHUNKS chunks, loaded directly (setup, not measured), the HNSW index built after.
  await search.addDocuments({ projectId: 'bench-search', documents: [{ source: 'seed.md', text: 'seed' }] });
  const schema = 'project_bench_search';
  await admin.query(`DROP INDEX ${schema}.chunks_embedding_hnsw_idx`);
  const [{ id: repo }] = (await admin.query(`INSERT INTO ${schema}.repositories (path, name) VALUES ('/bench', 'bench') RETURNING id`)).rows as [{ id: string }];
  const FILES = Math.max(1, Math.round(CHUNKS / 100));
  const { rows: files } = await admin.query<{ id: string }>(
    `INSERT INTO ${schema}.files (repository_id, path, content_hash, size_bytes) SELECT $1, 'file-' || g || '.md', 'h' || g, 1 FROM generate_series(1, $2::int) g RETURNING id`,
    [repo, FILES],
  );
  const started = performance.now();
  for (let at = 0; at < CHUNKS; at += 1000) {
    const n = Math.min(1000, CHUNKS - at);
    const contents = Array.from({ length: n }, () => `${sentence(25)}.`);
    await admin.query(
      `INSERT INTO ${schema}.chunks (file_id, content, start_line, end_line, content_hash, embedding)
       SELECT f, c, 1, 1, md5(c), e::vector FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(f, c, e)`,
      [contents.map((_, i) => files[(at + i) % files.length]?.id), contents, contents.map((c) => `[${stubEmbedding(c, 768).join(',')}]`)],
    );
  }
  log(`loaded ${CHUNKS} chunks in ${Math.round(performance.now() - started)} ms`);
  const built = performance.now();
  await admin.query(`SET maintenance_work_mem = '1GB'`);
  await admin.query(`CREATE INDEX chunks_embedding_hnsw_idx ON ${schema}.chunks USING hnsw (embedding vector_cosine_ops)`);
  await admin.query(`VACUUM ANALYZE ${schema}.chunks, ${schema}.files, ${schema}.repositories`);
  log(`HNSW index built in ${Math.round(performance.now() - built)} ms`);

  const queries = Array.from({ length: RECALL_QUERIES }, () => sentence(4));
  const latency = await sampleInterleaved(ITERATIONS, {
    vector: (i) => search.search({ projectId: 'bench-search', query: queries[(i + RECALL_QUERIES) % RECALL_QUERIES] as string, mode: 'vector', k: 10 }),
    hybrid: (i) => search.search({ projectId: 'bench-search', query: queries[(i + RECALL_QUERIES) % RECALL_QUERIES] as string, mode: 'hybrid', k: 10 }),
    text: (i) => search.search({ projectId: 'bench-search', query: queries[(i + RECALL_QUERIES) % RECALL_QUERIES] as string, mode: 'text', k: 10 }),
  });
  results['latency'] = { ...latency, hybridOverVector: ratio(latency.hybrid.p50, latency.vector.p50), textOverVector: ratio(latency.text.p50, latency.vector.p50) };
  log(`search on ${CHUNKS} chunks, p50: vector ${latency.vector.p50} ms, hybrid ${latency.hybrid.p50} ms (${ratio(latency.hybrid.p50, latency.vector.p50)} x), text ${latency.text.p50} ms`);

  // 3. HNSW recall@10 against exact search, on the stub's embeddings of the same queries.
  // Distances tie often (texts sharing no word are all at distance 1): an index result counts as
  // found when it is no farther than the exact search's 10th.
  const nearest = async (vector: number[], exact: boolean, efSearch: number) => {
    await admin.query('BEGIN');
    try {
      await admin.query(`SET LOCAL hnsw.ef_search = ${efSearch}`);
      if (exact) await admin.query('SET LOCAL enable_indexscan = off');
      const { rows } = await admin.query<{ d: number }>(`SELECT embedding <=> $1::vector AS d FROM ${schema}.chunks ORDER BY 1 LIMIT 10`, [`[${vector.join(',')}]`]);
      return rows.map((r) => Number(r.d));
    } finally {
      await admin.query('ROLLBACK');
    }
  };
  for (const efSearch of [40, 100]) {
    let found = 0;
    for (const query of queries) {
      const vector = stubEmbedding(query, 768);
      const tenth = (await nearest(vector, true, efSearch)).at(-1) ?? Infinity;
      found += (await nearest(vector, false, efSearch)).filter((d) => d <= tenth + 1e-9).length;
    }
    const recall = Math.round((found / (queries.length * 10)) * 1000) / 1000;
    results[`hnswRecallAt10_ef${efSearch}`] = recall;
    log(`HNSW recall@10 against exact, ef_search ${efSearch}: ${recall} (${queries.length} queries)`);
  }
} finally {
  await admin.end();
  await engine.close();
  await stub.close();
  await cluster.destroy();
}
await mkdir(path.resolve('bench/results'), { recursive: true });
await writeFile(path.resolve('bench/results/search.json'), `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
