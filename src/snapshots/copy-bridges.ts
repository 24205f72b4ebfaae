import type { Queryable } from '../db/database.js';
import { SANDBOX_SCHEMA } from '../sandbox/sandbox-ddl.js';
import { WorkspaceLifecycleError } from '../workspaces/workspace-lifecycle.js';

/*
 * A copy (a fork's new workspace, or a snapshot) runs as a role that may, for that transaction,
 * write the new schema and read (or own) the source. A fork's: the source's role on PostgreSQL,
 * the new workspace's role with a membership of the source's on Citus. A snapshot's: the
 * workspace's role on PostgreSQL (the copy is handed to the snapshot role after), the snapshot
 * role with a membership of the workspace's on Citus. Agent code the copy evaluates (a CHECK
 * validated as it is added, a materialized view, a domain) runs then with both, and what it makes
 * outlives the copy: a trigger on the new workspace's table calling a SECURITY DEFINER function of
 * the source's sent every row the new workspace's agent wrote to the source; a trigger on the
 * source's table calling a function made in the new workspace (which the fork hands to the new
 * role) let the source's agent run code as the new workspace's role; a view in the workspace over
 * its snapshot's table opened to PUBLIC, or a function of the snapshot role's in the workspace
 * calling setval by OID, let the agent change its snapshot. References by name are checked again
 * at run time (USAGE on the schema); references by OID are not, and PostgreSQL records every one
 * of those in pg_depend. So after the copy, before anything is registered, the server reads the
 * catalogs (no agent code runs) and refuses the copy, rolling it back, when:
 * - an object of the copy (a member of its schema, or what belongs to one: indexes, constraints,
 *   triggers, defaults, policies, rules, row and TOAST types) depends on an object of a
 *   workspace, a snapshot or the registry (any other schema named project_...), extension
 *   members and system objects being fine;
 * - an object outside it depends on one of its objects;
 * - its schema holds anything but relations, types and routines (what the copy makes): an
 *   operator's commutator and negator are references pg_depend does not record;
 * - one of its objects is owned by, granted to or names (a policy) another role (a snapshot's
 *   policies may name the workspace's role: they apply again once it is restored), or is
 *   granted to PUBLIC (pg_stats shows what every role may read; setval takes an OID);
 * - the copy's owner owns or is granted anything outside it: its SQL sandbox aside, and a
 *   workspace role's own large objects, and a snapshot role's other snapshots of the workspace.
 */

const BRIDGES = `
WITH RECURSIVE
target AS (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1),
owner AS (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2),
policy_role AS (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $4),
reader AS (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $6),
here AS (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()),
copied (classid, objid) AS (
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, target
   WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = target.oid
  UNION
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d JOIN copied f ON d.refclassid = f.classid AND d.refobjid = f.objid
   WHERE d.deptype IN ('a', 'i')
),
outgoing AS (
  SELECT d.* FROM copied f JOIN pg_catalog.pg_depend d ON d.classid = f.classid AND d.objid = f.objid
   WHERE NOT EXISTS (SELECT FROM copied g WHERE g.classid = d.refclassid AND g.objid = d.refobjid)
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
  SELECT pg_catalog.format('%s is nothing a copy makes', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid))
    FROM pg_catalog.pg_depend d, target
   WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = target.oid
     AND d.classid NOT IN ('pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_type'::pg_catalog.regclass,
                           'pg_catalog.pg_proc'::pg_catalog.regclass)
  UNION ALL
  SELECT pg_catalog.format('%s depends on %s', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
                           pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid))
    FROM copied f JOIN pg_catalog.pg_depend d ON d.refclassid = f.classid AND d.refobjid = f.objid
   WHERE NOT EXISTS (SELECT FROM copied g WHERE g.classid = d.classid AND g.objid = d.objid)
  UNION ALL
  SELECT pg_catalog.format('%s %s role %s', pg_catalog.pg_describe_object(s.classid, s.objid, s.objsubid),
                           CASE s.deptype WHEN 'o' THEN 'belongs to' WHEN 'a' THEN 'is granted to' ELSE 'names' END,
                           pg_catalog.pg_get_userbyid(s.refobjid))
    FROM pg_catalog.pg_shdepend s
   WHERE s.dbid = (SELECT oid FROM here) AND s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
     AND (CASE WHEN EXISTS (SELECT FROM copied f WHERE f.classid = s.classid AND f.objid = s.objid)
               THEN s.refobjid <> (SELECT oid FROM owner)
                    AND NOT (s.deptype = 'r' AND s.refobjid IS NOT DISTINCT FROM (SELECT oid FROM policy_role))
                    AND NOT (s.deptype = 'a' AND s.refobjid IS NOT DISTINCT FROM (SELECT oid FROM reader))
               ELSE s.refobjid = (SELECT oid FROM owner)
                    AND NOT (s.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND s.objid = (SELECT oid FROM target))
                    AND NOT ($5 AND s.classid = 'pg_catalog.pg_largeobject'::pg_catalog.regclass AND s.deptype = 'o')
                    AND NOT (s.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND s.objid IN (
                               SELECT p.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                                WHERE n.nspname = '${SANDBOX_SCHEMA}' AND p.proname = $1))
                    AND NOT COALESCE((SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = CASE s.classid
                          WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = s.objid)
                          WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN (SELECT p.pronamespace FROM pg_catalog.pg_proc p WHERE p.oid = s.objid)
                          WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN (SELECT t.typnamespace FROM pg_catalog.pg_type t WHERE t.oid = s.objid)
                        END) = ANY ($3::pg_catalog.text[]), false)
          END)
  UNION ALL
  SELECT pg_catalog.format('%s is granted to PUBLIC', pg_catalog.pg_describe_object(f.classid, f.objid, 0))
    FROM copied f JOIN pg_catalog.pg_class c ON f.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = f.objid
   WHERE EXISTS (SELECT FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee = 0)
      OR EXISTS (SELECT FROM pg_catalog.pg_attribute t, pg_catalog.aclexplode(t.attacl) a
                  WHERE t.attrelid = c.oid AND t.attacl IS NOT NULL AND a.grantee = 0)
)
SELECT problem FROM found ORDER BY problem LIMIT 10`;

/** Who may own and be named in a copy, and where else its owner may own objects. */
interface CopyBoundary {
  /** The schema the copy filled. */
  schema: string;
  /** The role its objects belong to. */
  owner: string;
  /** Schemas whose objects the owner may own too (a snapshot role's other snapshots of the workspace). */
  ownerAlsoIn: readonly string[];
  /** A role the copy's policies may name besides the owner (a snapshot's name the workspace's role). */
  policiesMayName: string | null;
  /** The owner's own large objects are fine (a workspace role's are; a snapshot role makes none). */
  ownerLargeObjects: boolean;
  /** A role its objects may be granted to: on Citus, the reader of a copy from it, dropped once the copy committed (snapshot-reader.ts). */
  reader?: string;
}

async function copyBridges(tx: Queryable, b: CopyBoundary): Promise<string> {
  const rows = await tx.query<{ problem: string }>(BRIDGES, [b.schema, b.owner, [...b.ownerAlsoIn], b.policiesMayName, b.ownerLargeObjects, b.reader ?? null]);
  return rows.map((row) => row.problem).join('; ');
}

/** Refuses the fork (its transaction is rolled back) when its copy left a bridge between workspaces. */
export async function refuseForkBridges(tx: Queryable, r: { from: string; to: string; toSchema: string; toRole: string }): Promise<void> {
  const problems = await copyBridges(tx, { schema: r.toSchema, owner: r.toRole, ownerAlsoIn: [], policiesMayName: null, ownerLargeObjects: true });
  if (!problems) return;
  throw new WorkspaceLifecycleError(
    `The fork of "${r.from}" into "${r.to}" is refused: code the copy ran made objects that would link the two workspaces ` +
      `(${problems}). Find what makes them (a CHECK, domain or materialized view of "${r.from}" ` +
      'that runs DDL), remove it, and fork again. Nothing was changed.',
  );
}

/**
 * Refuses the snapshot (its transaction is rolled back) when its copy left the workspace a way to
 * its snapshots, or the snapshot role anything outside them: a snapshot must stay as it was taken.
 */
export async function refuseSnapshotBridges(
  tx: Queryable,
  s: { projectId: string; schema: string; keeper: string; workspaceRole: string; otherSnapshots: readonly string[]; reader?: string },
  what = `The snapshot of "${s.projectId}"`,
): Promise<void> {
  const problems = await copyBridges(tx, {
    schema: s.schema,
    owner: s.keeper,
    ownerAlsoIn: s.otherSnapshots,
    policiesMayName: s.workspaceRole,
    ownerLargeObjects: false,
    ...(s.reader ? { reader: s.reader } : {}),
  });
  if (!problems) return;
  throw new WorkspaceLifecycleError(
    `${what} is refused: code the copy ran made objects that would let the workspace reach its snapshots ` +
      `(${problems}). Find what makes them (a CHECK, domain or materialized view of "${s.projectId}" that runs DDL or GRANT), ` +
      'remove it, and try again. Nothing was changed.',
  );
}
