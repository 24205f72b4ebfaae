-- Where workspaces live when the server spreads them over databases of one PostgreSQL server
-- (--workspaces-per-database; src/databases/placements.ts; schema.sql creates the same for new
-- databases). Read in the home database (DATABASE_URL's) only: a project id without a placement
-- lives there. A placement is kept when its workspace is dropped, so the id comes back to the
-- database whose role history it has; rename-workspace moves it. `workspaces` counts a member's
-- placements, so choosing one reads a row per database, not one per workspace.
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
