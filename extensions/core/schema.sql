-- The workspace registry and the installer's own bookkeeping. Every statement is idempotent:
-- the installer re-runs schema files whenever the set of enabled extensions changes.
CREATE SCHEMA IF NOT EXISTS project_registry;

-- project_id is COLLATE "C" so that keyset pages and prefix ranges are plain byte-order index
-- scans whatever the database's default collation is.
CREATE TABLE IF NOT EXISTS project_registry.workspace_config (
    project_id            text COLLATE "C" PRIMARY KEY,
    schema_name           text NOT NULL UNIQUE,
    created_at            timestamptz NOT NULL DEFAULT now(),
    metadata              jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Identity of the workspace DDL and migrations this schema holds (see workspace_migrations),
    -- and of its schema files alone (unchanged: an upgrade only runs the new migrations).
    workspace_fingerprint        text NOT NULL,
    workspace_schema_fingerprint text
);

-- Migration ledger of the global install: one row per applied migration, written in the
-- migration's own transaction.
CREATE TABLE IF NOT EXISTS project_registry.schema_migrations (
    extension_id text NOT NULL,
    name         text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (extension_id, name)
);

-- Workspace migrations applied to each workspace.
CREATE TABLE IF NOT EXISTS project_registry.workspace_migrations (
    project_id   text COLLATE "C" NOT NULL REFERENCES project_registry.workspace_config ON DELETE CASCADE,
    extension_id text NOT NULL,
    name         text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, extension_id, name)
);

-- What the last completed install applied; a matching fingerprint lets a warm boot skip all DDL.
CREATE TABLE IF NOT EXISTS project_registry.install_state (
    singleton             boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    fingerprint           text NOT NULL,
    search_path_schemas   text[] NOT NULL,
    extensions            jsonb NOT NULL,
    installed_at          timestamptz NOT NULL DEFAULT now()
);

-- Finding lagging workspaces is one index scan.
CREATE INDEX IF NOT EXISTS workspace_config_fingerprint_idx
    ON project_registry.workspace_config (workspace_fingerprint);
