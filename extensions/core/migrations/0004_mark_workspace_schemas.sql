-- Workspace schemas carry a marker the server writes when it makes one (schema.sql,
-- workspace_marker()): ensure_workspace takes back only a marked schema whose registry row was
-- lost, never a schema someone else made under a workspace's name. The schemas of the workspaces
-- registered before the marker existed are the server's: they get it here (the text is
-- workspace_marker()'s, which does not exist yet when migrations run). Only the owner may comment:
-- a schema the server cannot act as the owner of is left unmarked, as it would be refused anyway.
DO $$
DECLARE
  w record;
BEGIN
  FOR w IN SELECT c.project_id, c.schema_name FROM project_registry.workspace_config c
            WHERE EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = c.schema_name AND pg_catalog.pg_has_role(n.nspowner, 'USAGE'))
  LOOP
    EXECUTE format('COMMENT ON SCHEMA %I IS %L', w.schema_name, 'pg-workspace-mcp workspace ' || w.project_id);
  END LOOP;
END
$$;
