-- What a Citus fork of a snapshot changed to read it (src/snapshots/snapshot-reader.ts): the same
-- table schema.sql creates, for databases installed before it.
CREATE TABLE IF NOT EXISTS project_registry.snapshot_readings (
    reader          text PRIMARY KEY,
    project_id      text COLLATE "C" NOT NULL REFERENCES project_registry.workspace_config ON DELETE CASCADE ON UPDATE CASCADE,
    snapshot_schema oid NOT NULL,
    relations       oid[] NOT NULL,
    definers        oid[] NOT NULL,
    closed          boolean NOT NULL DEFAULT false,
    lease_until     timestamptz NOT NULL
);
