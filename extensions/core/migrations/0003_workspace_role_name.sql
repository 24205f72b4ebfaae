-- Each workspace's role is recorded in its registry row, UNIQUE (schema.sql). Workspaces made
-- before have a role named by the mapping of then, which the server computed on every use: a
-- long id's name was 41 characters, "_" and 32 bits of sha256, a shape a crafted 50-character id
-- could spell out, so two workspaces could share one role. Their existing role is recorded here,
-- computed as then, where it exists and no other workspace maps to it; a role two workspaces
-- mapped to stays with the one whose id it spells out (the other gets a role of its own, with
-- its objects, on its next SQL call).
ALTER TABLE project_registry.workspace_config ADD COLUMN IF NOT EXISTS role_name text UNIQUE;

WITH legacy AS (
  SELECT w.project_id,
         CASE WHEN octet_length(t.prefix || t.id) <= 63 THEN t.prefix || t.id
              ELSE t.prefix || left(t.id, 63 - octet_length(t.prefix) - 9) || '_'
                   || left(encode(sha256(convert_to(w.project_id, 'UTF8')), 'hex'), 8) END AS role_name,
         octet_length(t.prefix || t.id) <= 63 AS spelled_out
    FROM project_registry.workspace_config w,
         LATERAL (SELECT 'pgw_' || left(encode(sha256(convert_to(current_database(), 'UTF8')), 'hex'), 8) || '_' AS prefix,
                         replace(w.project_id, '-', '_') AS id) t
   WHERE w.role_name IS NULL
), claimed AS (
  SELECT DISTINCT ON (l.role_name) l.project_id, l.role_name
    FROM legacy l
   WHERE EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = l.role_name)
     AND NOT EXISTS (SELECT FROM project_registry.workspace_config o WHERE o.role_name = l.role_name)
   ORDER BY l.role_name, l.spelled_out DESC
)
UPDATE project_registry.workspace_config w SET role_name = c.role_name
  FROM claimed c WHERE w.project_id = c.project_id;
