import { describe, expect, it } from 'vitest';
import type { Database } from '../src/db/database.js';
import { parseEmbeddingsConfig, type EmbeddingsConfig } from '../src/embeddings/embeddings-config.js';
import { HttpEmbedder } from '../src/embeddings/http-embedder.js';
import { silentLogger } from '../src/logger.js';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import { CHUNKS_PER_GROUP } from '../src/search/chunk-store.js';
import { SearchService } from '../src/search/search-service.js';
import { BACKEND_KINDS, backendPerKind } from './support/backend-per-kind.js';
import { install } from './support/fixtures.js';
import { ingestFixtures } from './support/ingest-fixtures.js';

/*
 * What ingest embeds (issue 23): only chunks no chunk of the workspace has a vector for, whichever
 * source they came from; a file whose metadata alone changed is written again, nothing embedded.
 */

const fx = ingestFixtures();

async function service(db: Database) {
  return (await withSandbox(db)).search;
}

async function withSandbox(db: Database) {
  const report = await install(db, fx.plan);
  const { sandbox } = sandboxedWorkspaces(db, fx.plan, report.searchPathSchemas, silentLogger);
  const config = parseEmbeddingsConfig(
    {},
    { PG_WORKSPACE_EMBEDDINGS: 'openai', PG_WORKSPACE_EMBEDDINGS_URL: fx.stub.openaiUrl, PG_WORKSPACE_EMBEDDINGS_MODEL: 'stub-embed', PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '768' },
  ) as EmbeddingsConfig;
  return { sandbox, search: fx.closedAfterTest(new SearchService(db, sandbox, new HttpEmbedder(config, silentLogger), [], silentLogger)) };
}

/** Passages of 60-90 characters: at chunk_size 100, one chunk each. */
const P = [
  'The harbour master counts the fishing boats at dawn, one by one, from the pier.',
  'Granite cliffs hold the old lighthouse above the grey and restless northern sea.',
  'An orchard of pears and apples grows along the slow river below the mill.',
  'The violin maker varnishes the spruce tops in thin coats through the winter.',
];
const NEW = 'Saffron threads dry on copper trays in the sun of the market square each noon.';
const LOAD = { chunkSize: 100, chunkOverlap: 0 };

for (const kind of BACKEND_KINDS) {
  describe(`what ingest reads and embeds on ${kind}`, () => {
    const available = backendPerKind(kind, () => fx.cluster);

    it('embeds only chunks no chunk of the workspace has a vector for, and nothing for a change of metadata alone', async (ctx) => {
      const db = await available(ctx).fresh();
      const search = await service(db);
      const first = await search.addDocuments({ projectId: 'alpha', documents: [{ source: 'a.md', text: P.slice(0, 3).join('\n\n'), metadata: { v: 1 } }], ...LOAD });
      expect(first).toMatchObject({ added: 3, embedded: 3 });
      expect(fx.stub.inputs).toBe(3);

      // Only the metadata changed: the file is written again, nothing embedded.
      const relabelled = await search.addDocuments({ projectId: 'alpha', documents: [{ source: 'a.md', text: P.slice(0, 3).join('\n\n'), metadata: { v: 2 } }], ...LOAD });
      expect(relabelled).toMatchObject({ added: 0, embedded: 0, documents: [{ status: 'replaced' }] });
      // Another source sharing two passages with a.md, and a.md with one passage changed: only the new passages embedded.
      const more = await search.addDocuments({
        projectId: 'alpha',
        documents: [
          { source: 'b.md', text: [P[0], P[3]].join('\n\n') },
          { source: 'a.md', text: [P[0], P[1], NEW].join('\n\n'), metadata: { v: 2 } },
        ],
        ...LOAD,
      });
      expect(more).toMatchObject({ added: 3, removed: 1, embedded: 2, documents: [{ source: 'b.md', embedded: 1 }, { source: 'a.md', embedded: 1 }] });
      expect(fx.stub.inputs).toBe(5);
      const again = await search.addDocuments({ projectId: 'alpha', documents: [{ source: 'b.md', text: [P[0], P[3]].join('\n\n') }], ...LOAD });
      expect(again).toMatchObject({ added: 0, embedded: 0, documents: [{ status: 'unchanged' }] });
      expect(fx.stub.inputs).toBe(5);
      const rows = await db.query<{ n: number; unembedded: number }>('SELECT count(*)::int AS n, count(*) FILTER (WHERE embedding IS NULL)::int AS unembedded FROM project_alpha.chunks');
      expect(rows[0]).toEqual({ n: 5, unembedded: 0 });
    });
  });
}

/*
 * When ingest writes (issue 23): a call of several write groups writes its last group's rows while
 * the provider still answers, and their vectors after its last answer; a call of one group writes
 * each row once.
 */
const LAST_GROUP = 44;
/** CHUNKS_PER_GROUP + LAST_GROUP one-chunk documents: two write groups, the second of LAST_GROUP chunks. */
const TWO_GROUPS = Array.from({ length: CHUNKS_PER_GROUP + LAST_GROUP }, (_, i) => ({
  source: `n-${i}.md`,
  text: `Note ${i} of the ledger: ${P[i % P.length]?.slice(0, 60)}`,
}));
const chunkState = async (db: Database) =>
  (await db.query<{ n: number; unembedded: number }>('SELECT count(*)::int AS n, count(*) FILTER (WHERE embedding IS NULL)::int AS unembedded FROM project_alpha.chunks'))[0];

for (const kind of BACKEND_KINDS) {
  describe(`when ingest writes, on ${kind}`, () => {
    const available = backendPerKind(kind, () => fx.cluster);

    it("writes a call's last group while the provider answers the groups before, and its vectors after the last answer", async (ctx) => {
      const db = await available(ctx).fresh();
      const search = await service(db);
      // Four requests for the first group, answered at once; the last group's request held.
      fx.stub.fail({ delayMs: 0 }, { delayMs: 0 }, { delayMs: 0 }, { delayMs: 0 }, { delayMs: 1500 });
      const adding = search.addDocuments({ projectId: 'alpha', documents: TWO_GROUPS, ...LOAD });
      let settled = false;
      void adding.finally(() => (settled = true)).catch(() => undefined);
      // Before the last answer: every row is there, the last group's without its vectors.
      let seen: { n: number; unembedded: number } | undefined;
      while (!settled && !(seen?.n === TWO_GROUPS.length && seen.unembedded === LAST_GROUP)) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        seen = await chunkState(db).catch(() => undefined);
      }
      expect(settled).toBe(false);
      expect(await adding).toMatchObject({ added: TWO_GROUPS.length, embedded: TWO_GROUPS.length });
      expect(await chunkState(db)).toEqual({ n: TWO_GROUPS.length, unembedded: 0 });
      expect(fx.stub.inputs).toBe(TWO_GROUPS.length);
      await search.settled();
    });

    it('a failure after the last group is written leaves those documents stored without vectors, and the same call again embeds only them', async (ctx) => {
      const db = await available(ctx).fresh();
      const search = await service(db);
      // Four requests for the first group, answered; the last group's refused.
      fx.stub.fail({ delayMs: 0 }, { delayMs: 0 }, { delayMs: 0 }, { delayMs: 0 }, { status: 400, body: { error: { message: 'refused by the stub' } } });
      // The message says what is stored: every document, the last group's without their embeddings.
      await expect(search.addDocuments({ projectId: 'alpha', documents: TWO_GROUPS, ...LOAD })).rejects.toThrow(
        new RegExp(
          `refused by the stub.* ${TWO_GROUPS.length} of the call's ${TWO_GROUPS.length} documents are stored as sent \\(${LAST_GROUP} of them without all their embeddings yet: search finds those by text only\\); the same call again stores the rest`,
        ),
      );
      expect(await chunkState(db)).toEqual({ n: TWO_GROUPS.length, unembedded: LAST_GROUP });
      const before = fx.stub.inputs;
      expect(await search.addDocuments({ projectId: 'alpha', documents: TWO_GROUPS, ...LOAD })).toMatchObject({ added: 0, embedded: LAST_GROUP });
      expect(fx.stub.inputs - before).toBe(LAST_GROUP);
      expect(await chunkState(db)).toEqual({ n: TWO_GROUPS.length, unembedded: 0 });
      await search.settled();
    });

    it('writes each row of a call of one group once', async (ctx) => {
      const db = await available(ctx).fresh();
      const { sandbox, search } = await withSandbox(db);
      // The agent's own record of every UPDATE of its chunks.
      await sandbox.execute('alpha', 'CREATE TABLE chunk_updates (n int)', []);
      await sandbox.execute('alpha', "CREATE FUNCTION note_update() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN INSERT INTO chunk_updates VALUES (1); RETURN NULL; END $f$", []);
      await sandbox.execute('alpha', 'CREATE TRIGGER note_update AFTER UPDATE ON chunks FOR EACH ROW EXECUTE FUNCTION note_update()', []);
      await search.addDocuments({ projectId: 'alpha', documents: TWO_GROUPS.slice(0, CHUNKS_PER_GROUP), ...LOAD });
      expect(await chunkState(db)).toEqual({ n: CHUNKS_PER_GROUP, unembedded: 0 });
      expect(await db.query('SELECT count(*)::int AS n FROM project_alpha.chunk_updates')).toEqual([{ n: 0 }]);
      await search.settled();
    });
  });
}
