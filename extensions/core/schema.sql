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
    workspace_schema_fingerprint text,
    -- The workspace's PostgreSQL role (src/sandbox/sandbox-ddl.ts), recorded when its SQL tools
    -- first make it and read ever after, never recomputed. UNIQUE: a role serves one workspace.
    role_name                    text UNIQUE,
    -- The role owning its snapshots (docs/snapshots.md), recorded when first made, likewise.
    snapshot_role_name           text UNIQUE
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

-- The registry's generation: every transaction that removes or renames a workspace (drop_workspace,
-- repair --forget-missing) bumps it before it commits. A server caching "this workspace exists"
-- reads it (one row) on each cache hit: a changed value means a workspace may be gone, so it
-- looks again instead of answering from its cache. No row yet is generation 0 (the first bump
-- inserts it).
CREATE TABLE IF NOT EXISTS project_registry.registry_generation (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation bigint NOT NULL
);

-- Snapshots of workspaces (snapshot_workspace, and the state a restore replaced): each is a
-- schema the server owns whose name no workspace can have (docs/snapshots.md), with the workspace
-- migration level it was taken at, so that a restore puts the workspace back at that level and
-- the next ensure_workspace or migrate-workspaces upgrades it. Created by migrations/0002 on
-- databases installed before.
CREATE TABLE IF NOT EXISTS project_registry.workspace_snapshots (
    project_id    text COLLATE "C" NOT NULL REFERENCES project_registry.workspace_config ON DELETE CASCADE,
    snapshot      integer NOT NULL CHECK (snapshot > 0),
    schema_name   text NOT NULL UNIQUE,
    label         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    size_bytes    bigint NOT NULL,
    -- 'snapshot' (snapshot_workspace) or 'restore' (the state a restore replaced).
    origin        text NOT NULL CHECK (origin IN ('snapshot', 'restore')),
    workspace_fingerprint        text NOT NULL,
    workspace_schema_fingerprint text,
    -- The workspace's ledger when it was taken: [{"extension_id", "name", "checksum"}, ...].
    migrations    jsonb NOT NULL,
    -- Its embedding_spaces rows (which space wrote each vector column) when it was taken.
    embedding_spaces jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (project_id, snapshot)
);

-- The embedding space (provider, model, dimensions, prefixes) that wrote each workspace vector
-- column filled from text: vectors of two spaces cannot be compared, so a column holds one and is
-- searched with queries of that one (src/embeddings/embedding-spaces.ts). Keyed by project id, so
-- a drop deletes the rows and a rename (an UPDATE of the id) moves them. While `reembed` moves a column to another space,
-- `target` is that space and the reembed_* columns its progress: rows after `reembed_cursor` (in
-- the table's primary-key order) still hold vectors of the old space. Only the server writes
-- here: workspace roles have no privilege on project_registry.
CREATE TABLE IF NOT EXISTS project_registry.embedding_spaces (
    project_id      text COLLATE "C" NOT NULL REFERENCES project_registry.workspace_config ON DELETE CASCADE ON UPDATE CASCADE,
    table_name      text NOT NULL,
    column_name     text NOT NULL,
    text_column     text NOT NULL,
    provider        text NOT NULL,
    model           text NOT NULL,
    dimensions      integer NOT NULL CHECK (dimensions > 0),
    query_prefix    text NOT NULL,
    document_prefix text NOT NULL,
    pinned_at       timestamptz NOT NULL DEFAULT now(),
    target          jsonb,
    reembed_cursor  text,
    reembed_done    bigint NOT NULL DEFAULT 0,
    reembed_total   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, table_name, column_name)
);

-- Vector indexes (HNSW, IVFFlat) an ingest run dropped to load a workspace table without their
-- upkeep, to be created again from `definition` (pg_get_indexdef when dropped) once it is loaded
-- (src/search/index-deferral.ts). The load renews `lease_until` while it runs; a row whose lease
-- has run out was left by a load that stopped (a crash), and the next ingest or search of the
-- workspace, or `repair --restore-indexes`, creates its index again. Only the server writes here.
CREATE TABLE IF NOT EXISTS project_registry.deferred_indexes (
    project_id   text COLLATE "C" NOT NULL REFERENCES project_registry.workspace_config ON DELETE CASCADE ON UPDATE CASCADE,
    table_name   text NOT NULL,
    index_name   text NOT NULL,
    definition   text NOT NULL,
    deferred_at  timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz NOT NULL,
    PRIMARY KEY (project_id, index_name)
);

-- Ingest's staging table (src/search/chunk-store.ts): a write group's chunks arrive here by binary
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

-- Where workspaces live when the server spreads them over databases (migration 0011).
CREATE TABLE IF NOT EXISTS project_registry.workspace_databases (
    database_name text COLLATE "C" PRIMARY KEY,
    workspaces    integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS project_registry.workspace_placements (
    project_id    text COLLATE "C" PRIMARY KEY,
    database_name text COLLATE "C" NOT NULL REFERENCES project_registry.workspace_databases,
    placed_at     timestamptz NOT NULL DEFAULT now()
);

-- On Citus, what a fork of a snapshot changed so that its copy could read the snapshot
-- (src/snapshots/snapshot-reader.ts), recorded in the fork's first, committed transaction: the
-- reader role made for it, the snapshot schema's and the granted relations' OIDs, and the
-- snapshot's SECURITY DEFINER routines held SECURITY INVOKER for it. The copy's transaction
-- marks the row closed and the step after it deletes it; a row closed, or whose lease ran out,
-- was left by a process that stopped in between, and the workspace's next snapshot, fork or
-- restore undoes what it records. Only the server writes here.
CREATE TABLE IF NOT EXISTS project_registry.snapshot_readings (
    reader          text PRIMARY KEY,
    project_id      text COLLATE "C" NOT NULL REFERENCES project_registry.workspace_config ON DELETE CASCADE ON UPDATE CASCADE,
    snapshot_schema oid NOT NULL,
    relations       oid[] NOT NULL,
    definers        oid[] NOT NULL,
    closed          boolean NOT NULL DEFAULT false,
    lease_until     timestamptz NOT NULL
);

-- Finding lagging workspaces is one index scan.
CREATE INDEX IF NOT EXISTS workspace_config_fingerprint_idx
    ON project_registry.workspace_config (workspace_fingerprint);

-- Which of `columns` the table (or view) schema_name.table_name has, or NULL when there is no
-- such relation; validate_columns and every required-column check ask this. PL/pgSQL rather
-- than one SQL query: each lookup is a plain index probe whose plan the session caches, where
-- the single query was planned anew on every call (twice the time of a bare round trip) and,
-- inside the required-column check, priced on the planner's guess of 100 rows per jsonb
-- element, JIT-compiled (300 ms, for work that takes well under one).
CREATE OR REPLACE FUNCTION project_registry.table_columns(schema_name text, table_name text, columns text[])
RETURNS text[] LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  relation oid;
BEGIN
  SELECT c.oid INTO relation
    FROM pg_catalog.pg_class c
   WHERE c.relname = table_columns.table_name AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
     AND c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = table_columns.schema_name);
  IF relation IS NULL THEN
    RETURN NULL;
  END IF;
  RETURN ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = relation AND a.attname = ANY (columns) AND a.attnum > 0 AND NOT a.attisdropped);
END
$$;

-- Which required workspace columns a schema lacks: "table" when the table is missing, else
-- "table.column". `required` is {"table": ["column", ...]}.
CREATE OR REPLACE FUNCTION project_registry.missing_workspace_columns(schema_name text, required jsonb)
RETURNS text[] LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  missing text[] := '{}';
  required_table record;
  wanted text[];
  present text[];
BEGIN
  FOR required_table IN SELECT key, value FROM jsonb_each(required) LOOP
    wanted := ARRAY(SELECT jsonb_array_elements_text(required_table.value));
    present := project_registry.table_columns(schema_name, required_table.key, wanted);
    IF present IS NULL THEN
      missing := missing || required_table.key;
    ELSE
      missing := missing || ARRAY(SELECT required_table.key || '.' || c FROM unnest(wanted) c WHERE c <> ALL (present));
    END IF;
  END LOOP;
  RETURN missing;
END
$$;

-- Takes a workspace's lock, to the end of the transaction, waiting at most timeout_ms: on
-- timeout it raises PW002 with the holders as a JSON array in DETAIL (whoever waits says who
-- to wait for). lock_timeout bounds the advisory lock like any other and is put back at once,
-- so it bounds nothing of the DDL that follows. Every provisioning path and the SQL tools'
-- principal repair take it here.
CREATE OR REPLACE FUNCTION project_registry.lock_workspace(project_id text, lock_class integer, timeout_ms integer)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  previous text := current_setting('lock_timeout');
BEGIN
  PERFORM set_config('lock_timeout', timeout_ms || 'ms', true);
  BEGIN
    PERFORM pg_advisory_xact_lock(lock_class, hashtext(lock_workspace.project_id));
  EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'workspace "%" stayed locked for % ms', lock_workspace.project_id, timeout_ms
      USING ERRCODE = 'PW002', DETAIL = (
        SELECT coalesce(json_agg(json_build_object(
                 'pid', a.pid, 'application_name', a.application_name, 'client_addr', a.client_addr::text, 'state', a.state,
                 'held_seconds', round(extract(epoch FROM clock_timestamp() - a.xact_start))::int)), '[]')::text
          FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
           AND l.classid = lock_class::oid AND l.objid = hashtext(lock_workspace.project_id)::oid);
  END;
  PERFORM set_config('lock_timeout', previous, true);
END
$$;

-- Registers a workspace whose script has just run, in the caller's transaction under its lock:
-- checks the required columns (raising PW001 with the missing ones as a JSON array in DETAIL,
-- which rolls everything back), then writes or re-fingerprints the registry row and appends
-- the ledger rows; `fresh` (a schema re-created after it was dropped) first forgets the ledger
-- rows of the schema that is gone. Returns the registry row's creation time.
CREATE OR REPLACE FUNCTION project_registry.register_workspace(
    project_id text, schema_name text, fingerprint text, schema_fingerprint text,
    extension_ids text[], names text[], checksums text[], required jsonb, fresh boolean)
RETURNS timestamptz LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  missing text[] := project_registry.missing_workspace_columns(register_workspace.schema_name, required);
  registered timestamptz;
BEGIN
  IF cardinality(missing) > 0 THEN
    RAISE EXCEPTION 'required workspace columns missing in %', register_workspace.schema_name
      USING ERRCODE = 'PW001', DETAIL = to_json(missing)::text;
  END IF;
  IF fresh THEN
    DELETE FROM project_registry.workspace_migrations m WHERE m.project_id = register_workspace.project_id;
  END IF;
  INSERT INTO project_registry.workspace_config AS w (project_id, schema_name, workspace_fingerprint, workspace_schema_fingerprint)
  VALUES (register_workspace.project_id, register_workspace.schema_name, fingerprint, schema_fingerprint)
  ON CONFLICT ON CONSTRAINT workspace_config_pkey DO UPDATE
    SET workspace_fingerprint = excluded.workspace_fingerprint,
        workspace_schema_fingerprint = excluded.workspace_schema_fingerprint
  RETURNING w.created_at INTO registered;
  INSERT INTO project_registry.workspace_migrations (project_id, extension_id, name, checksum)
  SELECT register_workspace.project_id, * FROM unnest(extension_ids, names, checksums);
  RETURN registered;
END
$$;

-- What the server writes on a workspace schema it made (COMMENT ON SCHEMA), and nobody else
-- does: only a schema's owner may comment on it, the server owns the workspace schemas, and
-- agents can create no schema. A schema named like a workspace without it (an application's own
-- project_billing, say) is never taken over by ensure_workspace: only `repair --adopt-orphans`
-- takes one, when told to.
CREATE OR REPLACE FUNCTION project_registry.workspace_marker(project_id text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT 'pg-workspace-mcp workspace ' || project_id
$$;

CREATE OR REPLACE FUNCTION project_registry.mark_workspace_schema(schema_name text, project_id text)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('COMMENT ON SCHEMA %I IS %L', mark_workspace_schema.schema_name, project_registry.workspace_marker(mark_workspace_schema.project_id));
END
$$;

-- Creates a workspace in one round trip (the engine's path for an id it found unregistered):
-- lock_workspace(), then the registered row if a concurrent creator got there first, else the
-- creation script and register_workspace(), the steps the engine otherwise sends one by one
-- (for an upgrade, whose script must run in the workspace's sandbox or, on Citus, a statement
-- at a time). Each statement of a volatile function sees what committed before it, so the
-- lookup after the lock sees the lock's previous holder. SECURITY INVOKER: the script runs
-- with the caller's own privileges, as if the caller had sent it. (Its form before the lock
-- timeout is dropped by migrations/0001.)
CREATE OR REPLACE FUNCTION project_registry.create_workspace(
    project_id text, schema_name text, lock_class integer, lock_timeout_ms integer, fingerprint text,
    schema_fingerprint text, script text, extension_ids text[], names text[], checksums text[], required jsonb)
RETURNS TABLE (created boolean, registered_at timestamptz, registered_fingerprint text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM project_registry.lock_workspace(create_workspace.project_id, lock_class, lock_timeout_ms);
  RETURN QUERY SELECT false, w.created_at, w.workspace_fingerprint
                 FROM project_registry.workspace_config w WHERE w.project_id = create_workspace.project_id;
  IF FOUND THEN
    RETURN;
  END IF;
  -- Placed meanwhile in a member database by a server spreading workspaces (src/databases/
  -- placements.ts places under this same lock): made here too, one id would have two workspaces.
  -- PW003: the engine follows the placements and says to retry. (A member database has none.)
  IF EXISTS (SELECT FROM project_registry.workspace_placements p WHERE p.project_id = create_workspace.project_id) THEN
    RAISE EXCEPTION 'workspace "%" is placed in another database', create_workspace.project_id USING ERRCODE = 'PW003';
  END IF;
  -- A schema of that name without a registry row is not created here: the engine takes it back
  -- (a workspace schema the server made, its registry row lost) with its script run as the
  -- workspace's role, where agent code may be, or refuses it (a schema the server did not make).
  IF EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = create_workspace.schema_name) THEN
    RETURN QUERY SELECT false, NULL::timestamptz, NULL::text;
    RETURN;
  END IF;
  EXECUTE script;
  PERFORM project_registry.mark_workspace_schema(create_workspace.schema_name, create_workspace.project_id);
  -- The script pointed search_path at the new schema; a plan cached under another search_path
  -- is re-planned, so put it back for the statements below.
  PERFORM set_config('search_path', 'pg_catalog, pg_temp', true);
  registered_at := project_registry.register_workspace(create_workspace.project_id, create_workspace.schema_name,
    fingerprint, schema_fingerprint, extension_ids, names, checksums, required, false);
  created := true;
  registered_fingerprint := fingerprint;
  RETURN NEXT;
END
$$;

-- The tables (and views) of one schema, or of one of its relations, as the describe_workspace
-- tool shows them: columns, keys, constraints, indexes and the planner's row estimate, from
-- pg_catalog in one statement. NULL when the schema does not exist; an empty array when the
-- table asked for does not. PL/pgSQL for the same reason as table_columns(): the session caches
-- the plan. reltuples is -1 until the first VACUUM or ANALYZE, which is "unknown", not 0.
CREATE OR REPLACE FUNCTION project_registry.describe_relations(schema_name text, table_name text)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  namespace oid;
  relations oid[];
BEGIN
  SELECT n.oid INTO namespace FROM pg_catalog.pg_namespace n WHERE n.nspname = describe_relations.schema_name;
  IF namespace IS NULL THEN
    RETURN NULL;
  END IF;
  -- One relation by its name and namespace (pg_class's index), all of them by pg_depend's: every
  -- relation depends on its namespace there, where pg_class has no index on the namespace alone
  -- and grows with every workspace.
  IF describe_relations.table_name IS NOT NULL THEN
    relations := ARRAY(SELECT c.oid FROM pg_catalog.pg_class c
                        WHERE c.relname = describe_relations.table_name AND c.relnamespace = namespace);
  ELSE
    relations := ARRAY(SELECT d.objid FROM pg_catalog.pg_depend d
                        WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass AND d.refobjid = namespace
                          AND d.classid = 'pg_catalog.pg_class'::regclass);
  END IF;
  RETURN (
    SELECT coalesce(jsonb_agg(jsonb_build_object(
      'name', c.relname,
      'kind', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                             WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END,
      'row_estimate', CASE WHEN c.relkind IN ('r', 'm') AND c.reltuples >= 0 THEN c.reltuples::bigint END,
      'columns', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'name', a.attname,
                 'type', format_type(a.atttypid, a.atttypmod),
                 'nullable', NOT a.attnotnull,
                 'default', pg_get_expr(d.adbin, d.adrelid),
                 'identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
                 'generated', a.attgenerated = 's') ORDER BY a.attnum), '[]'::jsonb)
          FROM pg_catalog.pg_attribute a
          LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.attgenerated = ''
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
      'primary_key', (
        SELECT jsonb_build_object('name', k.conname, 'columns', (
                 SELECT jsonb_agg(a.attname ORDER BY u.ord) FROM unnest(k.conkey) WITH ORDINALITY u(attnum, ord)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.attnum))
          FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p'),
      'foreign_keys', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'name', k.conname,
                 'columns', (SELECT jsonb_agg(a.attname ORDER BY u.ord) FROM unnest(k.conkey) WITH ORDINALITY u(attnum, ord)
                               JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum),
                 'references_schema', rn.nspname,
                 'references_table', r.relname,
                 'references_columns', (SELECT jsonb_agg(a.attname ORDER BY u.ord) FROM unnest(k.confkey) WITH ORDINALITY u(attnum, ord)
                                          JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.attnum),
                 'on_delete', CASE k.confdeltype WHEN 'a' THEN 'no action' WHEN 'r' THEN 'restrict' WHEN 'c' THEN 'cascade'
                                                 WHEN 'n' THEN 'set null' WHEN 'd' THEN 'set default' END,
                 'on_update', CASE k.confupdtype WHEN 'a' THEN 'no action' WHEN 'r' THEN 'restrict' WHEN 'c' THEN 'cascade'
                                                 WHEN 'n' THEN 'set null' WHEN 'd' THEN 'set default' END) ORDER BY k.conname), '[]'::jsonb)
          FROM pg_catalog.pg_constraint k
          JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
          JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
         WHERE k.conrelid = c.oid AND k.contype = 'f'),
      'other_constraints', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'name', k.conname,
                 'type', CASE k.contype WHEN 'u' THEN 'unique' WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' END,
                 'definition', pg_get_constraintdef(k.oid)) ORDER BY k.conname), '[]'::jsonb)
          FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('u', 'c', 'x')),
      'indexes', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'name', ic.relname,
                 'method', am.amname,
                 'unique', i.indisunique,
                 'primary', i.indisprimary,
                 'valid', i.indisvalid,
                 'definition', pg_get_indexdef(i.indexrelid)) ORDER BY ic.relname), '[]'::jsonb)
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_catalog.pg_am am ON am.oid = ic.relam
         WHERE i.indrelid = c.oid)
    ) ORDER BY c.relname), '[]'::jsonb)
      FROM pg_catalog.pg_class c
     WHERE c.oid = ANY (relations) AND c.relnamespace = namespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  );
END
$$;

-- The SQL tools' sandbox functions, one per workspace, each owned by its workspace's role (see
-- src/sandbox/sandbox-ddl.ts). Nobody else may use or create anything here: a workspace role
-- that cannot even name its function cannot alter it.
CREATE SCHEMA IF NOT EXISTS project_registry_sandbox;
REVOKE ALL ON SCHEMA project_registry_sandbox FROM PUBLIC;

-- The body those functions share, which the server writes (SECURITY INVOKER: it runs as the
-- workspace role whose function calls it). Every role may call it, none may create anything here.
CREATE SCHEMA IF NOT EXISTS project_registry_sandbox_body;
REVOKE ALL ON SCHEMA project_registry_sandbox_body FROM PUBLIC;
GRANT USAGE ON SCHEMA project_registry_sandbox_body TO PUBLIC;

-- Hands every object of a workspace schema to the workspace's role, so that the agent may ALTER
-- and DROP its own tables: tables and views (their indexes, row types and owned sequences
-- follow), other sequences, routines and standalone types (composite ones included). Snapshots
-- use it the other way too: a snapshot's objects go to the role that keeps them. Runs as the
-- server, which created them; objects already owned by the role are left alone. Any other
-- workspace role (pgw_...) loses its privileges on the schema: a role two workspaces shared
-- under the naming of before 2026-12 keeps nothing of the workspace that gets a role of its own.
-- PostgreSQL lets a role hand an object over only as a member of the object's owner and of the new
-- one: the server is a member of those (workspace and snapshot roles, pgw_...) for these
-- statements only, granted and taken back in its caller's transaction. A member of every
-- workspace role for good (as until 2026-12) made each role change anywhere in the cluster cost
-- the server's next check the rebuild of its list of them all, quadratic before PostgreSQL 17
-- (docs/benchmarks.md, Fleet scale).
CREATE OR REPLACE FUNCTION project_registry_sandbox.adopt_objects(schema_name text, role_name text)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ns oid := (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = adopt_objects.schema_name);
  owner oid := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = adopt_objects.role_name);
  other name;
  kinds text[];
  names text[];
  owners oid[];
  grantees name[];
BEGIN
  FOR other IN
    SELECT DISTINCT r.rolname FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
     WHERE n.oid = ns AND a.grantee <> owner AND a.grantee <> n.nspowner AND r.rolname LIKE 'pgw\_%'
  LOOP
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', adopt_objects.schema_name, other);
  END LOOP;
  -- The schema's objects found by pg_depend's index (each depends on its namespace there):
  -- pg_class, pg_proc and pg_type have no index on the namespace alone and grow with every
  -- workspace. Indexes, row types and owned sequences follow their table. A standalone
  -- composite type's namespace dependency is its pg_type row's, not its pg_class row's.
  SELECT pg_catalog.array_agg(o.kind), pg_catalog.array_agg(o.name), pg_catalog.array_agg(o.was) INTO kinds, names, owners FROM (
    WITH members (catalog, member) AS MATERIALIZED (
      SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
       WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass AND d.refobjid = ns)
    SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
           format('%I.%I', adopt_objects.schema_name, c.relname) AS name, c.relowner AS was
      FROM pg_catalog.pg_class c
     WHERE c.oid = ANY (ARRAY(SELECT member FROM members WHERE catalog = 'pg_catalog.pg_class'::regclass))
       AND c.relnamespace = ns AND c.relowner <> owner AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                          AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT 'ROUTINE', p.oid::regprocedure::text, p.proowner FROM pg_catalog.pg_proc p
     WHERE p.oid = ANY (ARRAY(SELECT member FROM members WHERE catalog = 'pg_catalog.pg_proc'::regclass))
       AND p.pronamespace = ns AND p.proowner <> owner
    UNION ALL
    SELECT 'TYPE', format('%I.%I', adopt_objects.schema_name, t.typname), t.typowner FROM pg_catalog.pg_type t
     WHERE t.oid = ANY (ARRAY(SELECT member FROM members WHERE catalog = 'pg_catalog.pg_type'::regclass))
       AND t.typnamespace = ns AND t.typowner <> owner AND t.typtype IN ('e', 'd', 'r', 'c')) o;
  IF kinds IS NULL THEN
    RETURN;
  END IF;
  SELECT pg_catalog.array_agg(r.rolname) INTO grantees FROM pg_catalog.pg_roles r
   WHERE (r.oid = owner OR r.oid = ANY (owners)) AND r.rolname <> current_user AND r.rolname LIKE 'pgw\_%';
  FOREACH other IN ARRAY COALESCE(grantees, '{}') LOOP
    EXECUTE format('GRANT %I TO CURRENT_USER', other);
  END LOOP;
  FOR i IN 1 .. pg_catalog.array_length(kinds, 1) LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I', kinds[i], names[i], adopt_objects.role_name);
  END LOOP;
  FOREACH other IN ARRAY COALESCE(grantees, '{}') LOOP
    EXECUTE format('REVOKE %I FROM CURRENT_USER', other);
  END LOOP;
END
$$;

-- Which workspace's agent code a session may run next (src/db/session-claims.ts). A custom
-- setting (`SET x.y`, `set_config('x.y', ...)`) leaves its name in the session as a placeholder
-- that PostgreSQL can neither list nor remove: a later workspace on the session reads
-- current_setting('x.y', true) as '' instead of NULL. So each call that runs agent code first
-- claims the session for its workspace, named by its schema's OID (a dropped and re-created
-- workspace gets a new one), or 1 for a workspace without one; a refused claim (PW030) runs
-- nothing, and the server takes a new session and calls again.
--
-- On a pooled PostgreSQL connection the server knows which workspace's code it ran (`ran`, NULL
-- for none), but behind a pooler in transaction mode a connection's transactions land on any of
-- the pooler's backends: so the backend records it too, in placeholders of its own (which, like
-- the agent's, outlive a rollback), named with a secret the agent cannot read (claim_marker), so
-- that it cannot forge them. A backend that ran one workspace's agent code ends itself rather
-- than run another's (57P01 to the server, which calls again on another). A claim for a project
-- id with no schema yet (1: its creation, which runs no agent code) marks nothing.
CREATE TABLE IF NOT EXISTS project_registry.claim_marker (secret text NOT NULL);
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM project_registry.claim_marker) THEN
    INSERT INTO project_registry.claim_marker (secret)
    VALUES (pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.gen_random_uuid()::pg_catalog.text, 'UTF8')), 'hex'), 32));
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION project_registry.claim_connection(project_id text, ran oid)
RETURNS oid LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  workspace oid := coalesce((SELECT n.oid FROM project_registry.workspace_config c JOIN pg_catalog.pg_namespace n ON n.nspname = c.schema_name
                              WHERE c.project_id = claim_connection.project_id), 1);
  marker text := 'pgw_' || (SELECT m.secret FROM project_registry.claim_marker m);
BEGIN
  IF ran IS NOT NULL AND ran NOT IN (1, workspace) THEN
    RAISE EXCEPTION 'this connection ran the agent code of another workspace' USING ERRCODE = 'PW030';
  END IF;
  IF workspace = 1 THEN
    RETURN workspace;
  END IF;
  IF current_setting(marker || '.any', true) IS NULL THEN
    -- Local values, gone with this function's settings; the names stay with the backend.
    PERFORM set_config(marker || '.any', 'x', true), set_config(marker || '.w' || workspace, 'x', true);
  ELSIF current_setting(marker || '.w' || workspace, true) IS NULL THEN
    BEGIN
      PERFORM pg_terminate_backend(pg_backend_pid());
    EXCEPTION WHEN insufficient_privilege THEN
      NULL; -- a role set by ALTER ROLE ... SET role that is no member of the login role: refused, not ended
    END;
    RAISE EXCEPTION 'this backend ran the agent code of another workspace' USING ERRCODE = 'PW030';
  END IF;
  RETURN workspace;
END
$$;
REVOKE ALL ON FUNCTION project_registry.claim_connection(text, oid) FROM PUBLIC;

-- PGlite has one session, so it is watched instead: a new placeholder makes the GUC memory
-- contexts larger (used bytes, which RESET ALL and changed values leave as they were), and the
-- growth since the last claim is the last claiming workspace's (the server sets no placeholder),
-- so the size is read only when the claiming workspace changes.
-- The record is kept in sequences, which a rollback (every `query` call ends in one) does not
-- undo and no workspace role may read or set; it describes the session started at
-- claim_session_start. `held`: 0 none, 1 several or unknown, else the one workspace whose
-- placeholders the session holds. The libraries of extensions are loaded when a session is
-- first claimed, so that the settings they define (hnsw.ef_search) are not taken for an agent's.
-- NULL project_id: the server's own run of table code (maintenance), whoever's it is.
CREATE SEQUENCE IF NOT EXISTS project_registry.claim_session_start AS bigint MINVALUE 0 START 0;
CREATE SEQUENCE IF NOT EXISTS project_registry.claim_guc_bytes AS bigint MINVALUE 0 START 0;
CREATE SEQUENCE IF NOT EXISTS project_registry.claim_last_workspace AS bigint MINVALUE 0 START 0;
CREATE SEQUENCE IF NOT EXISTS project_registry.claim_held AS bigint MINVALUE 0 START 0;

CREATE OR REPLACE FUNCTION project_registry.claim_session(project_id text)
RETURNS oid LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  workspace bigint := coalesce((SELECT pg_catalog.int8(n.oid) FROM project_registry.workspace_config c JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) c.schema_name
                                 WHERE c.project_id OPERATOR(pg_catalog.=) claim_session.project_id), 1);
  session bigint := pg_catalog.int8(pg_catalog.date_part('epoch', pg_catalog.pg_postmaster_start_time()) OPERATOR(pg_catalog.*) 1000000);
  library text;
  bytes bigint;
  before bigint;
  last bigint;
  held bigint;
  culprit bigint;
BEGIN
  IF (SELECT s.last_value FROM project_registry.claim_session_start s) OPERATOR(pg_catalog.<>) session THEN
    FOR library IN SELECT DISTINCT p.probin FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_depend d
                       ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
                    WHERE p.prolang OPERATOR(pg_catalog.=) 13 AND p.probin IS NOT NULL LOOP
      BEGIN
        EXECUTE pg_catalog.format('LOAD %L', library);
      EXCEPTION WHEN insufficient_privilege THEN
        NULL; -- a server that is no superuser loads none: a library loaded later may cost a new session once
      END;
    END LOOP;
    before := NULL;
    last := 0;
    held := 0;
  ELSE
    last := (SELECT s.last_value FROM project_registry.claim_last_workspace s);
    -- Since its last claim only this workspace's code ran: any growth is its own, seen when another claims.
    IF last OPERATOR(pg_catalog.=) workspace THEN
      RETURN pg_catalog.oid(workspace);
    END IF;
    before := (SELECT s.last_value FROM project_registry.claim_guc_bytes s);
    held := (SELECT s.last_value FROM project_registry.claim_held s);
  END IF;
  bytes := (SELECT pg_catalog.sum(m.used_bytes) FROM pg_catalog.pg_get_backend_memory_contexts() m
             WHERE m.name OPERATOR(pg_catalog.=) ANY (ARRAY['GUCMemoryContext', 'GUC hash table']));
  IF bytes OPERATOR(pg_catalog.>) before THEN
    culprit := CASE WHEN last OPERATOR(pg_catalog.=) 0 THEN 1 ELSE last END;
    held := CASE WHEN held OPERATOR(pg_catalog.=) 0 OR held OPERATOR(pg_catalog.=) culprit THEN culprit ELSE 1 END;
  END IF;
  IF held OPERATOR(pg_catalog.<>) 0 AND held OPERATOR(pg_catalog.<>) workspace THEN
    PERFORM pg_catalog.setval('project_registry.claim_held', held);
    RAISE EXCEPTION 'this session holds custom settings of another workspace' USING ERRCODE = 'PW030';
  END IF;
  IF before IS NULL THEN
    PERFORM pg_catalog.setval('project_registry.claim_session_start', session);
  END IF;
  IF before IS DISTINCT FROM bytes THEN
    PERFORM pg_catalog.setval('project_registry.claim_guc_bytes', bytes);
  END IF;
  IF last OPERATOR(pg_catalog.<>) workspace THEN
    PERFORM pg_catalog.setval('project_registry.claim_last_workspace', workspace);
  END IF;
  IF held OPERATOR(pg_catalog.<>) (SELECT s.last_value FROM project_registry.claim_held s) THEN
    PERFORM pg_catalog.setval('project_registry.claim_held', held);
  END IF;
  RETURN pg_catalog.oid(workspace);
END
$$;
REVOKE ALL ON FUNCTION project_registry.claim_session(text) FROM PUBLIC;
