import { autovacuumCodeOf } from './autovacuum-code.js';

/**
 * On Citus, the sandbox's autovacuum rules on every worker, enforced by PostgreSQL there. A router
 * query runs whole on the workspace's worker, its function calls included, and the sandbox's
 * end-of-call checks see the coordinator only: an agent's function, pushed down, made an index of
 * its own function on its shard and set the shard's autovacuum costs, which autovacuum on that
 * worker then ran as the owner with no time limit (red team round 4). Citus lets its own sessions
 * run DDL on shards. An event trigger fires in the same transaction as the DDL, whichever session
 * runs it, and its error fails the agent's statement, so the whole call rolls back; it fires only
 * on the commands that can make such objects, and checks workspace roles (`pgw_…`) only, never
 * Citus's superuser nor the server. It also refuses them triggers, which Citus refuses on the
 * coordinator (a deferred one on a shard would fire at the worker's commit, past the sandbox).
 * Only a superuser may make or change an event trigger: an administrator runs
 * WORKER_GUARD_STATEMENTS on every worker, and the SQL tools refuse until each has it, exactly as
 * written (sandbox-capability.ts).
 */
export const WORKER_GUARD = 'pgw_worker_guard';

/** The commands that can make an index, a statistics object, a range type, a table's reloptions or a trigger. */
const TAGS = [
  'ALTER DOMAIN',
  'ALTER INDEX',
  'ALTER MATERIALIZED VIEW',
  'ALTER TABLE',
  'ALTER TYPE',
  'CREATE DOMAIN',
  'CREATE INDEX',
  'CREATE MATERIALIZED VIEW',
  'CREATE STATISTICS',
  'CREATE TABLE',
  'CREATE TABLE AS',
  'CREATE TRIGGER',
  'CREATE TYPE',
  'SELECT INTO',
];

/**
 * The tables of `role` (an SQL expression for its name) in this database that carry autovacuum
 * settings, theirs or their TOAST table's (as the sandbox refuses them), by pg_shdepend's index.
 */
function autovacuumSettingsOf(role: string): string {
  return `
    SELECT pg_catalog.string_agg(c.oid::pg_catalog.regclass::pg_catalog.text, ', ' ORDER BY c.oid)
      FROM pg_catalog.pg_shdepend o JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) o.objid
           LEFT JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) c.reltoastrelid
     WHERE o.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND o.refobjid OPERATOR(pg_catalog.=) pg_catalog.to_regrole(${role}) AND o.deptype OPERATOR(pg_catalog.=) 'o'
       AND o.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND o.dbid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
       AND EXISTS (SELECT FROM pg_catalog.unnest(pg_catalog.array_cat(c.reloptions, t.reloptions)) r WHERE r OPERATOR(pg_catalog.~~) 'autovacuum\\_%')`;
}

/** The guard's body (prosrc), compared by the SQL tools' check with the worker's. */
export const WORKER_GUARD_SOURCE = `
DECLARE found text;
BEGIN
  IF current_user::text NOT LIKE 'pgw\\_%' THEN RETURN; END IF;
  IF TG_TAG OPERATOR(pg_catalog.=) 'CREATE TRIGGER' THEN
    RAISE EXCEPTION 'triggers are not the workspace''s to make on a Citus worker: Citus refuses them on its tables'
      USING ERRCODE = 'PW011';
  END IF;
  found := (${autovacuumCodeOf('current_user::text')});
  IF found IS NOT NULL THEN
    RAISE EXCEPTION 'the workspace''s own functions, operators and domains are not allowed where autovacuum evaluates them (%), on this Citus worker either', found
      USING ERRCODE = 'PW011';
  END IF;
  found := (${autovacuumSettingsOf('current_user::text')});
  IF found IS NOT NULL THEN
    RAISE EXCEPTION 'autovacuum settings of a table are not the workspace''s to make (on %), on this Citus worker either', found
      USING ERRCODE = 'PW011';
  END IF;
END
`;

/**
 * For doctor, asked of each worker: what the guard refuses, held by workspace roles there (made
 * before it, by a workspace's function a router query pushed down, or by an index made on the
 * coordinator before the sandbox refused it), one `role<TAB>objects` a line.
 */
export const WORKER_AUTOVACUUM_CODE = `
  SELECT coalesce(pg_catalog.string_agg(r.rolname::text || E'\\t' || pg_catalog.concat_ws(', ', a.objects, 'autovacuum settings on ' || s.objects), E'\\n' ORDER BY r.rolname), '')
    FROM pg_catalog.pg_roles r
   CROSS JOIN LATERAL (${autovacuumCodeOf('r.rolname::text')}) a(objects)
   CROSS JOIN LATERAL (${autovacuumSettingsOf('r.rolname::text')}) s(objects)
   WHERE r.rolname LIKE 'pgw\\_%' AND (a.objects IS NOT NULL OR s.objects IS NOT NULL)`;

/** What an administrator runs, as a superuser, in the database on every worker (docs/citus.md). */
export const WORKER_GUARD_STATEMENTS = [
  `CREATE OR REPLACE FUNCTION pg_catalog.${WORKER_GUARD}() RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $pgw_guard$${WORKER_GUARD_SOURCE}$pgw_guard$;`,
  `DROP EVENT TRIGGER IF EXISTS ${WORKER_GUARD};`,
  `CREATE EVENT TRIGGER ${WORKER_GUARD} ON ddl_command_end WHEN TAG IN (${TAGS.map((t) => `'${t}'`).join(', ')}) EXECUTE FUNCTION pg_catalog.${WORKER_GUARD}();`,
];

/** True on a node whose guard is there, enabled, for those commands, with exactly this body. */
export const WORKER_GUARD_IN_PLACE = `EXISTS (
  SELECT FROM pg_catalog.pg_event_trigger e JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid
   WHERE e.evtname = '${WORKER_GUARD}' AND e.evtevent = 'ddl_command_end' AND e.evtenabled IN ('O', 'A')
     AND e.evttags::text[] @> '{${TAGS.map((t) => `"${t}"`).join(',')}}' AND e.evttags::text[] <@ '{${TAGS.map((t) => `"${t}"`).join(',')}}'
     AND p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.prosrc = '${WORKER_GUARD_SOURCE.replaceAll("'", "''")}')`;
