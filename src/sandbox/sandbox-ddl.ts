import { createHash } from 'node:crypto';
import pg from 'pg';
import { MAX_IDENTIFIER_BYTES, quoteIdent } from '../db/identifiers.js';
import { RESEED_RANDOM } from '../db/pipeline.js';
import { memberFor } from '../db/role-membership.js';
import { autovacuumCodeOf } from './autovacuum-code.js';
import { copyEvaluatedCodeOf } from './copy-code.js';

/**
 * Each workspace's agent SQL runs as a PostgreSQL role of its own, inside a SECURITY DEFINER
 * function that role owns: PostgreSQL refuses every role change (SET ROLE, RESET ROLE, SET
 * SESSION AUTHORIZATION, set_config('role', ...)) inside a security-definer context, including
 * in functions nested in it, so there is no way back to the server's role.
 *
 * The function lives in `project_registry_sandbox`, where the workspace role has no privilege at all: it
 * cannot replace the body (that needs CREATE there) nor even name the function to ALTER it
 * (that needs USAGE). It can still drop it (DROP OWNED BY CURRENT_USER): the server then makes
 * it again. Whatever was done to it, the body checks at run time that a role change is refused
 * before it runs any agent SQL, rather than trusting catalog flags.
 *
 * That function is one line of SQL calling the body every workspace shares (SANDBOX_BODY, a
 * SECURITY INVOKER PL/pgSQL function the server writes, which runs as the workspace role it is
 * called by). A PL/pgSQL body of each workspace's own was compiled, with a cached plan for each
 * of its statements, by every connection for every workspace it served, and PostgreSQL walks a
 * connection's every cached plan on each catalog change it sees: after a thousand workspaces,
 * each DDL statement on that connection, the agent's or the server's, took tens of milliseconds.
 * A SQL function keeps no plan between calls; the shared body is compiled once per connection.
 */
export const SANDBOX_SCHEMA = 'project_registry_sandbox';

/**
 * Where the shared body lives (made by core's schema.sql): every role may use it, as its
 * function runs as its caller, and none may create anything there.
 */
export const SANDBOX_BODY_SCHEMA = 'project_registry_sandbox_body';

/** The shared body, `run(step, statement, max_rows, max_bytes, schema_name, role_name)`, as to_regprocedure reads it. */
export const SANDBOX_BODY = `${quoteIdent(SANDBOX_BODY_SCHEMA)}.run(text, text, integer, integer, text, text)`;

/**
 * The advisory lock (two-int4 form, key 0) under which the server writes the shared body and a
 * workspace's principal: "pgsb", beside the workspace locks' "pgws".
 */
export const SANDBOX_LOCK_CLASS = 0x70677362;

/** SQLSTATE the body raises when it finds itself outside a security-definer context. */
export const SANDBOX_BROKEN = 'PW010';
/** SQLSTATE for session state the agent tried to leave behind (cursor, temp object, lock...). */
export const SANDBOX_LEFTOVER = 'PW011';

/** An agent's error longer than this (characters, in any field) is cut in the sandbox. */
export const SANDBOX_ERROR_FIELD_CHARS = 8000;

/** The portal the body opens for a row-returning statement; the server describes it by name. */
export const RESULT_PORTAL = 'pgw_result';

/**
 * The role a new workspace gets (an existing workspace's role is the one its registry row
 * records, never recomputed). Role names are cluster-global while workspaces are per database:
 * the name carries a tag of the database, so two databases with the same project id never share
 * a role. Injective by construction: an id that fits is spelled out (hyphens as underscores,
 * which no id contains, and never two in a row, since ids never have two hyphens in a row); a
 * longer one becomes its first characters, a double underscore (a shape no spelled-out id can
 * have) and 64 bits of sha256, so two ids share a name only if they share 32 characters and
 * 64 bits of hash. The registry's UNIQUE role_name refuses even that.
 */
export function roleNameFor(databaseName: string, projectId: string): string {
  const prefix = rolePrefixFor(databaseName);
  const id = projectId.replaceAll('-', '_');
  if (Buffer.byteLength(prefix + id) <= MAX_IDENTIFIER_BYTES) return prefix + id;
  const hash = createHash('sha256').update(projectId).digest('hex').slice(0, 16);
  return `${prefix}${id.slice(0, MAX_IDENTIFIER_BYTES - prefix.length - hash.length - 2)}__${hash}`;
}

/**
 * The role that owns a workspace's snapshots (docs/snapshots.md): NOLOGIN, no privileges, not
 * granted to the workspace's role, so the agent cannot write into a snapshot, and whatever of its
 * code a snapshot's definitions hold (an index expression an ANALYZE evaluates, say) runs as a
 * role that can touch nothing else. Named like a workspace role of the id `<id>--snapshots`,
 * which no workspace can have.
 */
export function snapshotRoleNameFor(databaseName: string, projectId: string): string {
  return roleNameFor(databaseName, `${projectId}--snapshots`);
}

/**
 * On Citus, the role made to copy a snapshot of a workspace into the schema of OID
 * `targetSchemaOid`, which owns the copy until it is handed to the snapshot role and is dropped
 * then (citus-schema-copy.ts). Never the name of a role dropped before: Citus keeps a session's
 * connections to the workers by role name, and one opened as a dropped role fails. A project id
 * never holds `--`, so no workspace has this role's name.
 */
export function snapshotCopierNameFor(databaseName: string, projectId: string, targetSchemaOid: number | string): string {
  return roleNameFor(databaseName, `${projectId}--copy-${targetSchemaOid}`);
}

/** What every workspace role of the database starts with. */
export function rolePrefixFor(databaseName: string): string {
  return `pgw_${createHash('sha256').update(databaseName).digest('hex').slice(0, 8)}_`;
}

export interface Principal {
  schemaName: string;
  roleName: string;
  /** The workspace, then the schemas of required PostgreSQL extensions. */
  searchPath: readonly string[];
}

/** The sandbox function of a workspace: `project_registry_sandbox.<schema name>(step, statement, max_rows, max_bytes)`. */
export function sandboxFunction(schemaName: string): string {
  return `${quoteIdent(SANDBOX_SCHEMA)}.${quoteIdent(schemaName)}`;
}

const literal = (value: string) => pg.escapeLiteral(value);

/** The sandbox function's argument types, for DROP and ALTER. */
const SANDBOX_ARGUMENTS = 'text, text, integer, integer';

/** Drops a workspace's sandbox function, of this signature or the one before max_bytes. */
export function dropSandboxFunction(schemaName: string): string {
  const fn = sandboxFunction(schemaName);
  return `DROP FUNCTION IF EXISTS ${fn}(${SANDBOX_ARGUMENTS}); DROP FUNCTION IF EXISTS ${fn}(text, text, integer)`;
}

/**
 * Makes the workspace's principal: the role (NOLOGIN, no attributes), its privileges (USAGE and
 * CREATE on its schema, which stays the server's, so the role cannot grant access to it), the
 * ownership of every object in the schema (so the agent may ALTER and DROP its tables), and the
 * sandbox function. Idempotent; runs under the workspace's lock. The server role is a member of
 * the workspace role only for the statements that hand it objects and the function (PostgreSQL
 * asks the new owner for CREATE on the function's schema, granted for that one statement only),
 * in this transaction: see memberFor. It calls the function by a grant of its own.
 */
export function principalScript(p: Principal, createRole: boolean, serverRole: string, citus = false, writeBody = true): string {
  const role = quoteIdent(p.roleName);
  const schema = quoteIdent(p.schemaName);
  const fn = `${sandboxFunction(p.schemaName)}(${SANDBOX_ARGUMENTS})`;
  return [
    // One at a time across workspaces and servers: the body and the sandbox schema's privileges
    // are rows every workspace shares, which two transactions cannot update at once.
    `SELECT pg_catalog.pg_advisory_xact_lock(${SANDBOX_LOCK_CLASS}, 0)`,
    // The function below is checked against the body when it is made. A body already exactly
    // this server's is left alone: replaced, every session would compile it again at its next call.
    writeBody ? sandboxBodyScript() : '',
    createRole ? `CREATE ROLE ${role} NOLOGIN NOINHERIT` : '',
    // Citus reaches a workspace's worker over a connection as the current user: the role must
    // be allowed to log in there (it has no password; see docs/citus.md). A role may always set
    // its own password, and only a role with CREATEROLE may change VALID UNTIL: expired for
    // good, no password the agent sets ever authenticates, on any backend.
    `ALTER ROLE ${role} ${citus ? 'LOGIN ' : ''}VALID UNTIL '-infinity'`,
    // A workspace role is a member of no role. On Citus a copy grants its copier the source's
    // role for one transaction; a process that stopped before taking it back left the role
    // inheriting another workspace's privileges, for whatever used that id next.
    `DO $pgw_members$ DECLARE granted name; BEGIN
       FOR granted IN SELECT r.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.roleid
                       WHERE m.member OPERATOR(pg_catalog.=) ${literal(p.roleName)}::pg_catalog.regrole LOOP
         EXECUTE pg_catalog.format('REVOKE %I FROM %I', granted, ${literal(p.roleName)});
       END LOOP;
     END $pgw_members$`,
    `REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC`,
    `GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${role}`,
    `SELECT ${quoteIdent(SANDBOX_SCHEMA)}.adopt_objects(${literal(p.schemaName)}, ${literal(p.roleName)})`,
    `GRANT CREATE ON SCHEMA ${quoteIdent(SANDBOX_SCHEMA)} TO ${role}`,
    // As a member of the role from the old function's drop to the new one's hand-over. On Citus
    // the new function reaches the workers as CREATE OR REPLACE, and the old one, the role's,
    // may still be there: only its owner may replace it. The server's own EXECUTE, found in the
    // function's ACL (it is no member of the role between transactions), is the owner's grant.
    memberFor(
      p.roleName,
      [
        dropSandboxFunction(p.schemaName),
        `CREATE FUNCTION ${sandboxFunction(p.schemaName)}(step text, statement text, max_rows integer, max_bytes integer)
RETURNS text LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = ${sandboxSearchPath(p).map(quoteIdent).join(', ')}
AS $sandbox$${sandboxSource(p)}$sandbox$`,
        `REVOKE ALL ON FUNCTION ${fn} FROM PUBLIC`,
        `ALTER FUNCTION ${fn} OWNER TO ${role}`,
        `GRANT EXECUTE ON FUNCTION ${fn} TO ${quoteIdent(serverRole)}`,
      ].join(';\n'),
    ),
    `REVOKE CREATE ON SCHEMA ${quoteIdent(SANDBOX_SCHEMA)} FROM ${role}`,
  ]
    .filter(Boolean)
    .join(';\n');
}

/**
 * On Citus, before an agent's CREATE TABLE in a workspace whose schema's colocation group holds
 * no table yet (its extensions make none): distributeNewTables colocates a new table with one
 * already there, and there was none, so the agent's tables stayed local on the coordinator. An
 * empty table is then made first, top-level in the call's transaction (which Citus makes a table
 * of the group) and dropped after the agent's tables joined it, both as the workspace's role:
 * Citus refuses a transaction's placements to a user other than the one that modified them. Runs
 * nothing of the agent's. Also answers who the server is, to set the role back.
 */
export const NEEDS_DISTRIBUTION_ANCHOR = `
  SELECT current_user::text AS server,
         NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_dist_schema d ON d.colocationid = p.colocationid
                      WHERE d.schemaid = pg_catalog.to_regnamespace($1)) AS needed`;

/** `statement` (top-level) as the workspace's role, the server its member for it only (as VACUUM's role is set). */
export function anchorStatements(p: Principal, server: string, statement: string): string[] {
  const [role, self] = [quoteIdent(p.roleName), quoteIdent(server)];
  return [`GRANT ${role} TO ${self}`, `SET LOCAL ROLE ${role}`, statement, `SET LOCAL ROLE ${self}`, `REVOKE ${role} FROM ${self}`];
}

/** The anchor's table in the workspace's schema (see NEEDS_DISTRIBUTION_ANCHOR). */
export function distributionAnchor(schemaName: string): string {
  return `${quoteIdent(schemaName)}.pgw_distribution_anchor`;
}

/**
 * On Citus, run by the sandbox (as the workspace) after an agent's CREATE TABLE: Citus makes
 * a table of a distributed schema a tenant table only when CREATE TABLE is a top-level
 * statement, not one run from PL/pgSQL, so every table of the schema still local is made a
 * single-shard table colocated with the schema's others, as Citus would have.
 */
export function distributeNewTables(schemaName: string): string {
  const schema = `${literal(schemaName)}::pg_catalog.regnamespace`;
  return `SELECT pg_catalog.create_distributed_table(c.oid::pg_catalog.regclass, NULL, colocate_with => a.anchor)
  FROM pg_catalog.pg_class c,
       (SELECT p.logicalrelid::pg_catalog.regclass::pg_catalog.text AS anchor
          FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_dist_schema d ON d.colocationid OPERATOR(pg_catalog.=) p.colocationid
         WHERE d.schemaid OPERATOR(pg_catalog.=) ${schema} LIMIT 1) a
 WHERE c.relnamespace OPERATOR(pg_catalog.=) ${schema} AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::"char"[])
   AND NOT c.relispartition
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) c.oid)`;
}

/**
 * The search path the whole body runs with, set by the function's own SET clause (not by a
 * set_config in the body: statements before it would then run with the caller's path in one call
 * and the path the previous call left in the next, and PostgreSQL re-plans a cached statement
 * whenever its search path changed, every statement of the body before the set_config each
 * call). PostgreSQL puts the caller's path back when the function returns. The shared body
 * runs with its caller's path, so a connection re-plans its statements once when it passes from
 * one workspace to another, and never while it serves the same one.
 */
export function sandboxSearchPath(p: Principal): string[] {
  return [...new Set([p.schemaName, ...p.searchPath]), 'pg_temp'];
}

/**
 * A workspace's sandbox function's body (`prosrc`): the shared body, called with the workspace's
 * schema and role. The server compares it with the function's, so a function from an older
 * server, or one changed in any way, is made again.
 */
export function sandboxSource(p: Principal): string {
  return `SELECT ${quoteIdent(SANDBOX_BODY_SCHEMA)}.run(step, statement, max_rows, max_bytes, ${literal(p.schemaName)}, ${literal(p.roleName)})`;
}

/**
 * Makes the shared body (see sandboxBodySource); every principalScript runs it first, under
 * SANDBOX_LOCK_CLASS, so a body that is not exactly this server's is replaced.
 */
export function sandboxBodyScript(): string {
  return `CREATE OR REPLACE FUNCTION ${quoteIdent(SANDBOX_BODY_SCHEMA)}.run(step text, statement text, max_rows integer, max_bytes integer,
                                                         schema_name text, role_name text)
RETURNS text LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $sandbox$${sandboxBodySource()}$sandbox$`;
}

/**
 * The shared body (`prosrc`), run as the workspace role whose sandbox function called it, with
 * that function's search path. The server compares it with the function's, so a body from an
 * older server, or one changed in any way, is made again. Steps: `open` opens RESULT_PORTAL on a
 * row-returning statement; `fetch` reads at most max_rows of it and at most max_bytes of their
 * JSON (plus one row, to tell truncation; `execute` then counts the rest) and finishes; `run`
 * executes a statement without rows and finishes; `script` runs a workspace DDL/migration
 * script and finishes. Finishing fires deferred constraints here, inside the sandbox, then
 * refuses what would outlive the call on a pooled connection (cursors, temp objects, prepared
 * statements, deferrable triggers that would fire at COMMIT as the server) and resets the session
 * (session advisory locks released, random() seeded afresh, sequences' currval and lastval
 * discarded, RESET ALL, UNLISTEN *). Every path out through an error also drops prepared
 * statements and session advisory locks, seeds random() and discards the sequences' state, which a
 * rollback keeps.
 *
 * Advisory locks are released, not refused: the server's own (install, workspace) are
 * transaction-scoped, and one the agent takes is held while its statement runs whether or not
 * the sandbox refuses it afterwards; what matters is that none outlives the call. A
 * transaction-level one ends with the call's transaction, a session-level one here. (Refusing
 * needed a scan of pg_locks, the whole lock table and the predicate locks, on every call.)
 *
 * Rows come back as `to_json(row)`, a plain expression with no query per row; the server reads
 * their members in order (readSandboxAnswer), keeping numbers exact.
 */
export function sandboxBodySource(): string {
  return `
DECLARE
  result refcursor := ${literal(RESULT_PORTAL)};
  sandboxed boolean := false;
  item record;
  item_json json;
  item_bytes integer;
  taken integer := 0;
  bytes bigint := 0;
  by_bytes boolean := false;
  more boolean := false;
  counted bigint := 0;
  items json[] := '{}';
  answer text;
  timeout text;
  counting boolean;
  err_state text;
  err_message text;
  err_detail text;
  err_hint text;
  err_context text;
  granted text;
  in_background text;
BEGIN
  BEGIN
    PERFORM pg_catalog.set_config('role', 'none', true);
  EXCEPTION WHEN insufficient_privilege THEN
    sandboxed := true;
  END;
  IF NOT sandboxed OR current_user OPERATOR(pg_catalog.<>) role_name THEN
    RAISE EXCEPTION 'the SQL sandbox of workspace % is not intact', schema_name USING ERRCODE = '${SANDBOX_BROKEN}';
  END IF;
  BEGIN
    -- The server's statement timeout, set before this call (no agent code ran since): agent code
    -- may change it, and it is put back for the server's next statement in this transaction
    -- (the fetch, whose timeout is armed from the setting when it starts; an upgrade's next step).
    timeout := pg_catalog.current_setting('statement_timeout');
    IF step OPERATOR(pg_catalog.=) 'open' THEN
      -- Agent code folded while the statement is planned (an IMMUTABLE function) may have changed it.
      OPEN result FOR EXECUTE statement;
      PERFORM pg_catalog.set_config('statement_timeout', timeout, true);
      RETURN NULL;
    ELSIF step OPERATOR(pg_catalog.=) 'fetch' THEN
      WHILE taken OPERATOR(pg_catalog.<) max_rows LOOP
        FETCH result INTO item;
        EXIT WHEN NOT FOUND;
        item_json := pg_catalog.to_json(item);
        item_bytes := pg_catalog.octet_length(item_json::pg_catalog.text);
        IF bytes OPERATOR(pg_catalog.+) item_bytes OPERATOR(pg_catalog.>) max_bytes THEN
          -- This row is left out: it counts as one more, as the row MOVE reads below would.
          by_bytes := true;
          EXIT;
        END IF;
        bytes := bytes OPERATOR(pg_catalog.+) item_bytes;
        items := items OPERATOR(pg_catalog.||) item_json;
        taken := taken OPERATOR(pg_catalog.+) 1;
      END LOOP;
      IF by_bytes THEN
        more := true;
      ELSE
        MOVE FORWARD 1 FROM result;
        more := FOUND;
      END IF;
      IF more AND statement OPERATOR(pg_catalog.=) 'count' THEN
        MOVE FORWARD ALL FROM result;
        GET DIAGNOSTICS counted = ROW_COUNT;
        counted := counted OPERATOR(pg_catalog.+) 1;
      END IF;
      CLOSE result;
      answer := pg_catalog.json_build_object('more', more, 'by_bytes', by_bytes, 'total', taken OPERATOR(pg_catalog.+) counted,
                                             'rows', pg_catalog.array_to_json(items))::pg_catalog.text;
    ELSIF step OPERATOR(pg_catalog.=) 'run' OR step OPERATOR(pg_catalog.=) 'script' THEN
      EXECUTE statement;
      GET DIAGNOSTICS counted = ROW_COUNT;
      answer := pg_catalog.json_build_object('total', counted)::pg_catalog.text;
    ELSE
      RAISE EXCEPTION 'unknown sandbox step %', step;
    END IF;
    -- Deferred constraint triggers would otherwise fire at COMMIT, as the server.
    SET CONSTRAINTS ALL IMMEDIATE;
    -- Triggers, temporary objects and role settings are catalog rows, and writing any row takes
    -- a transaction id: a transaction without one (every read-only query) made none of them.
    -- Nor did one that wrote no row of pg_trigger (or pg_db_role_setting): the statistics'
    -- counts of this backend's rows inserted and updated there are never below this
    -- transaction's own (they may include earlier ones not yet reported), unless counting is off.
    IF pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL THEN
      counting := pg_catalog.current_setting('track_counts')::pg_catalog.bool;
      IF NOT counting OR pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_trigger'::pg_catalog.regclass)
           OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated('pg_catalog.pg_trigger'::pg_catalog.regclass) OPERATOR(pg_catalog.>) 0 THEN
        -- The schema's relations by pg_depend's index (each depends on its namespace there), then
        -- their triggers by pg_trigger's: pg_class has no index on the namespace alone, so a
        -- join on relnamespace scanned pg_class or pg_trigger, which grow with every workspace.
        IF EXISTS (SELECT FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid OPERATOR(pg_catalog.=) ANY (ARRAY(
                            SELECT d.objid FROM pg_catalog.pg_depend d
                             WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
                               AND d.refobjid OPERATOR(pg_catalog.=) schema_name::pg_catalog.regnamespace
                               AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass))
                      AND t.tgdeferrable AND NOT t.tgisinternal) THEN
          RAISE EXCEPTION 'deferrable triggers are not allowed in a workspace: they would fire at commit, outside the sandbox'
            USING ERRCODE = '${SANDBOX_LEFTOVER}';
        END IF;
      END IF;
      -- What autovacuum evaluates runs in a background worker with no time limit (autovacuum-code.ts):
      -- the role's code there could hold advisory locks the server and other workspaces wait
      -- for, or stall autovacuum for the whole cluster.
      IF NOT counting OR pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_index'::pg_catalog.regclass)
           OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_statistic_ext'::pg_catalog.regclass)
           OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_range'::pg_catalog.regclass) OPERATOR(pg_catalog.>) 0 THEN
        in_background := (${autovacuumCodeOf('role_name')});
        IF in_background IS NOT NULL THEN
          RAISE EXCEPTION 'the workspace''s own functions, operators and domains are not allowed where autovacuum evaluates them (%): it runs them in the background, with no time limit', in_background
            USING ERRCODE = '${SANDBOX_LEFTOVER}',
                  HINT = 'Index built-in expressions only (lower(x), x->>''key''), or store the value in a generated column and index that (on Citus, of built-in functions only); give a range type no subtype_diff of the workspace''s.';
        END IF;
      END IF;
      -- On Citus whoever moves the workspace between workers (a superuser) copies its rows, and its
      -- COPY evaluates CHECK constraints, domain checks and generated columns as that role (copy-code.ts).
      -- The agent's statements only: a script (an upgrade, a copy) makes again what a workspace holds.
      IF step OPERATOR(pg_catalog.<>) 'script' AND (NOT counting OR pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_constraint'::pg_catalog.regclass)
           OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_attrdef'::pg_catalog.regclass) OPERATOR(pg_catalog.>) 0)
         AND EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
        in_background := (${copyEvaluatedCodeOf('schema_name', 'role_name')});
        IF in_background IS NOT NULL THEN
          RAISE EXCEPTION 'on Citus the workspace''s own functions and operators, and VOLATILE functions, are not allowed in CHECK constraints, domain checks and generated columns (%): whoever moves the workspace to another worker (a superuser) copies its rows and evaluates them as itself', in_background
            USING ERRCODE = '${SANDBOX_LEFTOVER}',
                  HINT = 'Use built-in IMMUTABLE or STABLE functions and operators there (length(x) > 0, x <= now()), and compute with your own functions in the statements that write the rows.';
        END IF;
      END IF;
      -- Every object made in a schema (tables, types, functions, operators, collations, text
      -- search configurations and dictionaries, conversions, statistics) records a dependency
      -- on it: one probe of pg_depend's index finds them all.
      IF pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0 AND EXISTS (
           SELECT FROM pg_catalog.pg_depend WHERE refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
                                              AND refobjid OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) THEN
        RAISE EXCEPTION 'temporary objects are not allowed: they would outlive the call on a pooled connection'
          USING ERRCODE = '${SANDBOX_LEFTOVER}';
      END IF;
      -- A role may always ALTER ROLE itself SET ...: harmless for a NOLOGIN role, but not the workspace's to change.
      IF NOT counting OR pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_db_role_setting'::pg_catalog.regclass)
           OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated('pg_catalog.pg_db_role_setting'::pg_catalog.regclass) OPERATOR(pg_catalog.>) 0 THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.setrole
                    WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN
          RAISE EXCEPTION 'role settings are the server''s' USING ERRCODE = '${SANDBOX_LEFTOVER}';
        END IF;
      END IF;
      -- A grant to any other role (PUBLIC included) reaches no rows without USAGE on the schema,
      -- but pg_stats shows a column's common values and histogram to every role that may read it.
      -- Grants are pg_class and pg_attribute updates (or new rows, with default privileges); the
      -- schema's relations are found through pg_depend's index, not a scan of pg_class.
      IF NOT counting OR pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_class'::pg_catalog.regclass)
           OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated('pg_catalog.pg_class'::pg_catalog.regclass)
           OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated('pg_catalog.pg_attribute'::pg_catalog.regclass) OPERATOR(pg_catalog.>) 0 THEN
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c.relname), ', ' ORDER BY c.relname) INTO granted
          FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.objid
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=) schema_name::pg_catalog.regnamespace
           AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND (EXISTS (SELECT FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee OPERATOR(pg_catalog.<>) c.relowner)
                OR EXISTS (SELECT FROM pg_catalog.pg_attribute t, pg_catalog.aclexplode(t.attacl) a
                            WHERE t.attrelid OPERATOR(pg_catalog.=) c.oid AND t.attacl IS NOT NULL AND a.grantee OPERATOR(pg_catalog.<>) c.relowner));
        IF granted IS NOT NULL THEN
          RAISE EXCEPTION 'grants to roles outside the workspace are not allowed (on %): pg_stats would show the values to them', granted
            USING ERRCODE = '${SANDBOX_LEFTOVER}', HINT = 'Grant nothing to other roles or PUBLIC; REVOKE what was granted (REVOKE ALL ON ... FROM PUBLIC).';
        END IF;
        -- Autovacuum's workers serve the whole cluster: a table's own cost settings (a delay of
        -- 100 ms per page or so) would keep one busy on it for hours, and a few such tables
        -- every worker. Reloptions are the table's pg_class row, or its TOAST table's.
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c.relname), ', ' ORDER BY c.relname) INTO in_background
          FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.objid
               LEFT JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) c.reltoastrelid
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=) schema_name::pg_catalog.regnamespace
           AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND EXISTS (SELECT FROM pg_catalog.unnest(pg_catalog.array_cat(c.reloptions, t.reloptions)) o
                        WHERE o OPERATOR(pg_catalog.~~) 'autovacuum\\_%');
        IF in_background IS NOT NULL THEN
          RAISE EXCEPTION 'autovacuum settings of a table are not the workspace''s to make (on %): its workers serve every database of the cluster', in_background
            USING ERRCODE = '${SANDBOX_LEFTOVER}', HINT = 'Leave autovacuum_* and toast.autovacuum_* storage parameters unset; VACUUM and ANALYZE through execute run when you ask.';
        END IF;
      END IF;
      -- Large objects belong to no schema: one granted to others could be read by them outright.
      IF NOT counting OR pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_largeobject_metadata'::pg_catalog.regclass)
           OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated('pg_catalog.pg_largeobject_metadata'::pg_catalog.regclass) OPERATOR(pg_catalog.>) 0 THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_largeobject_metadata m, pg_catalog.aclexplode(m.lomacl) a
                    WHERE m.lomowner OPERATOR(pg_catalog.=) role_name::pg_catalog.regrole AND a.grantee OPERATOR(pg_catalog.<>) m.lomowner) THEN
          RAISE EXCEPTION 'grants to roles outside the workspace are not allowed (on a large object)' USING ERRCODE = '${SANDBOX_LEFTOVER}';
        END IF;
      END IF;
    END IF;
    -- The protocol's unnamed portal (running this call) is listed as ''.
    IF EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE name OPERATOR(pg_catalog.<>) '') THEN
      RAISE EXCEPTION 'a cursor was left open: each call is one statement and keeps no session state'
        USING ERRCODE = '${SANDBOX_LEFTOVER}';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_prepared_statements) THEN
      RAISE EXCEPTION 'a prepared statement was left behind: each call is one statement and keeps no session state'
        USING ERRCODE = '${SANDBOX_LEFTOVER}';
    END IF;
    -- Session-level advisory locks would outlive the call; transaction-level ones end with the
    -- call's transaction, as they would have had the sandbox refused them (see sandboxSource).
    -- And the rest of what a session keeps: random()'s seed, sequences' currval and lastval
    -- (another workspace's lastval() would name this one's sequence), LISTEN, settings.
    PERFORM pg_catalog.pg_advisory_unlock_all(), ${RESEED_RANDOM};
    DISCARD SEQUENCES;
    UNLISTEN *;
    RESET ALL;
    PERFORM pg_catalog.set_config('statement_timeout', timeout, true);
    RETURN answer;
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    -- A rollback keeps these: they are not transactional.
    DEALLOCATE ALL;
    PERFORM pg_catalog.pg_advisory_unlock_all(), ${RESEED_RANDOM};
    DISCARD SEQUENCES;
    -- An error's text is the agent's to choose (RAISE, or a value quoted in PostgreSQL's own
    -- message), up to a gigabyte: cut here, before it is sent (the server's reader bounds it
    -- too, and notices, which no handler catches; see bounded-messages.ts).
    GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT, err_detail = PG_EXCEPTION_DETAIL,
                            err_hint = PG_EXCEPTION_HINT, err_context = PG_EXCEPTION_CONTEXT;
    IF GREATEST(pg_catalog.length(err_message), pg_catalog.length(err_detail), pg_catalog.length(err_hint),
                           pg_catalog.length(err_context)) OPERATOR(pg_catalog.>) ${SANDBOX_ERROR_FIELD_CHARS} THEN
      RAISE EXCEPTION USING ERRCODE = err_state, MESSAGE = pg_catalog.left(err_message, ${SANDBOX_ERROR_FIELD_CHARS}) OPERATOR(pg_catalog.||) ' …',
        DETAIL = pg_catalog.left(COALESCE(err_detail, ''), ${SANDBOX_ERROR_FIELD_CHARS}), HINT = pg_catalog.left(COALESCE(err_hint, ''), ${SANDBOX_ERROR_FIELD_CHARS});
    END IF;
    RAISE;
  END;
END
`;
}
