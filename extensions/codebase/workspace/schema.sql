-- Per-workspace code index: repositories, their files, and embedded chunks of those files.
-- Names are unqualified: the installer runs this inside each workspace's schema.
CREATE TABLE IF NOT EXISTS repositories (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path        text NOT NULL UNIQUE,
    name        text NOT NULL,
    indexed_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS files (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository_id  bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
    path           text NOT NULL,
    language       text,
    content_hash   text NOT NULL,
    size_bytes     integer NOT NULL,
    modified_at    timestamptz,
    deleted_at     timestamptz,
    metadata       jsonb,
    UNIQUE (repository_id, path)
);

CREATE TABLE IF NOT EXISTS chunks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id     bigint NOT NULL REFERENCES files ON DELETE CASCADE,
    content     text NOT NULL,
    start_line  integer NOT NULL,
    end_line    integer NOT NULL,
    embedding   vector(768),
    created_at  timestamptz NOT NULL DEFAULT now(),
    content_hash text,
    -- Full-text search (the search tool): 'english' matches word forms (plurals, verb forms) and
    -- recalled more than 'simple' on our labelled set (docs/search.md).
    content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED,
    CHECK (end_line >= start_line)
);

CREATE INDEX IF NOT EXISTS chunks_file_id_idx ON chunks (file_id);
CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX IF NOT EXISTS chunks_content_tsv_idx ON chunks USING gin (content_tsv);
CREATE INDEX IF NOT EXISTS chunks_content_hash_idx ON chunks (content_hash);
CREATE INDEX IF NOT EXISTS files_active_idx ON files (repository_id) WHERE deleted_at IS NULL;
