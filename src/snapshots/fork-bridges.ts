import type { Queryable } from '../db/database.js';
import { SANDBOX_SCHEMA } from '../sandbox/sandbox-ddl.js';
import { WorkspaceLifecycleError } from '../workspaces/workspace-lifecycle.js';

/*
 * A fork's copy runs as a role that may, for that transaction, write the new workspace and read
 * (or own) the source: the source's role on PostgreSQL, the new workspace's role with a membership
 * of the source's on Citus. Agent code the copy evaluates (a CHECK validated as it is added, a
 * materialized view, a domain) runs then with both, and what it makes outlives the copy: a
 * trigger on the new workspace's table calling a SECURITY DEFINER function of the source's sent
 * every row the new workspace's agent wrote to the source; a trigger on the source's table calling
 * a function made in the new workspace (which the fork hands to the new role) let the source's
 * agent run code as the new workspace's role. References by name are checked again at run time
 * (USAGE on the schema); references by OID are not, and PostgreSQL records every one of those in
 * pg_depend. So after the copy, before anything is registered, the server reads the catalogs (no
 * agent code runs) and refuses the fork, rolling it back, when:
 * - an object of the new workspace (a member of its schema, or what belongs to one: indexes,
 *   constraints, triggers, defaults, policies, rules, row and TOAST types) depends on an object of
 *   another workspace, a snapshot or the registry (any schema named project_...), extension
 *   members and system objects being fine;
 * - an object outside it depends on one of its objects;
 * - its schema holds anything but relations, types and routines (what the copy makes): an
 *   operator's commutator and negator are references pg_depend does not record;
 * - one of its objects is owned by, granted to or names (a policy) another role, or is granted to
 *   PUBLIC (pg_stats shows what every role may read);
 * - the new role owns or is granted anything outside it (its schema, its SQL sandbox and its own
 *   large objects aside).
 */

const BRIDGES = `
WITH RECURSIVE
target AS (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1),
owner AS (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2),
here AS (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()),
fork (classid, objid) AS (
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, target
   WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = target.oid
  UNION
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d JOIN fork f ON d.refclassid = f.classid AND d.refobjid = f.objid
   WHERE d.deptype IN ('a', 'i')
),
outgoing AS (
  SELECT d.* FROM fork f JOIN pg_catalog.pg_depend d ON d.classid = f.classid AND d.objid = f.objid
   WHERE NOT EXISTS (SELECT FROM fork g WHERE g.classid = d.refclassid AND g.objid = d.refobjid)
     AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend e WHERE e.classid = d.refclassid AND e.objid = d.refobjid AND e.deptype = 'e')
),
found (problem) AS (
  SELECT pg_catalog.format('%s depends on %s', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
                           pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid))
    FROM outgoing d
    CROSS JOIN LATERAL (SELECT CASE d.refclassid
             WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN d.refobjid
             WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN
               (SELECT c.relnamespace FROM pg_catalog.pg_trigger x JOIN pg_catalog.pg_class c ON c.oid = x.tgrelid WHERE x.oid = d.refobjid)
             WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN
               (SELECT c.relnamespace FROM pg_catalog.pg_attrdef x JOIN pg_catalog.pg_class c ON c.oid = x.adrelid WHERE x.oid = d.refobjid)
             WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN
               (SELECT c.relnamespace FROM pg_catalog.pg_policy x JOIN pg_catalog.pg_class c ON c.oid = x.polrelid WHERE x.oid = d.refobjid)
             WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN
               (SELECT c.relnamespace FROM pg_catalog.pg_rewrite x JOIN pg_catalog.pg_class c ON c.oid = x.ev_class WHERE x.oid = d.refobjid)
             ELSE (SELECT n.oid FROM pg_catalog.pg_namespace n
                    WHERE n.nspname = (pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0)).schema) END AS nsp) s
    JOIN pg_catalog.pg_namespace n ON n.oid = s.nsp
   WHERE n.nspname LIKE 'project\\_%' AND n.oid <> (SELECT oid FROM target)
  UNION ALL
  -- The copy makes tables, views, sequences, indexes, types and routines only. Operators and the
  -- like hold references pg_depend does not record (an operator's commutator and negator).
  SELECT pg_catalog.format('%s is nothing a fork copies', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid))
    FROM pg_catalog.pg_depend d, target
   WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = target.oid
     AND d.classid NOT IN ('pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_type'::pg_catalog.regclass,
                           'pg_catalog.pg_proc'::pg_catalog.regclass)
  UNION ALL
  SELECT pg_catalog.format('%s depends on %s', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
                           pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid))
    FROM fork f JOIN pg_catalog.pg_depend d ON d.refclassid = f.classid AND d.refobjid = f.objid
   WHERE NOT EXISTS (SELECT FROM fork g WHERE g.classid = d.classid AND g.objid = d.objid)
  UNION ALL
  SELECT pg_catalog.format('%s %s role %s', pg_catalog.pg_describe_object(s.classid, s.objid, s.objsubid),
                           CASE s.deptype WHEN 'o' THEN 'belongs to' WHEN 'a' THEN 'is granted to' ELSE 'names' END,
                           pg_catalog.pg_get_userbyid(s.refobjid))
    FROM pg_catalog.pg_shdepend s
   WHERE s.dbid = (SELECT oid FROM here) AND s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
     AND (CASE WHEN EXISTS (SELECT FROM fork f WHERE f.classid = s.classid AND f.objid = s.objid)
               THEN s.refobjid <> (SELECT oid FROM owner)
               ELSE s.refobjid = (SELECT oid FROM owner)
                    AND NOT (s.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND s.objid = (SELECT oid FROM target))
                    AND NOT (s.classid = 'pg_catalog.pg_largeobject'::pg_catalog.regclass AND s.deptype = 'o')
                    AND NOT (s.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND s.objid IN (
                               SELECT p.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                                WHERE n.nspname = '${SANDBOX_SCHEMA}' AND p.proname = $1))
          END)
  UNION ALL
  SELECT pg_catalog.format('%s is granted to PUBLIC', pg_catalog.pg_describe_object(f.classid, f.objid, 0))
    FROM fork f JOIN pg_catalog.pg_class c ON f.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = f.objid
   WHERE EXISTS (SELECT FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee = 0)
      OR EXISTS (SELECT FROM pg_catalog.pg_attribute t, pg_catalog.aclexplode(t.attacl) a
                  WHERE t.attrelid = c.oid AND t.attacl IS NOT NULL AND a.grantee = 0)
)
SELECT problem FROM found ORDER BY problem LIMIT 10`;

/** Refuses the fork (its transaction is rolled back) when its copy left a bridge between workspaces. */
export async function refuseForkBridges(tx: Queryable, r: { from: string; to: string; toSchema: string; toRole: string }): Promise<void> {
  const rows = await tx.query<{ problem: string }>(BRIDGES, [r.toSchema, r.toRole]);
  if (rows.length === 0) return;
  throw new WorkspaceLifecycleError(
    `The fork of "${r.from}" into "${r.to}" is refused: code the copy ran made objects that would link the two workspaces ` +
      `(${rows.map((row) => row.problem).join('; ')}). Find what makes them (a CHECK, domain or materialized view of "${r.from}" ` +
      'that runs DDL), remove it, and fork again. Nothing was changed.',
  );
}
