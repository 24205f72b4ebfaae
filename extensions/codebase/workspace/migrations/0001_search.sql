-- The search and ingest tools (docs/search.md): a document's metadata, each chunk's content hash
-- (ingest skips chunks already stored) and a generated tsvector for full-text search. Its GIN
-- index and the hash index are in workspace/schema.sql, which runs after the migrations.
ALTER TABLE files ADD COLUMN IF NOT EXISTS metadata jsonb;
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS content_hash text;
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS content_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED;
