-- Ingest's staging table (src/search/chunk-store.ts; schema.sql creates the same for new databases): a write group's chunks arrive here by binary
-- COPY, as the server; the workspace's role copies them into its own tables in its sandbox
-- (INSERT ... SELECT, where its triggers run as itself), and the server deletes them, all in one
-- transaction. No row is ever committed, so no other transaction ever sees one: every role may
-- read the table, and finds it empty but for its own transaction's rows. UNLOGGED: nothing here
-- outlives its transaction. Embeddings as real[] (the vector type is not core's).
CREATE SCHEMA IF NOT EXISTS project_registry_ingest;
REVOKE ALL ON SCHEMA project_registry_ingest FROM PUBLIC;
GRANT USAGE ON SCHEMA project_registry_ingest TO PUBLIC;
CREATE UNLOGGED TABLE IF NOT EXISTS project_registry_ingest.chunks (
    path        text NOT NULL,
    content     text,
    start_line  integer NOT NULL,
    end_line    integer NOT NULL,
    hash        text NOT NULL,
    embedding   real[]
);
REVOKE ALL ON TABLE project_registry_ingest.chunks FROM PUBLIC;
GRANT SELECT ON TABLE project_registry_ingest.chunks TO PUBLIC;
