import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callTool, connectInProcess } from './support/mcp.js';
import { createVectorDatabase, startPgvectorCluster, type PgCluster } from './support/pg-cluster.js';
import { BACKEND_KINDS } from './support/backend-per-kind.js';
import { CHUNKS_PER_GROUP } from '../src/search/chunk-store.js';

/** Documents of three chunks (manyDocuments) a write group holds. */
const PER_GROUP = Math.floor(CHUNKS_PER_GROUP / 3);

/*
 * The default set-up's done-criterion (issue 23): with no embedding provider, an agent adds
 * documents and finds them by text with the tools alone, on both backends.
 */

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgvectorCluster('adding and searching documents through MCP');
}, 120_000);
afterAll(async () => cluster?.destroy());

interface Hit {
  content: string;
  source: { table: string; path: string; start_line: number; end_line: number; repository: string };
  metadata: unknown;
  text_rank: number | null;
  vector_rank: number | null;
}

const GUIDE = [
  '# Installing',
  '',
  'Run npm install pg-workspace-mcp and add the server to your client configuration.',
  '',
  '# Backups',
  '',
  'The embedded store keeps its data in one directory: copy it while the server is stopped.',
  'A PostgreSQL server is backed up with pg_dump like any other database.',
].join('\n');

for (const kind of BACKEND_KINDS) {
  describe(`search and add_documents without a provider on ${kind}`, () => {
    let mcp: Awaited<ReturnType<typeof connectInProcess>> | undefined;
    let tools: Tool[];
    const run = (name: string, args: Record<string, unknown>) => callTool((mcp as NonNullable<typeof mcp>).client, tools, name, args);

    beforeAll(async () => {
      if (kind === 'pglite') mcp = await connectInProcess();
      else {
        const url = cluster && (await createVectorDatabase(cluster, 'search'));
        if (!url) return;
        mcp = await connectInProcess({ databaseUrl: url });
      }
      tools = mcp.tools;
    }, 240_000);
    afterAll(async () => mcp?.close());

    it('adds documents and finds them by text, with source, lines and metadata, saying it is text only', async (ctx) => {
      if (!mcp) ctx.skip();
      const added = await run('add_documents', {
        project_id: 'docs',
        documents: [
          { source: 'guide.md', text: GUIDE, metadata: { kind: 'guide' } },
          { source: 'faq.md', text: 'Why PGlite?\n\nIt needs no server: the database runs inside the process.' },
        ],
        chunk_size: 100,
        chunk_overlap: 0,
      });
      expect(added.isError, added.text).toBe(false);
      expect(added.data).toMatchObject({ skipped: 0, removed: 0, embedded: 0, embedding_model: null });
      expect(added.data['added']).toBeGreaterThanOrEqual(4);
      expect(added.data['note']).toMatch(/No embedding provider/);

      const found = await run('search', { project_id: 'docs', query: 'database with pg_dump', k: 3 });
      expect(found.isError, found.text).toBe(false);
      expect(found.data).toMatchObject({ mode: 'text', table: 'chunks', language: 'english' });
      expect(found.data['note']).toMatch(/no embedding provider/i);
      const [best] = found.data['results'] as Hit[];
      expect(best?.content).toContain('pg_dump');
      expect(best?.source).toMatchObject({ table: 'chunks', path: 'guide.md', repository: 'documents:', end_line: 8 });
      expect(best?.source.start_line).toBeLessThanOrEqual(8);
      expect(best?.metadata).toEqual({ kind: 'guide' });
      expect(best?.text_rank).toBe(1);
      expect(best?.vector_rank).toBeNull();

      // websearch syntax: an excluded word removes the chunk that has it.
      const excluded = await run('search', { project_id: 'docs', query: 'server -pg_dump' });
      const contents = (excluded.data['results'] as Array<{ content: string }>).map((r) => r.content);
      expect(contents.length).toBeGreaterThan(0);
      expect(contents.some((c) => c.includes('pg_dump'))).toBe(false);

      // A filter on the path.
      const faqOnly = await run('search', { project_id: 'docs', query: 'server database', filter: { path: 'faq.md' } });
      expect((faqOnly.data['results'] as Array<{ source: { path: string } }>).map((r) => r.source.path)).toEqual(['faq.md']);
    });

    it('re-adding the same text writes nothing; changed text replaces the old chunks', async (ctx) => {
      if (!mcp) ctx.skip();
      const again = await run('add_documents', { project_id: 'docs', documents: [{ source: 'guide.md', text: GUIDE, metadata: { kind: 'guide' } }], chunk_size: 100, chunk_overlap: 0 });
      expect(again.data).toMatchObject({ added: 0, removed: 0, documents: [{ source: 'guide.md', status: 'unchanged' }] });
      expect(again.data['skipped']).toBeGreaterThanOrEqual(3);

      const changed = GUIDE.replace('pg_dump', 'pg_basebackup');
      const replaced = await run('add_documents', { project_id: 'docs', documents: [{ source: 'guide.md', text: changed, metadata: { kind: 'guide' } }], chunk_size: 100, chunk_overlap: 0 });
      expect(replaced.data).toMatchObject({ added: 1, removed: 1, documents: [{ source: 'guide.md', status: 'replaced', added: 1, removed: 1 }] });
      const old = await run('search', { project_id: 'docs', query: 'pg_dump' });
      expect(old.data['results']).toEqual([]);
      const now = await run('search', { project_id: 'docs', query: 'pg_basebackup' });
      expect((now.data['results'] as Array<{ content: string }>)[0]?.content).toContain('pg_basebackup');
      const rows = await run('query', { project_id: 'docs', sql: "SELECT count(*)::int AS n FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.path = 'guide.md'" });
      expect(rows.data['rows']).toEqual([[4]]);
    });

    it('a workspace made before the search columns gets them from migrate-workspaces, its old chunks searchable', async (ctx) => {
      if (!mcp) ctx.skip();
      const { db, fleet } = await (mcp as NonNullable<typeof mcp>).engine.ready(30_000);
      await run('add_documents', { project_id: 'legacy', documents: [{ source: 'old.md', text: 'Written before full-text search existed.' }] });
      // Back to the codebase tables as the previous release made them, its migration unrecorded.
      await db.exec(`
        ALTER TABLE project_legacy.chunks DROP COLUMN content_tsv, DROP COLUMN content_hash;
        ALTER TABLE project_legacy.files DROP COLUMN metadata;
        DELETE FROM project_registry.workspace_migrations WHERE project_id = 'legacy' AND name = '0001_search';
        UPDATE project_registry.workspace_config SET workspace_fingerprint = 'previous', workspace_schema_fingerprint = NULL WHERE project_id = 'legacy';`);
      const before = await run('workspace_status', { project_id: 'legacy' });
      expect(before.data['workspace']).toMatchObject({ up_to_date: false, pending: ['codebase/0001_search'] });

      const summary = await fleet.upgrade({ concurrency: 2 });
      expect(summary).toMatchObject({ failed: 0 });
      expect(summary.upgraded).toBeGreaterThanOrEqual(1);
      const after = await run('workspace_status', { project_id: 'legacy' });
      expect(after.data['workspace']).toMatchObject({ up_to_date: true, pending: [] });
      const described = await run('describe_workspace', { project_id: 'legacy', table: 'chunks' });
      const [chunks] = described.data['tables'] as Array<{ columns: Array<{ name: string; generated: boolean }>; indexes: Array<{ name: string; method: string }> }>;
      expect(chunks?.columns.find((c) => c.name === 'content_tsv')).toMatchObject({ generated: true });
      expect(chunks?.indexes.find((i) => i.name === 'chunks_content_tsv_idx')).toMatchObject({ method: 'gin' });
      const found = await run('search', { project_id: 'legacy', query: 'written before' });
      expect((found.data['results'] as Hit[]).map((r) => r.source.path)).toEqual(['old.md']);
      // Its chunk has no hash yet: adding the document again replaces it once, then skips it.
      const readded = await run('add_documents', { project_id: 'legacy', documents: [{ source: 'old.md', text: 'Written before full-text search existed.' }] });
      expect(readded.data).toMatchObject({ added: 1, removed: 1 });
      const again = await run('add_documents', { project_id: 'legacy', documents: [{ source: 'old.md', text: 'Written before full-text search existed.' }] });
      expect(again.data).toMatchObject({ added: 0, removed: 0, skipped: 1 });
    });

    it("writes as the workspace's role: an agent's triggers on files and chunks run as that role, never as the server, and can only read the staged rows", async (ctx) => {
      if (!mcp) ctx.skip();
      await run('ensure_workspace', { project_id: 'trig' });
      await run('execute', { project_id: 'trig', sql: 'CREATE TABLE seen (tbl text, who text, is_super boolean, staged int, wrote text)' });
      // The staging table (core's, the server's COPY fills it): its rows of this transaction are readable, and it is not writable.
      await run('execute', {
        project_id: 'trig',
        sql: `CREATE FUNCTION note_writer() RETURNS trigger LANGUAGE plpgsql AS $f$
              DECLARE wrote text := 'wrote';
              BEGIN
                BEGIN
                  DELETE FROM project_registry_ingest.chunks;
                EXCEPTION WHEN OTHERS THEN wrote := SQLERRM;
                END;
                INSERT INTO seen SELECT TG_TABLE_NAME, current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                                        (SELECT count(*) FROM project_registry_ingest.chunks), wrote;
                RETURN NEW;
              END $f$`,
      });
      await run('execute', { project_id: 'trig', sql: 'CREATE TRIGGER note_writer BEFORE INSERT ON chunks FOR EACH ROW EXECUTE FUNCTION note_writer()' });
      await run('execute', { project_id: 'trig', sql: 'CREATE TRIGGER note_files BEFORE INSERT ON files FOR EACH ROW EXECUTE FUNCTION note_writer()' });
      const added = await run('add_documents', { project_id: 'trig', documents: [{ source: 'a.md', text: 'one paragraph' }] });
      expect(added.isError, added.text).toBe(false);
      const seen = await run('query', { project_id: 'trig', sql: 'SELECT tbl, who, is_super, staged, wrote FROM seen ORDER BY tbl' });
      const role = expect.stringMatching(/^pgw_[0-9a-f]{8}_trig$/);
      const denied = 'permission denied for table chunks';
      expect(seen.data['rows']).toEqual([
        ['chunks', role, false, 1, denied],
        ['files', role, false, 1, denied],
      ]);
      // Nothing staged is left behind once the call has committed.
      expect((await run('query', { project_id: 'trig', sql: 'SELECT count(*)::int FROM project_registry_ingest.chunks' })).data['rows']).toEqual([[0]]);
    });

    /** `n` documents of three paragraphs: at chunk_size 100, three chunks each, so write groups of PER_GROUP documents. */
    const manyDocuments = (prefix: string, n: number, poisoned?: number) =>
      Array.from({ length: n }, (_, i) => ({
        source: `${prefix}-${i}.md`,
        text: [0, 1, 2].map((p) => `${prefix} ${i} part ${p}: ${i === poisoned && p === 1 ? 'poison' : 'plain'} words of note ${i * 7 + p}, written out at some length.`).join('\n\n'),
      }));
    const storedPerSource = async (projectId: string) =>
      (await run('query', { project_id: projectId, sql: 'SELECT f.path, count(c.id)::int FROM files f LEFT JOIN chunks c ON c.file_id = f.id GROUP BY f.path ORDER BY f.path', max_rows: 1000 }))
        .data['rows'] as Array<[string, number]>;

    it('a write group that fails leaves its documents unwritten and every other document whole or absent; the call again stores the rest', async (ctx) => {
      if (!mcp) ctx.skip();
      await run('ensure_workspace', { project_id: 'groups' });
      await run('execute', {
        project_id: 'groups',
        sql: "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN IF NEW.content LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned chunk'; END IF; RETURN NEW; END $f$",
      });
      await run('execute', { project_id: 'groups', sql: 'CREATE TRIGGER refuse_poison BEFORE INSERT ON chunks FOR EACH ROW EXECUTE FUNCTION refuse_poison()' });
      // Three groups (the third shorter); the second fails while the first (and perhaps the third) are written beside it.
      const total = 2 * PER_GROUP + 18;
      const documents = manyDocuments('g', total, PER_GROUP + 9);
      const failed = await run('add_documents', { project_id: 'groups', documents, chunk_size: 100, chunk_overlap: 0 });
      expect(failed.isError).toBe(true);
      expect(failed.text).toMatch(/poisoned chunk/);
      const stored = await storedPerSource('groups');
      for (const [, chunks] of stored) expect(chunks).toBe(3);
      const paths = stored.map(([path]) => path);
      for (let i = PER_GROUP; i < 2 * PER_GROUP; i++) expect(paths).not.toContain(`g-${i}.md`);
      // The failure says what is stored (the first group at least, written beside the second).
      expect(stored.length).toBeGreaterThan(0);
      expect(failed.text).toContain(`${stored.length} of the call's ${total} documents are stored as sent; the same call again stores the rest`);

      await run('execute', { project_id: 'groups', sql: 'DROP TRIGGER refuse_poison ON chunks' });
      const again = await run('add_documents', { project_id: 'groups', documents, chunk_size: 100, chunk_overlap: 0 });
      expect(again.isError, again.text).toBe(false);
      expect(again.data).toMatchObject({ added: 3 * (total - stored.length), removed: 0 });
      const all = await storedPerSource('groups');
      expect(all).toHaveLength(total);
      for (const [, chunks] of all) expect(chunks).toBe(3);
    });

    it('writes two groups at once, each in a transaction of its own (PostgreSQL: one session each)', async (ctx) => {
      if (!mcp || kind === 'pglite') ctx.skip();
      await run('ensure_workspace', { project_id: 'overlap' });
      await run('execute', { project_id: 'overlap', sql: 'CREATE TABLE overlap_seen (sessions int, tx xid8)' });
      // Each group's INSERT waits (up to 3 s) until another session holds the same shared advisory lock: only groups written at once meet,
      // written one after the other each sees one session.
      await run('execute', {
        project_id: 'overlap',
        sql: `CREATE FUNCTION note_overlap() RETURNS trigger LANGUAGE plpgsql AS $f$
          DECLARE n int; deadline timestamptz := clock_timestamp() + interval '3 s';
          BEGIN
            PERFORM pg_advisory_xact_lock_shared(7701);
            LOOP
              SELECT count(DISTINCT pid) INTO n FROM pg_locks WHERE locktype = 'advisory' AND objid = 7701 AND granted;
              EXIT WHEN n >= 2 OR clock_timestamp() > deadline;
              PERFORM pg_sleep(0.01);
            END LOOP;
            -- Held a little longer, so the other sees this one too before it commits.
            PERFORM pg_sleep(0.1);
            INSERT INTO overlap_seen VALUES (n, pg_current_xact_id());
            RETURN NULL;
          END $f$`,
      });
      await run('execute', { project_id: 'overlap', sql: 'CREATE TRIGGER note_overlap AFTER INSERT ON chunks FOR EACH STATEMENT EXECUTE FUNCTION note_overlap()' });
      // Two groups, the second shorter.
      const added = await run('add_documents', { project_id: 'overlap', documents: manyDocuments('o', PER_GROUP + 19), chunk_size: 100, chunk_overlap: 0 });
      expect(added.isError, added.text).toBe(false);
      expect(added.data).toMatchObject({ added: 3 * (PER_GROUP + 19) });
      const seen = await run('query', { project_id: 'overlap', sql: 'SELECT max(sessions), count(DISTINCT tx)::int FROM overlap_seen' });
      expect(seen.data['rows']).toEqual([[2, 2]]);
    });

    it("searches an agent's own table by a text column, and says what is wrong with bad arguments", async (ctx) => {
      if (!mcp) ctx.skip();
      await run('execute', { project_id: 'notes', sql: 'CREATE TABLE notes (id int PRIMARY KEY, title text, body text, n_views bigint)' });
      await run('execute', {
        project_id: 'notes',
        sql: "INSERT INTO notes VALUES (1, 'Cats', 'Cats sleep most of the day', 5), (2, 'Dogs', 'Dogs are running in the park', 7), (3, 'Birds', 'Birds run on the beach', 9)",
      });
      const english = await run('search', { project_id: 'notes', query: 'runs', table: 'notes', text_column: 'body' });
      expect(english.isError, english.text).toBe(false);
      const rows = (english.data['results'] as Array<{ row: Record<string, unknown>; content: string }>).map((r) => r.row['id']);
      expect(rows.sort()).toEqual([2, 3]);
      expect((english.data['results'] as Array<{ row: Record<string, unknown> }>)[0]?.row).toHaveProperty('n_views');
      // 'simple' keeps words as written: "runs" is neither "running" nor "run".
      const simple = await run('search', { project_id: 'notes', query: 'runs', table: 'notes', text_column: 'body', language: 'simple' });
      expect(simple.data['results']).toEqual([]);

      const ambiguous = await run('search', { project_id: 'notes', query: 'cats', table: 'notes' });
      expect(ambiguous).toMatchObject({ isError: true });
      expect(ambiguous.text).toMatch(/2 text columns \(title, body\): say which one in text_column/);
      const notText = await run('search', { project_id: 'notes', query: 'cats', table: 'notes', text_column: 'n_views' });
      expect(notText.text).toMatch(/notes.n_views is bigint, not text/);
      const missing = await run('search', { project_id: 'notes', query: 'cats', table: 'nope' });
      expect(missing.isError).toBe(true);
      expect(missing.text).toMatch(/nope/);
      const vector = await run('search', { project_id: 'notes', query: 'cats', mode: 'vector' });
      expect(vector.text).toMatch(/needs an embedding provider.*--embeddings/);
      const badLanguage = await run('search', { project_id: 'notes', query: 'cats', table: 'notes', text_column: 'body', language: 'klingon' });
      expect(badLanguage.text).toMatch(/klingon/);
      const badFilter = await run('search', { project_id: 'docs', query: 'server', filter: { owner: 'x' } });
      expect(badFilter.text).toMatch(/path, language, repository, file_id/);
      const badChunks = await run('add_documents', { project_id: 'docs', documents: [{ source: 'a', text: 'b' }], chunk_size: 200, chunk_overlap: 150 });
      expect(badChunks.text).toMatch(/chunk_overlap must be/);
      const twice = await run('add_documents', { project_id: 'docs', documents: [{ source: 'a', text: 'b' }, { source: 'a', text: 'c' }] });
      expect(twice.text).toMatch(/appears twice/);
      // Still serving.
      const ok = await run('search', { project_id: 'docs', query: 'PGlite' });
      expect(ok.isError).toBe(false);
    });
  });
}
