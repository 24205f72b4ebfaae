import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import type { Database } from '../src/db/database.js';
import type { EmbeddingSpace } from '../src/embeddings/embedder.js';
import { assertSearchable, EmbeddingSpaceError, pin } from '../src/embeddings/embedding-spaces.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { readPin } from '../src/registry/embedding-space-sql.js';
import { WorkspaceNotFoundError } from '../src/workspaces/workspace-errors.js';
import { BACKEND_KINDS, backendPerKind } from './support/backend-per-kind.js';
import { install, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 120_000);
afterAll(async () => cluster?.destroy());

let plan: InstallPlan;
beforeAll(async () => {
  const dir = await writeExtension(await tempDir(), { id: 'docs', requires: ['vector'] }, {
    'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS docs (id bigint PRIMARY KEY, body text, embedding vector(8));',
  });
  plan = await planFor([dir], ['codebase']);
});

const NOMIC: EmbeddingSpace = { provider: 'ollama', model: 'nomic-embed-text', dimensions: 768, queryPrefix: 'search_query: ', documentPrefix: 'search_document: ' };
const OPENAI: EmbeddingSpace = { provider: 'openai', model: 'text-embedding-3-small', dimensions: 768, queryPrefix: '', documentPrefix: '' };
const DOCS = { table: 'docs', column: 'embedding', textColumn: 'body' };

async function services(db: Database) {
  const report = await install(db, plan);
  const { workspaces: manager, sandbox: sql } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, silentLogger);
  return { manager, sql };
}

for (const kind of BACKEND_KINDS) {
  describe(`pinned embedding spaces on ${kind}`, () => {
    const available = backendPerKind(kind, () => cluster);

    it('pins a column to the space of its first write, and refuses writes and searches of another, naming both', async (ctx) => {
      const db = await available(ctx).fresh();
      const { manager } = await services(db);
      await manager.ensure('alpha');
      const column = { projectId: 'alpha', ...DOCS };

      // Never written from text: searchable with any space.
      await assertSearchable(db, column, OPENAI);
      await pin(db, column, NOMIC);
      await pin(db, column, { ...NOMIC });
      await assertSearchable(db, column, NOMIC);
      expect(await readPin(db, column)).toMatchObject({ text_column: 'body', provider: 'ollama', model: 'nomic-embed-text', dimensions: 768, target: null });

      const both = /holds vectors of ollama "nomic-embed-text" \(768 dimensions, query prefix "search_query: ", document prefix "search_document: "\), but this server embeds (queries )?with openai "text-embedding-3-small" \(768 dimensions\)/;
      await expect(pin(db, column, OPENAI)).rejects.toThrow(EmbeddingSpaceError);
      await expect(pin(db, column, OPENAI)).rejects.toThrow(both);
      await expect(pin(db, column, OPENAI)).rejects.toThrow('pg-workspace-mcp reembed --project alpha');
      await expect(assertSearchable(db, column, OPENAI)).rejects.toThrow(both);
      // A prefix alone makes another space.
      await expect(assertSearchable(db, column, { ...NOMIC, queryPrefix: '' })).rejects.toThrow(EmbeddingSpaceError);
      // The refused write changed nothing.
      expect(await readPin(db, column)).toMatchObject({ provider: 'ollama', model: 'nomic-embed-text' });
      // Columns are pinned one by one.
      await pin(db, { projectId: 'alpha', table: 'docs', column: 'other', textColumn: 'body' }, OPENAI);
    });

    it('refuses a workspace that does not exist; a drop forgets its pins, a rename takes them along', async (ctx) => {
      const db = await available(ctx).fresh();
      const { manager } = await services(db);
      await expect(pin(db, { projectId: 'ghost', ...DOCS }, NOMIC)).rejects.toThrow(WorkspaceNotFoundError);

      await manager.ensure('old-name');
      await pin(db, { projectId: 'old-name', ...DOCS }, NOMIC);
      await manager.rename('old-name', 'new-name');
      expect(await readPin(db, { projectId: 'old-name', ...DOCS })).toBeUndefined();
      expect(await readPin(db, { projectId: 'new-name', ...DOCS })).toMatchObject({ model: 'nomic-embed-text' });

      await manager.drop('new-name');
      expect(await readPin(db, { projectId: 'new-name', ...DOCS })).toBeUndefined();
      await manager.ensure('new-name');
      // A workspace made again starts unpinned.
      await pin(db, { projectId: 'new-name', ...DOCS }, OPENAI);
    });

    it("is the server's alone: an agent's SQL can neither read nor change the pins", async (ctx) => {
      const db = await available(ctx).fresh();
      const { manager, sql } = await services(db);
      await manager.ensure('alpha');
      await pin(db, { projectId: 'alpha', ...DOCS }, NOMIC);
      await expect(sql.execute('alpha', "UPDATE project_registry.embedding_spaces SET model = 'forged'", [])).rejects.toThrow(/permission denied/);
      await expect(
        sql.execute('alpha', "INSERT INTO project_registry.embedding_spaces (project_id, table_name, column_name, text_column, provider, model, dimensions, query_prefix, document_prefix) VALUES ('alpha', 'docs', 'x', 'body', 'openai', 'm', 8, '', '')", []),
      ).rejects.toThrow(/permission denied/);
      await expect(sql.query('alpha', 'SELECT * FROM project_registry.embedding_spaces', [])).rejects.toThrow(/permission denied/);
      expect(await readPin(db, { projectId: 'alpha', ...DOCS })).toMatchObject({ model: 'nomic-embed-text' });
    });
  });
}
