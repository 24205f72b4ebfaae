-- Vector indexes an ingest run deferred (docs/search.md): the same table schema.sql creates, for
-- databases installed before it.
CREATE TABLE IF NOT EXISTS project_registry.deferred_indexes (
    project_id   text COLLATE "C" NOT NULL REFERENCES project_registry.workspace_config ON DELETE CASCADE ON UPDATE CASCADE,
    table_name   text NOT NULL,
    index_name   text NOT NULL,
    definition   text NOT NULL,
    deferred_at  timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz NOT NULL,
    PRIMARY KEY (project_id, index_name)
);
