import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTALL_LOCK_KEY } from '../src/installer/install-lock.js';
import { WORKSPACE_LOCK_CLASS } from '../src/registry/workspace-lock.js';
import { SESSION, startIsolationServer, type IsolationServer } from './support/isolation-snapshot.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { EMBEDDED_ONLY } from './support/test-layer.js';

/*
 * The escape suite: an agent holding workspace "alpha" tries, through the query and execute
 * tools, to read or change anything outside it. Each attempt must fail (or, for the bounded
 * cases, stay within its bound), and afterwards a superuser's snapshot of everything outside
 * alpha (registry and ledgers, workspace beta's rows, roles and memberships, role settings,
 * objects, functions and their flags, schemas and their privileges) must be unchanged, and the
 * server's session must be clean (no prepared statement, cursor, LISTEN, advisory lock, temp
 * object, changed setting).
 */

const TIMEOUT_MS = 1500;
/**
 * PGlite's statement timeout for the attacks that run into it: the rest of the pglite half needs
 * seconds (the 10 MB error), which each of these would wait out.
 */
const QUICK_TIMEOUT_MS = 500;

type Step = { tool: 'query' | 'execute'; sql: string; params?: unknown[] };
interface Attack {
  name: string;
  /** Runs first, as a superuser: objects outside the workspaces that the attack aims at (idempotent). */
  admin?: string[];
  /** Runs first and must succeed: objects inside alpha that the attack then uses. */
  setup?: Step[];
  attack: Step & { max_rows?: number };
  /** The refusal, or 'bounded' when the call may succeed but must stay within its bound. */
  expect: RegExp | 'bounded';
  check?: (result: { isError: boolean; text: string; data: Record<string, unknown> }) => void;
  postgresOnly?: boolean;
  /** Refused at the statement timeout: on PGlite it runs on a server whose timeout is short (QUICK_TIMEOUT_MS). */
  timesOut?: boolean;
}

const PARSER = /execute does not run|query runs read-only|exactly one SQL statement/;
const fn = (name: string, body: string): Step => ({
  tool: 'execute',
  sql: `CREATE FUNCTION ${name}() RETURNS text LANGUAGE plpgsql AS $f$ BEGIN ${body}; RETURN 'done'; END $f$`,
});
const call = (name: string): Step['sql'] => `SELECT ${name}()`;

const ATTACKS: Attack[] = [
  // Another workspace's tables.
  { name: 'read beta qualified', attack: { tool: 'query', sql: 'SELECT * FROM project_beta.notes' }, expect: /permission denied for schema project_beta/ },
  { name: 'write beta qualified', attack: { tool: 'execute', sql: "INSERT INTO project_beta.notes (body) VALUES ('x')" }, expect: /permission denied/ },
  { name: 'update beta', attack: { tool: 'execute', sql: "UPDATE project_beta.notes SET body = 'pwned'" }, expect: /permission denied/ },
  { name: 'delete beta', attack: { tool: 'execute', sql: 'DELETE FROM project_beta.notes' }, expect: /permission denied/ },
  {
    name: 'search_path pointed at beta',
    setup: [fn('esc_path', "PERFORM set_config('search_path', 'project_beta', true); EXECUTE 'SELECT count(*) FROM notes'")],
    attack: { tool: 'query', sql: call('esc_path') },
    expect: /permission denied|does not exist/,
  },
  { name: 'view over beta', attack: { tool: 'execute', sql: 'CREATE VIEW peek AS SELECT * FROM project_beta.notes' }, expect: /permission denied/ },
  {
    name: 'function reading beta',
    setup: [fn('peek_beta', 'RETURN (SELECT string_agg(body, \',\') FROM project_beta.notes)')],
    attack: { tool: 'query', sql: call('peek_beta') },
    expect: /permission denied/,
  },
  {
    name: 'SECURITY DEFINER function reading beta',
    setup: [{ tool: 'execute', sql: "CREATE FUNCTION peek_definer() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER AS $f$ BEGIN RETURN (SELECT count(*) FROM project_beta.notes); END $f$" }],
    attack: { tool: 'query', sql: 'SELECT peek_definer()' },
    expect: /permission denied/,
  },
  // The registry, the ledgers, the catalogs' secrets.
  { name: 'read the registry', attack: { tool: 'query', sql: 'SELECT * FROM project_registry.workspace_config' }, expect: /permission denied/ },
  { name: 'delete the registry', attack: { tool: 'execute', sql: 'DELETE FROM project_registry.workspace_config' }, expect: /permission denied/ },
  { name: 'read the workspace ledger', attack: { tool: 'query', sql: 'SELECT * FROM project_registry.workspace_migrations' }, expect: /permission denied/ },
  {
    name: 'write the global ledger',
    attack: { tool: 'execute', sql: "INSERT INTO project_registry.schema_migrations (extension_id, name, checksum) VALUES ('x', 'y', 'z')" },
    expect: /permission denied/,
  },
  { name: 'read pg_authid', attack: { tool: 'query', sql: 'SELECT rolname, rolpassword FROM pg_authid' }, expect: /permission denied/ },
  // Role changes: refused inside a security-definer context, whatever the spelling.
  { name: 'RESET ROLE', attack: { tool: 'execute', sql: 'RESET ROLE' }, expect: PARSER },
  { name: 'SET ROLE', attack: { tool: 'execute', sql: 'SET ROLE postgres' }, expect: PARSER },
  { name: 'SET SESSION AUTHORIZATION', attack: { tool: 'execute', sql: 'SET SESSION AUTHORIZATION postgres' }, expect: PARSER },
  { name: "set_config('role')", attack: { tool: 'query', sql: "SELECT set_config('role', 'none', false)" }, expect: /cannot set parameter "role" within security-definer function/ },
  {
    name: "set_config('session_authorization')",
    attack: { tool: 'query', sql: "SELECT set_config('session_authorization', 'postgres', false)" },
    expect: /cannot set parameter "session_authorization"|permission denied/,
  },
  {
    name: 'RESET ROLE inside a function, then write the registry',
    setup: [fn('esc_reset', "RESET ROLE; DELETE FROM project_registry.workspace_config")],
    attack: { tool: 'execute', sql: call('esc_reset') },
    expect: /cannot set parameter "role" within security-definer function/,
  },
  {
    name: 'SET ROLE to the server inside a function',
    setup: [fn('esc_set', 'EXECUTE format(\'SET ROLE %I\', session_user)')],
    attack: { tool: 'execute', sql: call('esc_set') },
    expect: /cannot set parameter "role" within security-definer function/,
  },
  // Transaction control and multi-statement strings.
  { name: 'COMMIT', attack: { tool: 'execute', sql: 'COMMIT' }, expect: PARSER },
  { name: 'ROLLBACK', attack: { tool: 'execute', sql: 'ROLLBACK' }, expect: PARSER },
  { name: 'BEGIN', attack: { tool: 'execute', sql: 'BEGIN' }, expect: PARSER },
  { name: 'two statements', attack: { tool: 'query', sql: 'SELECT 1; DELETE FROM project_registry.workspace_config' }, expect: PARSER },
  { name: 'COMMIT then RESET ROLE', attack: { tool: 'execute', sql: 'COMMIT; RESET ROLE; DROP SCHEMA project_beta CASCADE' }, expect: PARSER },
  {
    name: 'COMMIT inside a function',
    setup: [fn('esc_commit', 'COMMIT')],
    attack: { tool: 'execute', sql: call('esc_commit') },
    expect: /invalid transaction termination|cannot/,
  },
  { name: 'write in query (READ ONLY)', attack: { tool: 'query', sql: "WITH x AS (INSERT INTO notes (body) VALUES ('q') RETURNING 1) SELECT * FROM x" }, expect: /read-only transaction/ },
  { name: 'DO block', attack: { tool: 'execute', sql: 'DO $d$ BEGIN RESET ROLE; END $d$' }, expect: PARSER },
  // The sandbox itself and the server's functions.
  {
    name: 'ALTER the sandbox function SECURITY INVOKER',
    attack: { tool: 'execute', sql: 'ALTER FUNCTION project_registry_sandbox.project_alpha(text, text, integer, integer) SECURITY INVOKER' },
    expect: PARSER,
  },
  {
    name: 'ALTER the sandbox function from inside a function',
    setup: [fn('esc_alter', "EXECUTE 'ALTER FUNCTION project_registry_sandbox.project_alpha(text, text, integer, integer) SECURITY INVOKER'")],
    attack: { tool: 'execute', sql: call('esc_alter') },
    expect: /permission denied for schema project_registry_sandbox/,
  },
  {
    // The function is the workspace role's own (SECURITY DEFINER): shared, it would run any role's SQL as alpha.
    name: 'GRANT EXECUTE on its own sandbox function to PUBLIC',
    setup: [fn('esc_share_sandbox', "EXECUTE 'GRANT EXECUTE ON FUNCTION project_registry_sandbox.project_alpha(text, text, integer, integer) TO PUBLIC'")],
    attack: { tool: 'execute', sql: call('esc_share_sandbox') },
    expect: /permission denied for schema project_registry_sandbox/,
  },
  {
    name: "replace the sandbox's shared body",
    setup: [
      fn(
        'esc_body',
        "EXECUTE 'CREATE OR REPLACE FUNCTION project_registry_sandbox_body.run(step text, statement text, max_rows integer, max_bytes integer, schema_name text, role_name text) RETURNS text LANGUAGE sql AS $b$ SELECT NULL::text $b$'",
      ),
    ],
    attack: { tool: 'execute', sql: call('esc_body') },
    expect: /permission denied for schema project_registry_sandbox_body/,
  },
  {
    name: "make the sandbox's shared body SECURITY DEFINER",
    setup: [fn('esc_body_definer', "EXECUTE 'ALTER FUNCTION project_registry_sandbox_body.run(text, text, integer, integer, text, text) SECURITY DEFINER'")],
    attack: { tool: 'execute', sql: call('esc_body_definer') },
    expect: /must be owner of function project_registry_sandbox_body\.run/,
  },
  {
    name: "replace the server's table_columns()",
    attack: {
      tool: 'execute',
      sql: 'CREATE OR REPLACE FUNCTION project_registry.table_columns(schema_name text, table_name text, columns text[]) RETURNS text[] LANGUAGE sql AS $$ SELECT NULL::text[] $$',
    },
    expect: /permission denied/,
  },
  {
    name: 'SECURITY DEFINER on a server function',
    setup: [fn('esc_definer', "EXECUTE 'ALTER FUNCTION project_registry.create_workspace SECURITY DEFINER'")],
    attack: { tool: 'execute', sql: call('esc_definer') },
    expect: /permission denied/,
  },
  // Granting to others.
  { name: 'GRANT to PUBLIC', attack: { tool: 'execute', sql: 'GRANT ALL ON notes TO PUBLIC' }, expect: PARSER },
  {
    name: 'GRANT the schema to PUBLIC from a function',
    setup: [fn('esc_grant', "EXECUTE 'GRANT USAGE ON SCHEMA project_alpha TO PUBLIC'")],
    attack: { tool: 'execute', sql: call('esc_grant') },
    // PostgreSQL only warns ("no privileges were granted"): the schema is the server's.
    expect: 'bounded',
  },
  {
    // pg_stats would show notes' values to every role: refused when the call ends.
    name: 'GRANT SELECT to PUBLIC from a function',
    setup: [fn('esc_public', "EXECUTE 'GRANT SELECT ON notes TO PUBLIC'")],
    attack: { tool: 'execute', sql: call('esc_public') },
    expect: /grants to roles outside the workspace are not allowed \(on notes\)/,
  },
  {
    name: 'a column grant to PUBLIC from a function',
    setup: [fn('esc_column', "EXECUTE 'GRANT SELECT (body) ON notes TO PUBLIC'")],
    attack: { tool: 'execute', sql: call('esc_column') },
    expect: /grants to roles outside the workspace are not allowed \(on notes\)/,
  },
  {
    // Large objects belong to no schema: one granted to PUBLIC is readable by every role.
    name: 'a large object granted to PUBLIC',
    setup: [fn('esc_lo', "PERFORM lo_from_bytea(424242, 'alpha secret'); EXECUTE 'GRANT SELECT ON LARGE OBJECT 424242 TO PUBLIC'")],
    attack: { tool: 'execute', sql: call('esc_lo') },
    expect: /grants to roles outside the workspace are not allowed \(on a large object\)/,
  },
  { name: 'GRANT a role', attack: { tool: 'execute', sql: 'GRANT pg_read_server_files TO CURRENT_USER' }, expect: PARSER },
  // Files, programs, other databases.
  { name: 'COPY TO PROGRAM', attack: { tool: 'execute', sql: "COPY notes TO PROGRAM 'id'" }, expect: PARSER },
  {
    name: 'COPY FROM a file inside a function',
    setup: [fn('esc_copy', "EXECUTE 'COPY notes (body) FROM ''/etc/hostname'''")],
    attack: { tool: 'execute', sql: call('esc_copy') },
    expect: /permission denied|must be superuser|not allowed/,
  },
  { name: 'pg_read_file', attack: { tool: 'query', sql: "SELECT pg_read_file('/etc/passwd')" }, expect: /permission denied/ },
  { name: 'lo_import', attack: { tool: 'execute', sql: "SELECT lo_import('/etc/passwd')" }, expect: /permission denied|must be superuser/ },
  { name: 'CREATE EXTENSION dblink', attack: { tool: 'execute', sql: 'CREATE EXTENSION dblink' }, expect: PARSER },
  { name: 'dblink', attack: { tool: 'query', sql: "SELECT dblink_connect('dbname=postgres')" }, expect: /does not exist/ },
  // Locks and other sessions. An advisory lock is held while the agent's statement runs (the
  // statement timeout bounds it) and by no session after the call: SESSION counts every
  // session's advisory locks, before and after.
  {
    name: 'take the install lock (released when the call ends)',
    attack: { tool: 'query', sql: `SELECT pg_advisory_lock(${INSTALL_LOCK_KEY})` },
    expect: 'bounded',
  },
  {
    name: "take beta's workspace lock (released when the call ends)",
    attack: { tool: 'query', sql: `SELECT pg_advisory_lock(${WORKSPACE_LOCK_CLASS}, hashtext('beta'))` },
    expect: 'bounded',
  },
  {
    name: "take beta's workspace lock for the transaction (ends with the call's)",
    attack: { tool: 'execute', sql: `SELECT pg_advisory_xact_lock(${WORKSPACE_LOCK_CLASS}, hashtext('beta'))` },
    expect: 'bounded',
  },
  {
    name: 'take the install lock from a function, held while the statement runs',
    setup: [
      {
        tool: 'execute',
        sql: `CREATE FUNCTION esc_advisory() RETURNS bigint LANGUAGE plpgsql AS $f$ BEGIN PERFORM pg_advisory_lock(${INSTALL_LOCK_KEY});
                RETURN (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()); END $f$`,
      },
    ],
    attack: { tool: 'execute', sql: 'SELECT esc_advisory() AS held' },
    expect: 'bounded',
    check: (r) => expect(r.data['rows']).toEqual([['1']]),
  },
  {
    // Folded while the open plans, then the sandbox is gone: the fetch fails before its body runs.
    name: "take beta's workspace lock at plan time and drop the sandbox",
    setup: [
      { tool: 'execute', sql: "CREATE FUNCTION drop_all() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN EXECUTE 'DROP OWNED BY CURRENT_USER'; RETURN 1; END $f$" },
      {
        tool: 'execute',
        sql: `CREATE FUNCTION grab_and_drop() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$ BEGIN
                PERFORM pg_advisory_lock(${WORKSPACE_LOCK_CLASS}, hashtext('beta')); RETURN drop_all(); END $f$`,
      },
    ],
    attack: { tool: 'execute', sql: 'SELECT grab_and_drop()' },
    expect: /does not exist/,
  },
  {
    name: 'take a lock and fail on purpose',
    attack: { tool: 'query', sql: `SELECT pg_advisory_lock(${INSTALL_LOCK_KEY}), 1 / 0` },
    expect: /division by zero/,
  },
  {
    // startIsolationServer revoked it, as the server asks on a database with wal_level = logical.
    name: 'pg_logical_emit_message from a read-only query',
    attack: { tool: 'query', sql: "SELECT pg_logical_emit_message(false, 'app_jobs', (SELECT string_agg(body, ',') FROM notes))" },
    expect: /permission denied for function pg_logical_emit_message/,
    postgresOnly: true,
  },
  { name: 'pg_terminate_backend', attack: { tool: 'query', sql: 'SELECT pg_terminate_backend(pg_backend_pid())' }, expect: /permission denied|must be/ },
  { name: 'LOCK the registry', attack: { tool: 'execute', sql: 'LOCK TABLE project_registry.workspace_config' }, expect: PARSER },
  {
    name: 'LOCK the registry from a function',
    setup: [fn('esc_lock', 'LOCK TABLE project_registry.workspace_config IN ACCESS EXCLUSIVE MODE')],
    attack: { tool: 'execute', sql: call('esc_lock') },
    expect: /permission denied/,
  },
  // Roles, system settings, libraries.
  { name: 'ALTER ROLE CURRENT_USER SET', attack: { tool: 'execute', sql: 'ALTER ROLE CURRENT_USER SET search_path = project_beta' }, expect: PARSER },
  {
    name: 'ALTER ROLE CURRENT_USER SET from a function',
    setup: [fn('esc_role_set', "EXECUTE 'ALTER ROLE CURRENT_USER SET work_mem = ''1GB'''")],
    attack: { tool: 'execute', sql: call('esc_role_set') },
    expect: /role settings are the server's/,
  },
  { name: 'ALTER ROLE SUPERUSER', attack: { tool: 'execute', sql: 'ALTER ROLE CURRENT_USER SUPERUSER' }, expect: PARSER },
  // Red team round 4: the server is a member of a workspace role only inside its own transactions
  // (role-membership.ts); the agent cannot make that membership, nor hand the server its objects.
  {
    name: "grant its own role to the server's",
    setup: [fn('esc_grant_self', "EXECUTE format('GRANT %I TO %I', current_user, session_user)")],
    attack: { tool: 'execute', sql: call('esc_grant_self') },
    expect: /permission denied|must have admin option/,
  },
  {
    name: 'hand a table to the server',
    setup: [fn('esc_give', "EXECUTE format('ALTER TABLE notes OWNER TO %I', session_user)")],
    attack: { tool: 'execute', sql: call('esc_give') },
    expect: /must be (able to SET ROLE|member of role)/,
  },
  {
    name: "a function whose SET clause takes the server's role",
    setup: [fn('esc_set_clause', "EXECUTE format('CREATE FUNCTION back() RETURNS text LANGUAGE sql SET role = %I AS ''SELECT current_user::text''', session_user); PERFORM back()")],
    attack: { tool: 'execute', sql: call('esc_set_clause') },
    expect: /cannot set parameter "role" within security-definer function/,
  },
  { name: 'ALTER SYSTEM', attack: { tool: 'execute', sql: "ALTER SYSTEM SET work_mem = '1GB'" }, expect: PARSER },
  { name: 'LOAD', attack: { tool: 'execute', sql: "LOAD 'auto_explain'" }, expect: PARSER },
  { name: 'CREATE SCHEMA from a function', setup: [fn('esc_schema', 'CREATE SCHEMA evil')], attack: { tool: 'execute', sql: call('esc_schema') }, expect: /permission denied/ },
  { name: 'a table in public', attack: { tool: 'execute', sql: 'CREATE TABLE public.evil (x int)' }, expect: /permission denied/ },
  // Leftovers on a pooled connection.
  {
    name: 'temp table shadowing notes',
    setup: [fn('esc_temp', "CREATE TEMP TABLE notes (id bigint, body text); INSERT INTO pg_temp.notes VALUES (1, 'shadow')")],
    attack: { tool: 'execute', sql: call('esc_temp') },
    expect: /temporary objects are not allowed/,
  },
  { name: 'CREATE TEMP TABLE', attack: { tool: 'execute', sql: 'CREATE TEMP TABLE t (x int)' }, expect: /temporary objects are not allowed/ },
  // Temporary objects of every kind, not only tables, types and functions: B would find them in pg_temp.
  { name: 'a temporary operator', attack: { tool: 'execute', sql: 'CREATE OPERATOR pg_temp.=== (function = int4eq, leftarg = int, rightarg = int)' }, expect: /temporary objects are not allowed/ },
  { name: 'a temporary collation', attack: { tool: 'execute', sql: "CREATE COLLATION pg_temp.leftover (provider = libc, locale = 'C')" }, expect: /temporary objects are not allowed/ },
  { name: 'a temporary text search configuration', attack: { tool: 'execute', sql: 'CREATE TEXT SEARCH CONFIGURATION pg_temp.leftover (COPY = simple)' }, expect: /temporary objects are not allowed/ },
  {
    name: 'a temporary text search dictionary from a function',
    setup: [fn('esc_dict', "EXECUTE 'CREATE TEXT SEARCH DICTIONARY pg_temp.leftover (TEMPLATE = simple)'")],
    attack: { tool: 'execute', sql: call('esc_dict') },
    expect: /temporary objects are not allowed/,
  },
  {
    name: 'cursor WITH HOLD',
    setup: [fn('esc_cursor', "EXECUTE 'DECLARE leftover CURSOR WITH HOLD FOR SELECT * FROM notes'")],
    attack: { tool: 'execute', sql: call('esc_cursor') },
    expect: /a cursor was left open/,
  },
  {
    name: 'prepared statement',
    setup: [fn('esc_prepare', "EXECUTE 'PREPARE leftover AS SELECT 1'")],
    attack: { tool: 'execute', sql: call('esc_prepare') },
    expect: /a prepared statement was left behind/,
  },
  { name: 'PREPARE', attack: { tool: 'execute', sql: 'PREPARE p AS SELECT 1' }, expect: PARSER },
  { name: 'LISTEN', attack: { tool: 'execute', sql: 'LISTEN channel' }, expect: PARSER },
  { name: 'NOTIFY', attack: { tool: 'execute', sql: "NOTIFY app_jobs, 'alpha data'" }, expect: PARSER },
  {
    name: 'LISTEN from a function (cancelled by the sandbox)',
    setup: [fn('esc_listen', "EXECUTE 'LISTEN leftover'")],
    attack: { tool: 'execute', sql: call('esc_listen') },
    expect: 'bounded',
  },
  {
    name: 'a session setting from a function',
    setup: [fn('esc_setting', "PERFORM set_config('search_path', 'project_beta, public', false)")],
    attack: { tool: 'execute', sql: call('esc_setting') },
    expect: 'bounded',
  },
  {
    name: 'deferred trigger that would fire at COMMIT as the server',
    setup: [
      { tool: 'execute', sql: "CREATE FUNCTION late() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RESET ROLE; DELETE FROM project_registry.workspace_config; RETURN NULL; END $f$" },
    ],
    attack: { tool: 'execute', sql: 'CREATE CONSTRAINT TRIGGER late AFTER INSERT ON notes DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION late()' },
    expect: /deferrable triggers are not allowed/,
  },
  // Code of the workspace's that autovacuum would run in a background worker, with no time limit
  // (shown on PostgreSQL: an index expression's function took an advisory lock and slept there).
  {
    name: "an index expression calling the workspace's own function",
    setup: [{ tool: 'execute', sql: "CREATE FUNCTION av_norm(text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $f$ BEGIN PERFORM pg_advisory_lock(42); RETURN lower($1); END $f$" }],
    attack: { tool: 'execute', sql: 'CREATE INDEX av_norm_idx ON notes (av_norm(body))' },
    expect: /not allowed where autovacuum evaluates them \(.*av_norm_idx\)/,
  },
  {
    name: "a partial index's predicate calling the workspace's own function",
    setup: [{ tool: 'execute', sql: 'CREATE FUNCTION av_keep(text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$ SELECT $1 IS NOT NULL $f$' }],
    attack: { tool: 'execute', sql: 'CREATE INDEX av_keep_idx ON notes (id) WHERE av_keep(body)' },
    expect: /not allowed where autovacuum evaluates them/,
  },
  {
    name: "an index expression through the workspace's own operator and domain",
    setup: [
      { tool: 'execute', sql: 'CREATE FUNCTION av_glue(text, text) RETURNS text LANGUAGE sql IMMUTABLE AS $f$ SELECT $1 || $2 $f$' },
      { tool: 'execute', sql: 'CREATE OPERATOR ~~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = av_glue)' },
      { tool: 'execute', sql: "CREATE DOMAIN av_short AS text CHECK (length(VALUE) < 100)" },
    ],
    attack: { tool: 'execute', sql: "CREATE INDEX av_op_idx ON notes ((body ~~~ 'x'), (body::av_short))" },
    expect: /not allowed where autovacuum evaluates them/,
  },
  {
    name: "extended statistics on the workspace's own function",
    setup: [{ tool: 'execute', sql: 'CREATE FUNCTION av_len(text) RETURNS integer LANGUAGE sql IMMUTABLE AS $f$ SELECT length($1) $f$' }],
    attack: { tool: 'execute', sql: 'CREATE STATISTICS av_stats ON (av_len(body)) FROM notes' },
    expect: /not allowed where autovacuum evaluates them \(statistics object .*av_stats\)/,
  },
  {
    name: "a range type whose subtype_diff is the workspace's own (ANALYZE of any column of it runs it)",
    setup: [{ tool: 'execute', sql: 'CREATE FUNCTION av_diff(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS $f$ SELECT $1 - $2 $f$' }],
    attack: { tool: 'execute', sql: 'CREATE TYPE av_range AS RANGE (subtype = float8, subtype_diff = av_diff)' },
    expect: /not allowed where autovacuum evaluates them \(type .*av_range\)/,
  },
  {
    name: "a table's own autovacuum cost settings (a worker of the cluster's kept busy for hours)",
    attack: { tool: 'execute', sql: 'ALTER TABLE notes SET (autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)' },
    expect: /autovacuum settings of a table are not the workspace's to make \(on notes\)/,
  },
  {
    name: "a new table's TOAST autovacuum settings",
    attack: { tool: 'execute', sql: 'CREATE TABLE av_toasted (body text) WITH (toast.autovacuum_vacuum_cost_delay = 100)' },
    expect: /autovacuum settings of a table are not the workspace's to make \(on av_toasted\)/,
  },
  {
    name: 'an index on built-in expressions (allowed: bounded)',
    attack: { tool: 'execute', sql: "CREATE INDEX av_builtin_idx ON notes (lower(body), (length(body) > 3)) WHERE body <> ''" },
    expect: 'bounded',
  },
  // Code of the workspace's that others' changes would run: an ON DELETE CASCADE foreign key to a
  // table outside makes its AFTER triggers fire as whoever deletes there (the server included).
  {
    name: 'a foreign key to the registry, ON DELETE CASCADE',
    attack: { tool: 'execute', sql: 'CREATE TABLE esc_fk (id text REFERENCES project_registry.workspace_config (project_id) ON DELETE CASCADE)' },
    expect: /permission denied/,
  },
  {
    name: 'a trigger on the registry',
    setup: [{ tool: 'execute', sql: 'CREATE FUNCTION spy() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NULL; END $f$' }],
    attack: { tool: 'execute', sql: 'CREATE TRIGGER spy AFTER DELETE ON project_registry.workspace_config FOR EACH ROW EXECUTE FUNCTION spy()' },
    expect: /permission denied/,
  },
  {
    name: 'a foreign key to a global table every role may read, ON DELETE CASCADE',
    admin: ['CREATE TABLE IF NOT EXISTS public.shared_lookup (id int PRIMARY KEY)', 'GRANT SELECT ON public.shared_lookup TO PUBLIC'],
    attack: { tool: 'execute', sql: 'CREATE TABLE esc_fk (id int REFERENCES public.shared_lookup (id) ON DELETE CASCADE)' },
    expect: /permission denied for table shared_lookup/,
  },
  {
    name: 'a trigger on a global table every role may read',
    admin: ['CREATE TABLE IF NOT EXISTS public.shared_lookup (id int PRIMARY KEY)', 'GRANT SELECT ON public.shared_lookup TO PUBLIC'],
    setup: [{ tool: 'execute', sql: 'CREATE FUNCTION spy_lookup() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NULL; END $f$' }],
    attack: { tool: 'execute', sql: 'CREATE TRIGGER spy AFTER DELETE ON public.shared_lookup FOR EACH ROW EXECUTE FUNCTION spy_lookup()' },
    expect: /permission denied for table shared_lookup/,
  },
  // Time and size.
  { name: 'pg_sleep past the timeout', attack: { tool: 'query', sql: 'SELECT pg_sleep(30)' }, expect: /statement timeout/, timesOut: true },
  {
    // Folded while the statement is planned, before its rows are fetched by a statement of its own.
    name: 'an IMMUTABLE function lifting the timeout at plan time',
    setup: [{ tool: 'execute', sql: "CREATE FUNCTION no_timeout() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$ BEGIN PERFORM set_config('statement_timeout', '0', true); RETURN 1; END $f$" }],
    attack: { tool: 'query', sql: 'SELECT pg_sleep(30), no_timeout()' },
    expect: /statement timeout/,
    timesOut: true,
  },
  {
    name: "the same in a data change (one statement: its timeout is armed before any agent code)",
    setup: [{ tool: 'execute', sql: "CREATE FUNCTION no_timeout_too() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$ BEGIN PERFORM set_config('statement_timeout', '0', true); RETURN 1; END $f$" }],
    attack: { tool: 'execute', sql: 'INSERT INTO notes (body) SELECT pg_sleep(30)::text || no_timeout_too()' },
    expect: /statement timeout/,
    timesOut: true,
  },
  {
    name: 'a huge result',
    // Ten million rows from a nested loop over two small series: streamed, never materialised.
    attack: { tool: 'query', sql: "SELECT a, b, repeat('x', 100) FROM generate_series(1, 10000) a, generate_series(1, 1000) b", max_rows: 5 },
    expect: 'bounded',
    check: (r) => expect(r.data).toMatchObject({ row_count: 5, truncated: true }),
  },
  {
    // The text of an error is the agent's: it is cut before it leaves PostgreSQL (and again as pg reads it).
    name: 'an error of 10 MB',
    setup: [fn('huge_error', "RAISE EXCEPTION '%', repeat('x', 10000000)")],
    attack: { tool: 'query', sql: call('huge_error') },
    expect: /x{1000}/,
    check: (r) => expect(r.text.length).toBeLessThan(50_000),
  },
  { name: 'max_rows 0', attack: { tool: 'query', sql: 'SELECT * FROM notes', max_rows: 0 }, expect: 'bounded', check: (r) => expect(r.data['rows']).toEqual([]) },
  { name: 'max_rows 10^9', attack: { tool: 'query', sql: 'SELECT 1', max_rows: 1_000_000_000 }, expect: /max_rows must be a whole number from 0 to/ },
];

let cluster: PgCluster | null = null;
beforeAll(async () => {
  // wal_level = logical: pg_logical_emit_message()'s text then reaches every logical replication stream.
  cluster = await startPgCluster({ settings: { wal_level: 'logical' } });
}, 120_000);
afterAll(async () => cluster?.destroy());

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`SQL tools cannot escape a workspace on ${kind}`, () => {
    let server: IsolationServer | undefined;
    let snapshot: () => Promise<string>;
    const run = (name: string, args: Record<string, unknown>) => (server as IsolationServer).run(name, args);
    /** The server for the attacks that time out on PGlite, started by the first of them. */
    let quick: Promise<IsolationServer | undefined> | undefined;

    /** A server with workspaces alpha and beta, each with a note. */
    const attacked = async (statementTimeoutMs: number, databasePrefix: string) => {
      const started = await startIsolationServer(kind, cluster, { role: 'mcp_app', databasePrefix, statementTimeoutMs, disabledExtensions: ['codebase'] });
      if (!started) return undefined;
      for (const id of ['alpha', 'beta']) expect((await started.run('ensure_workspace', { project_id: id })).isError).toBe(false);
      const seeded = await started.run('execute', { project_id: 'beta', sql: "INSERT INTO notes (body) VALUES ('beta secret') RETURNING id" });
      expect(seeded.isError, seeded.text).toBe(false);
      expect((await started.run('execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('alpha note')" })).isError).toBe(false);
      return started;
    };

    beforeAll(async () => {
      // PGlite makes and sends the 10 MB error below far slower than PostgreSQL (seconds on a loaded machine).
      server = await attacked(kind === 'pglite' ? 5_000 : TIMEOUT_MS, 'iso');
      if (server) ({ snapshot } = server);
    }, 240_000);
    afterAll(async () => {
      await server?.close();
      await (await quick)?.close();
    });

    it(`has at least 40 escape attempts`, () => {
      expect(ATTACKS.length).toBeGreaterThanOrEqual(40);
    });

    for (const a of ATTACKS) {
      it(`refuses: ${a.name}`, async (ctx) => {
        if (!server || (a.postgresOnly && kind !== 'postgres')) ctx.skip();
        let target = server as IsolationServer;
        if (a.timesOut && kind === 'pglite') target = (await (quick ??= attacked(QUICK_TIMEOUT_MS, 'iso_quick'))) as IsolationServer;
        const attempt = (name: string, args: Record<string, unknown>) => target.run(name, args);
        for (const sql of a.admin ?? []) await target.asSuperuser(sql);
        for (const step of a.setup ?? []) {
          const done = await attempt(step.tool, { project_id: 'alpha', ...step });
          expect(done.isError, `setup ${step.sql}: ${done.text}`).toBe(false);
        }
        const session = (await target.serverDb.query(SESSION))[0];
        const before = await target.snapshot();
        const result = await attempt(a.attack.tool, { project_id: 'alpha', ...a.attack });
        if (a.expect === 'bounded') {
          expect(result.isError, result.text).toBe(false);
        } else {
          expect(result.isError, `should have failed: ${result.text}`).toBe(true);
          expect(result.text).toMatch(a.expect);
        }
        a.check?.(result);
        expect(await target.snapshot()).toBe(before);
        expect((await target.serverDb.query(SESSION))[0]).toEqual(session);
        // The workspace still works afterwards.
        const after = await attempt('query', { project_id: 'alpha', sql: 'SELECT body FROM notes ORDER BY id' });
        expect(after.isError, after.text).toBe(false);
        expect(after.data['rows']).toEqual([['alpha note']]);
      }, 60_000);
    }

    // PGlite's one session serves every workspace: each test first checks that alpha and beta ran
    // on it, or it would prove nothing. On PostgreSQL a pooled session that ran alpha's agent code
    // never runs beta's (see the custom settings test): beta must be on another backend.
    const pid = async (projectId: string) => ((await run('query', { project_id: projectId, sql: 'SELECT pg_backend_pid()' })).data['rows'] as number[][])[0]?.[0];
    const expectSharing = (betaPid: unknown, alphaPid: unknown) => (kind === 'pglite' ? expect(betaPid).toBe(alphaPid) : expect(betaPid).not.toBe(alphaPid));

    it("random() in beta is not decided by setseed() in alpha", async (ctx) => {
      if (!server) ctx.skip();
      const seeded = await run('query', { project_id: 'alpha', sql: 'SELECT pg_backend_pid() AS pid, setseed(0.5)' });
      expect(seeded.isError, seeded.text).toBe(false);
      const drawn = await run('query', { project_id: 'beta', sql: 'SELECT pg_backend_pid() AS pid, random() AS r' });
      const [alphaPid] = (seeded.data['rows'] as unknown[][])[0] ?? [];
      const [betaPid, r] = (drawn.data['rows'] as unknown[][])[0] ?? [];
      expectSharing(betaPid, alphaPid);
      await (server as IsolationServer).asSuperuser('SELECT setseed(0.5)');
      const [seededDraw] = await (server as IsolationServer).asSuperuser<{ r: number }>('SELECT random() AS r');
      expect(r).not.toBe(seededDraw?.r);
    });

    it("lastval() in beta says nothing of alpha's sequences", async (ctx) => {
      if (!server) ctx.skip();
      const inserted = await run('execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('numbered') RETURNING pg_backend_pid()" });
      expect(inserted.isError, inserted.text).toBe(false);
      try {
        expectSharing(await pid('beta'), (inserted.data['rows'] as number[][])[0]?.[0]);
        const last = await run('query', { project_id: 'beta', sql: 'SELECT lastval()' });
        expect(last.isError).toBe(true);
        // Not "permission denied for sequence notes_id_seq": the session forgot alpha's.
        expect(last.text).toMatch(/lastval is not yet defined in this session/);
      } finally {
        await run('execute', { project_id: 'alpha', sql: "DELETE FROM notes WHERE body = 'numbered'" });
      }
    });

    it('a custom setting alpha made tells beta nothing: neither its value nor that it exists', async (ctx) => {
      if (!server) ctx.skip();
      // From execute (committed) and from query, where the setting outlives the call's transaction.
      expect((await run('execute', { project_id: 'alpha', ...fn('leave_setting', "PERFORM set_config('pgw_test.from_execute', 'alpha secret', false)") })).isError).toBe(false);
      const left = await run('execute', { project_id: 'alpha', sql: 'SELECT pg_backend_pid() AS pid, leave_setting() AS done' });
      expect(left.isError, left.text).toBe(false);
      const also = await run('query', { project_id: 'alpha', sql: "SELECT pg_backend_pid() AS pid, set_config('pgw_test.from_query', 'alpha secret', false) AS v" });
      expect(also.isError, also.text).toBe(false);
      const [alphaPid] = (also.data['rows'] as unknown[][])[0] ?? [];
      expect((left.data['rows'] as unknown[][])[0]?.[0]).toBe(alphaPid);
      const read = await run('query', {
        project_id: 'beta',
        sql: "SELECT pg_backend_pid() AS pid, current_setting('pgw_test.from_execute', true) AS e, current_setting('pgw_test.from_query', true) AS q",
      });
      expect(read.isError, read.text).toBe(false);
      const [betaPid, e, q] = (read.data['rows'] as unknown[][])[0] ?? [];
      expectSharing(betaPid, alphaPid);
      // PostgreSQL can neither list nor remove a placeholder: beta runs on a connection that never
      // ran alpha's code (PostgreSQL), or on a new session (PGlite's one was replaced).
      expect([e, q]).toEqual([null, null]);
      // alpha's own next call is served as before.
      expect((await run('query', { project_id: 'alpha', sql: 'SELECT 1 AS one' })).isError).toBe(false);
    });

    it('a workspace keeps its own custom settings across its calls, on the same session', async (ctx) => {
      if (!server) ctx.skip();
      const session = "SELECT pg_backend_pid() AS pid, pg_postmaster_start_time()::text AS started, current_setting('pgw_own.mark', true) AS mark";
      const first = await run('query', { project_id: 'alpha', sql: `${session}, set_config('pgw_own.mark', 'x', false) AS made` });
      expect(first.isError, first.text).toBe(false);
      const again = await run('query', { project_id: 'alpha', sql: session });
      expect(again.isError, again.text).toBe(false);
      const [pid, started] = (first.data['rows'] as unknown[][])[0] ?? [];
      // Its own placeholder, emptied: the session was neither replaced (PGlite) nor changed (PostgreSQL).
      expect((again.data['rows'] as unknown[][])[0]).toEqual([pid, started, '']);
      const beta = await run('query', { project_id: 'beta', sql: "SELECT current_setting('pgw_own.mark', true) AS mark" });
      expect(beta.data['rows'], beta.text).toEqual([[null]]);
    });

    it("a workspace dropped and made again under the same id never meets the old one's custom settings", async (ctx) => {
      if (!server) ctx.skip();
      expect((await run('ensure_workspace', { project_id: 'reborn' })).isError).toBe(false);
      const left = await run('query', { project_id: 'reborn', sql: "SELECT pg_backend_pid() AS pid, set_config('pgw_reborn.mark', 'old life', false) AS v" });
      expect(left.isError, left.text).toBe(false);
      expect((await run('drop_workspace', { project_id: 'reborn', confirm: 'reborn' })).isError).toBe(false);
      expect((await run('ensure_workspace', { project_id: 'reborn' })).isError).toBe(false);
      const read = await run('query', { project_id: 'reborn', sql: "SELECT pg_backend_pid() AS pid, current_setting('pgw_reborn.mark', true) AS mark" });
      expect(read.isError, read.text).toBe(false);
      expect((read.data['rows'] as unknown[][])[0]?.[1]).toBeNull();
    });

    it("grants an agent makes to others are refused: beta sees neither alpha's rows nor their statistics", async (ctx) => {
      if (!server) ctx.skip();
      const granted = await run('execute', { project_id: 'alpha', sql: fn('give_away', "EXECUTE 'GRANT ALL ON notes TO PUBLIC'").sql });
      expect(granted.isError, granted.text).toBe(false);
      const given = await run('execute', { project_id: 'alpha', sql: 'SELECT give_away()' });
      expect(given.isError).toBe(true);
      expect(given.text).toMatch(/grants to roles outside the workspace are not allowed \(on notes\)/);
      // pg_stats shows a column's common values to every role that may read the table, schema or not.
      expect((await run('execute', { project_id: 'alpha', ...fn('stats_now', "EXECUTE 'ANALYZE notes'") })).isError).toBe(false);
      const analyzed = await run('execute', { project_id: 'alpha', sql: call('stats_now') });
      expect(analyzed.isError, analyzed.text).toBe(false);
      const stats = await run('query', { project_id: 'beta', sql: "SELECT count(*)::int AS n FROM pg_stats WHERE schemaname = 'project_alpha'" });
      expect(stats.data['rows']).toEqual([[0]]);
      const read = await run('query', { project_id: 'beta', sql: 'SELECT * FROM project_alpha.notes' });
      expect(read.isError).toBe(true);
      expect(read.text).toMatch(/permission denied for schema project_alpha/);
    });

    it('an agent that drops its own sandbox (DROP OWNED) gets a new one, and nothing else changes', async (ctx) => {
      if (!server) ctx.skip();
      const before = await snapshot();
      await run('execute', { project_id: 'alpha', ...fn('self_destruct', "EXECUTE 'DROP OWNED BY CURRENT_USER'") });
      const dropped = await run('execute', { project_id: 'alpha', sql: 'SELECT self_destruct()' });
      expect(dropped.isError, dropped.text).toBe(false);
      const again = await run('query', { project_id: 'alpha', sql: "SELECT to_regclass('notes') IS NULL AS gone" });
      expect(again.isError, again.text).toBe(false);
      // DROP OWNED took alpha's own tables with it: that is alpha's to do.
      expect(again.data['rows']).toEqual([[true]]);
      expect(await snapshot()).toBe(before);
      // Provisioning still works for everyone.
      expect((await run('ensure_workspace', { project_id: 'gamma' })).isError).toBe(false);
    });
  });
}

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`one huge message cannot end the server on ${kind}`, () => {
    // pg-protocol made each field of a message one JavaScript string, in the socket's 'data'
    // handler: past V8's limit (about 512 MiB) that threw ERR_STRING_TOO_LONG there, ending the
    // process and every agent's session with it; no exception handler sees a notice. PGlite's own
    // reader aborted the process on a 300 MB error.
    const size = kind === 'postgres' ? 600_000_000 : 300_000_000;
    const raise = kind === 'postgres' ? 'NOTICE' : 'EXCEPTION';
    // Left to npm test: on PGlite the 300 MB error takes seconds of CPU and 2 GB of memory, the
    // most of any case test:embedded would run, and cannot be smaller than what crashed.
    it.skipIf(EMBEDDED_ONLY)(`survives ${raise === 'NOTICE' ? 'a notice' : 'an error'} of ${size / 1e6} million characters, and keeps serving`, async (ctx) => {
      const server = await startIsolationServer(kind, cluster, { role: 'mcp_huge', databasePrefix: 'iso_huge', statementTimeoutMs: 120_000, disabledExtensions: ['codebase'] });
      if (!server) return ctx.skip();
      try {
        const made = await server.run('execute', { project_id: 'alpha', ...fn('shout', `RAISE ${raise} '%', repeat('x', ${size})`) });
        expect(made.isError, made.text).toBe(false);
        const shouted = await server.run('query', { project_id: 'alpha', sql: 'SELECT shout() AS said' });
        if (raise === 'NOTICE') {
          expect(shouted.isError, shouted.text).toBe(false);
          expect(shouted.data['rows']).toEqual([['done']]);
        } else {
          expect(shouted.isError).toBe(true);
          expect(shouted.text).toMatch(/x{1000}/);
          expect(shouted.text.length).toBeLessThan(50_000);
        }
        const after = await server.run('query', { project_id: 'beta', sql: 'SELECT count(*) AS n FROM notes' });
        expect(after.isError, after.text).toBe(false);
      } finally {
        await server.close();
      }
    }, 300_000);
  });
}

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`tables outside the workspaces on ${kind}`, () => {
    it('refuse the SQL tools, with the REVOKE, while every role may reference them or put triggers on them', async (ctx) => {
      const server = await startIsolationServer(kind, cluster, { role: 'mcp_refs', databasePrefix: 'iso_refs', statementTimeoutMs: TIMEOUT_MS, disabledExtensions: ['codebase'] });
      if (!server) return ctx.skip();
      try {
        await server.asSuperuser('CREATE TABLE public.open_lookup (id int PRIMARY KEY)');
        await server.asSuperuser('GRANT SELECT, REFERENCES ON public.open_lookup TO PUBLIC');
        // Allowed, this foreign key would make the deletes of whoever deletes there cascade into
        // alpha's table and fire alpha's AFTER triggers as that role.
        const refused = await server.run('execute', { project_id: 'alpha', sql: 'CREATE TABLE child (id int REFERENCES public.open_lookup (id) ON DELETE CASCADE)' });
        expect(refused.isError).toBe(true);
        expect(refused.text).toContain('Run: REVOKE REFERENCES, TRIGGER ON TABLE public.open_lookup FROM PUBLIC;');
        // A grant on a column is enough for a foreign key; it is revoked on its own.
        await server.asSuperuser('REVOKE REFERENCES ON public.open_lookup FROM PUBLIC');
        await server.asSuperuser('GRANT REFERENCES (id) ON public.open_lookup TO PUBLIC');
        const column = await server.run('query', { project_id: 'alpha', sql: 'SELECT 1' });
        expect(column.isError).toBe(true);
        expect(column.text).toContain('REVOKE REFERENCES (id) ON TABLE public.open_lookup FROM PUBLIC;');
        await server.asSuperuser('REVOKE REFERENCES (id) ON public.open_lookup FROM PUBLIC');
        await server.asSuperuser('GRANT TRIGGER ON public.open_lookup TO PUBLIC');
        expect((await server.run('query', { project_id: 'alpha', sql: 'SELECT 1' })).text).toContain('REVOKE REFERENCES, TRIGGER ON TABLE public.open_lookup');
        // Fixed, the tools work at once, without a restart; and the foreign key is refused by PostgreSQL.
        await server.asSuperuser('REVOKE TRIGGER ON public.open_lookup FROM PUBLIC');
        const fixed = await server.run('query', { project_id: 'alpha', sql: 'SELECT 1 AS one' });
        expect(fixed.isError, fixed.text).toBe(false);
        const denied = await server.run('execute', { project_id: 'alpha', sql: 'CREATE TABLE child (id int REFERENCES public.open_lookup (id) ON DELETE CASCADE)' });
        expect(denied.text).toMatch(/permission denied for table open_lookup/);
      } finally {
        await server.close();
      }
    }, 240_000);
  });
}

describe('one workspace cannot take every pooled connection (postgres)', () => {
  it("beta's query is served while alpha's twelve slow ones still run", async (ctx) => {
    const server = await startIsolationServer('postgres', cluster, { role: 'mcp_busy', databasePrefix: 'iso_busy', statementTimeoutMs: 30_000, disabledExtensions: ['codebase'] });
    if (!server) return ctx.skip();
    try {
      for (const id of ['alpha', 'beta']) expect((await server.run('query', { project_id: id, sql: 'SELECT 1 AS warm' })).isError).toBe(false);
      // Twelve slow calls from alpha against a pool of 10 connections.
      let alphaDone = 0;
      const slow = Array.from({ length: 12 }, () =>
        server.run('query', { project_id: 'alpha', sql: 'SELECT pg_sleep(2) AS slept' }).finally(() => alphaDone++),
      );
      // Until alpha's calls hold the connections they may (4 by default; all 10 before the cap).
      const running = async () =>
        (await server.asSuperuser<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'mcp_busy' AND state = 'active' AND wait_event = 'PgSleep'`))[0]?.n ?? 0;
      while ((await running()) < 4) await new Promise((resolve) => setTimeout(resolve, 20));
      const quick = await server.run('query', { project_id: 'beta', sql: 'SELECT count(*) AS n FROM notes' });
      expect(quick.isError, quick.text).toBe(false);
      // Served while every one of alpha's calls was still running or waiting its turn.
      expect(alphaDone).toBe(0);
      expect(await running()).toBe(4);
      for (const r of await Promise.all(slow)) expect(r.isError, r.text).toBe(false);
    } finally {
      await server.close();
    }
  }, 240_000);
});

describe('logical messages on postgres (wal_level = logical)', () => {
  it('refuse the SQL tools, with the REVOKE, while every role may call pg_logical_emit_message', async (ctx) => {
    const server = await startIsolationServer('postgres', cluster, { role: 'mcp_wal', databasePrefix: 'iso_wal', statementTimeoutMs: TIMEOUT_MS, disabledExtensions: ['codebase'] });
    if (!server) return ctx.skip();
    try {
      expect(await server.asSuperuser('SHOW wal_level')).toEqual([{ wal_level: 'logical' }]);
      // PostgreSQL's default: PUBLIC may call it. A read-only query then put alpha's rows into
      // every logical replication stream of the database.
      await server.asSuperuser('GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC');
      const refused = await server.run('query', { project_id: 'alpha', sql: "SELECT pg_logical_emit_message(false, 'app_jobs', 'alpha data')" });
      expect(refused.isError).toBe(true);
      expect(refused.text).toContain('Run: REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean,text,text) FROM PUBLIC;');
      // Per database (a server spreading workspaces has several): the refusal names which.
      expect(refused.text).toMatch(/FROM PUBLIC; \(in database "?\w+"?\)/);
      await server.asSuperuser('REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) FROM PUBLIC');
      const denied = await server.run('query', { project_id: 'alpha', sql: "SELECT pg_logical_emit_message(false, 'app_jobs', 'alpha data')" });
      expect(denied.text).toMatch(/permission denied for function pg_logical_emit_message/);
      expect((await server.run('query', { project_id: 'alpha', sql: 'SELECT 1 AS one' })).isError).toBe(false);
    } finally {
      await server.close();
    }
  }, 240_000);
});

describe('NOTIFY on postgres', () => {
  it("a read-only query's NOTIFY and pg_notify() reach no other session's LISTEN: the call rolls back", async (ctx) => {
    const server = await startIsolationServer('postgres', cluster, { role: 'mcp_notify', databasePrefix: 'iso_notify', statementTimeoutMs: TIMEOUT_MS, disabledExtensions: ['codebase'] });
    if (!server) return ctx.skip();
    try {
      const received = await server.listen('app_jobs');
      // The statement needs no privilege and runs in a read-only transaction, from a function too.
      const made = await server.run('execute', { project_id: 'alpha', ...fn('tell', "NOTIFY app_jobs, 'alpha secret'; PERFORM pg_notify('app_jobs', 'alpha secret too')") });
      expect(made.isError, made.text).toBe(false);
      const logged = (await readFile(cluster?.logFile ?? '', 'utf8')).length;
      const told = await server.run('query', { project_id: 'alpha', sql: 'SELECT tell() AS said' });
      expect(told.isError, told.text).toBe(false);
      expect(told.data['rows']).toEqual([['done']]);
      // And quietly: a ROLLBACK in the protocol's implicit transaction warns, into the server log too.
      const failed = await server.run('query', { project_id: 'alpha', sql: 'SELECT tell(), 1 / 0' });
      expect(failed.text).toMatch(/division by zero/);
      expect((await server.run('query', { project_id: 'alpha', sql: 'SELECT 1 AS one' })).isError).toBe(false);
      expect((await readFile(cluster?.logFile ?? '', 'utf8')).slice(logged)).not.toMatch(/no transaction in progress/);
      // Notifications arrive in commit order: once the marker is in, the agent's would be too.
      await server.asSuperuser("NOTIFY app_jobs, 'marker'");
      while (!received.includes('marker')) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(received).toEqual(['marker']);
    } finally {
      await server.close();
    }
  }, 240_000);
});

describe('the write-path catalog checks with statistics counting off (postgres)', () => {
  it('still refuses a deferrable trigger, a role setting and an index on agent code: without counts every check runs', async (ctx) => {
    if (!cluster) return ctx.skip();
    // The sandbox skips a catalog's check when this backend's counts say this transaction wrote no
    // row there; with track_counts off the counts stay 0, so it must fall back to checking.
    await cluster.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcp_nocount') THEN CREATE ROLE mcp_nocount LOGIN CREATEROLE; END IF; END $$`);
    await cluster.sql(`ALTER ROLE mcp_nocount SET track_counts = off`);
    const server = await startIsolationServer('postgres', cluster, { role: 'mcp_nocount', databasePrefix: 'iso_nocount', statementTimeoutMs: TIMEOUT_MS, disabledExtensions: ['codebase'] });
    if (!server) return ctx.skip();
    try {
      expect(await server.serverDb.query('SHOW track_counts')).toEqual([{ track_counts: 'off' }]);
      const setup = await server.run('execute', { project_id: 'alpha', sql: 'CREATE FUNCTION late() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NULL; END $f$' });
      expect(setup.isError, setup.text).toBe(false);
      const trigger = await server.run('execute', {
        project_id: 'alpha',
        sql: 'CREATE CONSTRAINT TRIGGER late AFTER INSERT ON notes DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION late()',
      });
      expect(trigger.text).toMatch(/deferrable triggers are not allowed/);
      await server.run('execute', { project_id: 'alpha', ...fn('role_set', "EXECUTE 'ALTER ROLE CURRENT_USER SET work_mem = ''1GB'''") });
      expect((await server.run('execute', { project_id: 'alpha', sql: call('role_set') })).text).toMatch(/role settings are the server's/);
      await server.run('execute', { project_id: 'alpha', sql: 'CREATE FUNCTION av_norm(text) RETURNS text LANGUAGE sql IMMUTABLE AS $f$ SELECT lower($1) $f$' });
      expect((await server.run('execute', { project_id: 'alpha', sql: 'CREATE INDEX ON notes (av_norm(body))' })).text).toMatch(/not allowed where autovacuum evaluates them/);
    } finally {
      await server.close();
    }
  }, 240_000);
});
