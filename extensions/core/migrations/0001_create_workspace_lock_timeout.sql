-- create_workspace() gained its lock_timeout_ms parameter (schema.sql): the form without it
-- would stay beside the new one as an overload, so it goes.
DROP FUNCTION IF EXISTS project_registry.create_workspace(text, text, integer, text, text, text, text[], text[], text[], jsonb);
