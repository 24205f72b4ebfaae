import { describe, expect, it } from 'vitest';
import { IndexDefinitionError, recreateStatement } from '../../src/search/index-definition.js';

const AT = { schemaName: 'project_alpha', tableName: 'chunks', indexName: 'chunks_embedding_hnsw_idx' };

describe('recreateStatement (a deferred index definition, checked and rewritten)', () => {
  it("rewrites pg_get_indexdef's text with every name quoted, in the workspace's schema now", async () => {
    expect(await recreateStatement('CREATE INDEX chunks_embedding_hnsw_idx ON project_old.chunks USING hnsw (embedding vector_cosine_ops)', AT)).toBe(
      'CREATE INDEX IF NOT EXISTS "chunks_embedding_hnsw_idx" ON "project_alpha"."chunks" USING "hnsw" ("embedding" "vector_cosine_ops")',
    );
    expect(
      await recreateStatement(
        `CREATE INDEX chunks_embedding_hnsw_idx ON project_alpha.chunks USING ivfflat (embedding extensions.vector_l2_ops) WITH (lists='100')`,
        AT,
      ),
    ).toBe('CREATE INDEX IF NOT EXISTS "chunks_embedding_hnsw_idx" ON "project_alpha"."chunks" USING "ivfflat" ("embedding" "extensions"."vector_l2_ops") WITH ("lists" = \'100\')');
    // A storage parameter's value stays a literal, whatever it holds.
    expect(await recreateStatement(`CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding) WITH (m = 'x''); DROP TABLE t; --')`, AT)).toBe(
      `CREATE INDEX IF NOT EXISTS "chunks_embedding_hnsw_idx" ON "project_alpha"."chunks" USING "hnsw" ("embedding") WITH ("m" = 'x''); DROP TABLE t; --')`,
    );
  });

  it('refuses anything but a plain vector index of that name on that table', async () => {
    const refused = [
      'DROP TABLE chunks',
      'CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding); DROP TABLE chunks',
      'CREATE INDEX other_idx ON chunks USING hnsw (embedding)',
      'CREATE INDEX chunks_embedding_hnsw_idx ON files USING hnsw (embedding)',
      'CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING btree (embedding)',
      'CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw ((steal(embedding)))',
      'CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding) WHERE steal(id)',
      'CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding) INCLUDE (content)',
      'CREATE UNIQUE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding)',
      'CREATE INDEX chunks_embedding_hnsw_idx ON ONLY chunks USING hnsw (embedding)',
      'CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding COLLATE "C")',
      'CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding DESC)',
      'CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding) WITH (toast.m = 1)',
      'not sql at all',
    ];
    for (const definition of refused) await expect(recreateStatement(definition, AT), definition).rejects.toThrow(IndexDefinitionError);
  });
});
