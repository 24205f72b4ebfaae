-- Snapshots (docs/snapshots.md): the same table schema.sql creates, for databases installed before it.
CREATE TABLE IF NOT EXISTS project_registry.workspace_snapshots (
    project_id    text COLLATE "C" NOT NULL REFERENCES project_registry.workspace_config ON DELETE CASCADE,
    snapshot      integer NOT NULL CHECK (snapshot > 0),
    schema_name   text NOT NULL UNIQUE,
    label         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    size_bytes    bigint NOT NULL,
    origin        text NOT NULL CHECK (origin IN ('snapshot', 'restore')),
    workspace_fingerprint        text NOT NULL,
    workspace_schema_fingerprint text,
    migrations    jsonb NOT NULL,
    -- Its embedding_spaces rows (which space wrote each vector column) when it was taken.
    embedding_spaces jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (project_id, snapshot)
);
