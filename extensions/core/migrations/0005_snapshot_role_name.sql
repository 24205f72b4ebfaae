-- Each workspace's snapshot role (docs/snapshots.md) is recorded in its registry row when it is
-- made, as its workspace role is (0003): a name computed from the database's name on every use
-- was another role once the database was renamed, so a restore handed the state it kept to a new
-- role, and a drop left the snapshots' role behind. UNIQUE: a snapshot role serves one workspace.
-- Workspaces whose snapshot role exists already record it on their next snapshot or restore.
ALTER TABLE project_registry.workspace_config ADD COLUMN IF NOT EXISTS snapshot_role_name text UNIQUE;
