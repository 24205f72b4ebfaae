import { afterAll, beforeAll, beforeEach, describe, expect, it, type TestContext } from 'vitest';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import type { Database } from '../src/db/database.js';
import { parseEmbeddingsConfig, type EmbeddingsConfig } from '../src/embeddings/embeddings-config.js';
import { assertSearchable, EmbeddingSpaceError, pin, spaceOf } from '../src/embeddings/embedding-spaces.js';
import { HttpEmbedder } from '../src/embeddings/http-embedder.js';
import { reembed, type ReembedProgress } from '../src/embeddings/reembed.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { diagnose } from '../src/operations/doctor.js';
import { holdPinStatement, readPin } from '../src/registry/embedding-space-sql.js';
import { DEFAULT_SQL_LIMITS } from '../src/sandbox/workspace-sandbox.js';
import { SearchService } from '../src/search/search-service.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { BACKEND_KINDS, backendPerKind } from './support/backend-per-kind.js';
import { cosine, startEmbeddingStub, stubEmbedding, type EmbeddingStub } from './support/embedding-stub.js';
import { install, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';

let cluster: PgCluster | null = null;
let stub: EmbeddingStub;
let plan: InstallPlan;
/** With the codebase extension: its chunks, as ingest writes them. */
let withChunks: InstallPlan;
beforeAll(async () => {
  [cluster, stub] = await Promise.all([startPgCluster(), startEmbeddingStub({ dimensions: 8 })]);
  const dir = await writeExtension(await tempDir(), { id: 'docs', requires: ['vector'] }, {
    'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS docs (id bigint PRIMARY KEY, body text, embedding vector(8));',
  });
  plan = await planFor([dir], ['codebase']);
  withChunks = await planFor([dir]);
}, 120_000);
afterAll(async () => Promise.all([cluster?.destroy(), stub?.close()]));
beforeEach(() => stub.reset());

/** An embedder on the stub: the old space is Ollama's format with "old: ", the new one OpenAI's with "new: ". */
function embedder(space: 'old' | 'new', env: Record<string, string> = {}): HttpEmbedder {
  const config = parseEmbeddingsConfig({}, {
    PG_WORKSPACE_EMBEDDINGS: space === 'old' ? 'ollama' : 'openai',
    PG_WORKSPACE_EMBEDDINGS_URL: space === 'old' ? stub.ollamaUrl : stub.openaiUrl,
    PG_WORKSPACE_EMBEDDINGS_MODEL: 'stub-embed',
    PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '8',
    PG_WORKSPACE_EMBEDDINGS_DOCUMENT_PREFIX: `${space}: `,
    PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: '3',
    PG_WORKSPACE_EMBEDDINGS_CONCURRENCY: '1',
    ...env,
  }) as EmbeddingsConfig;
  return new HttpEmbedder(config, silentLogger, { retryBaseMs: 5 });
}

const BODIES = Array.from({ length: 10 }, (_, i) => `document ${i + 1} about ${['tables', 'indexes', 'vectors', 'roles', 'schemas'][i % 5]}`);
const COLUMN = { projectId: 'alpha', table: 'docs', column: 'embedding' };
/** The docs column of workspace `projectId`. */
const docsOf = (projectId: string) => ({ ...COLUMN, projectId });

/** A workspace whose ten docs were embedded in the old space, as an ingest would: pin, then write as the workspace. */
async function seeded(db: Database, limits = DEFAULT_SQL_LIMITS, extensions = plan, projectId = 'alpha') {
  const report = await install(db, extensions);
  const { workspaces: manager, sandbox: sql } = sandboxedWorkspaces(db, extensions, report.searchPathSchemas, silentLogger, { limits });
  await manager.ensure(projectId);
  const old = embedder('old');
  await pin(db, { ...docsOf(projectId), textColumn: 'body' }, old.space);
  const vectors = await old.embedDocuments(BODIES);
  await sql.execute(
    projectId,
    'INSERT INTO docs (id, body, embedding) SELECT id, body, vector::vector FROM jsonb_to_recordset($1::jsonb) AS r(id bigint, body text, vector text)',
    [BODIES.map((body, i) => ({ id: i + 1, body, vector: JSON.stringify(vectors[i]?.vector) }))],
  );
  stub.reset();
  return { sql, old };
}

/** Which space each row's vector is in, by id: "new", "old" or "?". */
async function spacesOfRows(db: Database, projectId = 'alpha'): Promise<string[]> {
  const schema = `project_${projectId.replaceAll('-', '_')}`;
  const rows = await db.query<{ body: string; embedding: string }>(`SELECT body, embedding::text FROM ${schema}.docs ORDER BY id`);
  return rows.map((r) => {
    const v = JSON.parse(r.embedding) as number[];
    if (cosine(v, stubEmbedding(`new: ${r.body}`, 8)) > 0.9999) return 'new';
    if (cosine(v, stubEmbedding(`old: ${r.body}`, 8)) > 0.9999) return 'old';
    return '?';
  });
}

for (const kind of BACKEND_KINDS) {
  describe(`reembed on ${kind}`, () => {
    const available = backendPerKind(kind, () => cluster);
    /**
     * One database for the cases that move a column of their own workspace by id and read only
     * that workspace (each database is a PGlite start and an install). The others keep their own:
     * the first runs a move over every workspace and asks doctor about the whole database, and
     * the ingest case installs another plan. (On PostgreSQL the last opens two pools on a
     * database of its own.)
     */
    let shared: Promise<Database> | undefined;
    const sharedDb = (ctx: TestContext) => {
      const backend = available(ctx);
      return (shared ??= backend.fresh());
    };

    it('stops when interrupted, refuses searches meanwhile, and resumes where it stopped; the pin switches at the end', async (ctx) => {
      const db = await available(ctx).fresh();
      const { sql, old } = await seeded(db);
      const moved = embedder('new');

      // First run: interrupted after two batches of three.
      const controller = new AbortController();
      const progress: ReembedProgress[] = [];
      const first = await reembed(db, sql, moved, {
        projectId: 'alpha',
        batchRows: 3, maxInputChars: 8000,
        signal: controller.signal,
        onProgress: (p) => {
          progress.push(p);
          if (p.done >= 6) controller.abort();
        },
      });
      expect(first).toEqual([{ ...COLUMN, outcome: 'interrupted', done: 6, total: 10, embedded: 6, cut: 0 }]);
      expect(progress.map((p) => p.done)).toEqual([0, 3, 6]);
      expect(stub.requests).toHaveLength(2);
      expect(await spacesOfRows(db)).toEqual(['new', 'new', 'new', 'new', 'new', 'new', 'old', 'old', 'old', 'old']);

      // Meanwhile: the column is in two spaces, so no space may search it; only the new space may write.
      for (const space of [old.space, moved.space]) {
        await expect(assertSearchable(db, COLUMN, space)).rejects.toThrow(
          /^Column docs\.embedding of workspace "alpha" is being re-embedded from ollama "stub-embed" \(8 dimensions, document prefix "old: "\) to openai "stub-embed" \(8 dimensions, document prefix "new: "\): 6 of 10 rows done\./,
        );
      }
      await expect(pin(db, { ...COLUMN, textColumn: 'body' }, old.space)).rejects.toThrow(EmbeddingSpaceError);
      await pin(db, { ...COLUMN, textColumn: 'body' }, moved.space);
      expect(await readPin(db, COLUMN)).toMatchObject({ provider: 'ollama', reembed_cursor: '6', reembed_done: '6' });
      const unfinished = (await diagnose(db, plan)).findings.filter((f) => f.code === 'reembed-unfinished');
      expect(unfinished).toMatchObject([{ severity: 'warning', details: { project_id: 'alpha', table: 'docs', column: 'embedding', done: 6, total: 10 } }]);
      expect(unfinished[0]?.fix).toBe('Run `pg-workspace-mcp reembed --project alpha` with the target\'s settings again: it continues where it stopped.');

      // Second run: only the four rows left, in two requests; then the pin switches.
      stub.reset();
      const second = await reembed(db, sql, moved, { projectId: 'alpha', batchRows: 3, maxInputChars: 8000 });
      expect(second).toEqual([{ ...COLUMN, outcome: 'moved', done: 10, total: 10, embedded: 4, cut: 0 }]);
      expect(stub.requests.map((r) => r.body['input'])).toEqual([BODIES.slice(6, 9).map((b) => `new: ${b}`), [`new: ${BODIES[9]}`]]);
      expect(await spacesOfRows(db)).toEqual(Array(10).fill('new'));
      expect(await readPin(db, COLUMN)).toMatchObject({ provider: 'openai', document_prefix: 'new: ', target: null, reembed_cursor: null });
      await assertSearchable(db, COLUMN, moved.space);
      expect((await diagnose(db, plan)).findings.map((f) => f.code)).not.toContain('reembed-unfinished');
      await expect(assertSearchable(db, COLUMN, old.space)).rejects.toThrow('holds vectors of openai "stub-embed"');

      // Third run: nothing to do, nothing sent.
      stub.reset();
      expect(await reembed(db, sql, moved, { batchRows: 3, maxInputChars: 8000 })).toEqual([{ ...COLUMN, outcome: 'current', done: 0, total: 0, embedded: 0, cut: 0 }]);
      expect(stub.requests).toHaveLength(0);
    });

    it('keeps its progress when the provider fails mid-run, and refuses a space whose length the column cannot hold', async (ctx) => {
      const db = await sharedDb(ctx);
      const { sql } = await seeded(db, DEFAULT_SQL_LIMITS, plan, 'failing');
      const moved = embedder('new', { PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES: '0' });
      stub.fail({ dimensions: 8 }, { status: 400, body: { error: { message: 'bad day' } } });
      const [failed] = await reembed(db, sql, moved, { projectId: 'failing', batchRows: 3, maxInputChars: 8000 });
      expect(failed).toMatchObject({ outcome: 'failed', done: 3, total: 10 });
      expect(failed?.error).toContain('refused the request (HTTP 400: bad day)');
      expect(await spacesOfRows(db, 'failing')).toEqual(['new', 'new', 'new', ...Array(7).fill('old')]);

      stub.reset();
      expect(await reembed(db, sql, moved, { projectId: 'failing', batchRows: 3, maxInputChars: 8000 })).toMatchObject([{ outcome: 'moved', embedded: 7 }]);
      expect(stub.requests).toHaveLength(3);

      const longer = embedder('old', { PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '16' });
      const [refused] = await reembed(db, sql, longer, { projectId: 'failing', batchRows: 3, maxInputChars: 8000 });
      expect(refused).toMatchObject({ outcome: 'failed', done: 0 });
      expect(refused?.error).toContain('docs.embedding holds 8 dimensions, but the new space, ollama "stub-embed" (16 dimensions, document prefix "old: "), makes 16');
      expect(await readPin(db, docsOf('failing'))).toMatchObject({ provider: 'openai', target: null });
    });

    it('reads long texts only as far as the provider takes them, and counts the ones it cut', async (ctx) => {
      const db = await sharedDb(ctx);
      const { sql } = await seeded(db, DEFAULT_SQL_LIMITS, plan, 'long-texts');
      const short = embedder('new', { PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS: '12' });
      const [moved] = await reembed(db, sql, short, { projectId: 'long-texts', batchRows: 5, maxInputChars: 12 });
      expect(moved).toMatchObject({ outcome: 'moved', embedded: 10, cut: 10 });
      expect(stub.requests.flatMap((r) => r.body['input'] as string[])).toEqual(BODIES.map((b) => `new: ${b.slice(0, 12)}`));
    });

    it('fails, rather than finish early, when a row is larger than the byte budget of a read', async (ctx) => {
      const db = await sharedDb(ctx);
      const { sql } = await seeded(db, { ...DEFAULT_SQL_LIMITS, maxResultBytes: 1024 }, plan, 'big-row');
      await db.query(`UPDATE project_big_row.docs SET body = repeat('long ', 400) WHERE id = 4`);
      const [failed] = await reembed(db, sql, embedder('new'), { projectId: 'big-row', batchRows: 3, maxInputChars: 8000 });
      expect(failed).toMatchObject({ outcome: 'failed', done: 3, total: 10 });
      expect(failed?.error).toBe("the next row of docs is larger than this server's PG_WORKSPACE_MAX_RESULT_BYTES: raise it for the run.");
      expect(await readPin(db, docsOf('big-row'))).toMatchObject({ provider: 'ollama', reembed_cursor: '3' });
    });

    it('refuses an ingest write of the old space that reaches the database after a move began: a write in flight holds the move back', async (ctx) => {
      const db = await available(ctx).fresh();
      const { sql } = await seeded(db, DEFAULT_SQL_LIMITS, withChunks);
      const old = embedder('old', { PG_WORKSPACE_EMBEDDINGS: 'openai', PG_WORKSPACE_EMBEDDINGS_URL: stub.openaiUrl, PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '768' });
      const moved = embedder('new', { PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '768' });
      const ingest = new SearchService(db, sql, old, [], silentLogger);
      const CHUNKS = { projectId: 'alpha', table: 'chunks', column: 'embedding' };
      await ingest.addDocuments({ projectId: 'alpha', documents: [{ source: 'a.md', text: 'tables and their indexes' }] });

      // The ingest passes the pin's check, then waits for its embeddings while a move runs to the end.
      stub.reset();
      stub.fail({ delayMs: 1500 });
      const writing = ingest.addDocuments({ projectId: 'alpha', documents: [{ source: 'b.md', text: 'roles and their schemas' }] });
      writing.catch(() => undefined);
      while (stub.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      const [chunksMoved] = await reembed(db, sql, moved, { projectId: 'alpha', batchRows: 3, maxInputChars: 8000 });
      expect(chunksMoved).toMatchObject({ ...CHUNKS, outcome: 'moved', total: 1 });
      await expect(writing).rejects.toThrow(/^Column chunks\.embedding of workspace "alpha" holds vectors of openai "stub-embed" \(768 dimensions, document prefix "new: "\)/);
      const rows = await db.query<{ content: string; embedding: string }>('SELECT content, embedding::text FROM project_alpha.chunks ORDER BY id');
      expect(rows.map((r) => r.content)).toEqual(['tables and their indexes']);
      expect(cosine(JSON.parse(rows[0]?.embedding ?? '[]') as number[], stubEmbedding('new: tables and their indexes', 768))).toBeGreaterThan(0.9999);

      // A write's transaction holds the pin: the move cannot begin until it commits (real sessions, on PostgreSQL).
      if (kind !== 'postgres') return;
      let commit!: () => void;
      const committing = new Promise<void>((resolve) => (commit = resolve));
      let held!: () => void;
      const holding = new Promise<void>((resolve) => (held = resolve));
      const write = db.transaction(async (tx) => {
        const hold = holdPinStatement(CHUNKS, spaceOf(moved.space));
        await tx.query(hold.sql, hold.params);
        held();
        await committing;
      });
      await holding;
      const back = reembed(db, sql, old, { projectId: 'alpha', batchRows: 3, maxInputChars: 8000 });
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(await readPin(db, CHUNKS)).toMatchObject({ provider: 'openai', document_prefix: 'new: ', target: null });
      commit();
      await write;
      // (The docs column's vector(8) cannot take the old space's 768 dimensions: that move fails, as it should.)
      expect((await back)[0]).toMatchObject({ ...CHUNKS, outcome: 'moved' });
    });

    it('moves a column in one run at a time: a second run beside the first, on another engine, leaves it alone and names the first', async (ctx) => {
      const backend = available(ctx);
      // On PostgreSQL two engines (pools) on one database; the embedded store has one engine per data directory.
      const url = await backend.freshUrl?.();
      const db = url ? new PostgresDatabase({ connectionString: url }) : await sharedDb(ctx);
      const other = url ? new PostgresDatabase({ connectionString: url }) : db;
      try {
        const { sql } = await seeded(db, DEFAULT_SQL_LIMITS, plan, 'one-run');
        const report = await install(other, plan);
        const { sandbox: otherSql } = sandboxedWorkspaces(other, plan, report.searchPathSchemas, silentLogger);

        stub.fail({ delayMs: 1500 });
        const first = reembed(db, sql, embedder('new'), { projectId: 'one-run', batchRows: 3, maxInputChars: 8000 });
        while (stub.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
        const [second] = await reembed(other, otherSql, embedder('new'), { projectId: 'one-run', batchRows: 3, maxInputChars: 8000 });
        expect(second).toMatchObject({ ...docsOf('one-run'), outcome: 'busy', embedded: 0 });
        expect(second?.error).toMatch(new RegExp(`^another reembed run is moving this column now \\(process ${url ? '\\d+' : process.pid}, for \\d+ s\\); this run left it alone\\.`));
        expect(await first).toEqual([{ ...docsOf('one-run'), outcome: 'moved', done: 10, total: 10, embedded: 10, cut: 0 }]);
        expect(stub.requests).toHaveLength(4);
        expect(await spacesOfRows(db, 'one-run')).toEqual(Array(10).fill('new'));
        // Once the first is done, the lock is free: a run finds the column moved.
        expect(await reembed(other, otherSql, embedder('new'), { projectId: 'one-run', batchRows: 3, maxInputChars: 8000 })).toMatchObject([{ outcome: 'current' }]);
      } finally {
        if (url) await Promise.all([db.close(), other.close()]);
      }
    });
  });
}
