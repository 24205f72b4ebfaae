import type { Queryable } from './database.js';
import { memberFor } from './role-membership.js';

/*
 * VACUUM and ANALYZE run a table's index expressions as the table's owner, and those may call
 * any function of the owner's, GRANT and ALTER ROLE included. In a SQL tool call the sandbox
 * refuses, and rolls back, a grant to another role (pg_stats shows a table's values to every role
 * that may read it; a large object granted is read outright) or a role setting. VACUUM runs
 * outside the sandbox (it cannot run in a transaction), and the embedded store's idle-time
 * maintenance outside any call: a workspace's index expression granted its table and a large
 * object to PUBLIC there, and another workspace read both. What they committed cannot be rolled
 * back, so after each such statement the server undoes it: the owner's relations and large
 * objects granted to anyone but the owner are revoked, and its role settings reset. Catalog
 * statements only: no agent code runs.
 */

/** The statements that undo what `$1`'s objects grant to other roles, and its role settings. */
const UNDO_STATEMENTS = `
WITH owner AS (SELECT r.oid, r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname = $1),
here AS (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()),
grantee_names (what, grantee) AS (
  SELECT pg_catalog.format('%s %I.%I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname), g.grantee
    FROM owner o
    JOIN pg_catalog.pg_shdepend s ON s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND s.refobjid = o.oid
     AND s.deptype = 'o' AND s.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND s.dbid = (SELECT oid FROM here)
    JOIN pg_catalog.pg_class c ON c.oid = s.objid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL (SELECT a.grantee FROM pg_catalog.aclexplode(c.relacl) a
                        UNION SELECT a.grantee FROM pg_catalog.pg_attribute t, pg_catalog.aclexplode(t.attacl) a
                         WHERE t.attrelid = c.oid AND t.attacl IS NOT NULL) g
   WHERE g.grantee <> o.oid
  UNION
  SELECT pg_catalog.format('LARGE OBJECT %s', m.oid), a.grantee
    FROM owner o JOIN pg_catalog.pg_largeobject_metadata m ON m.lomowner = o.oid
    CROSS JOIN LATERAL pg_catalog.aclexplode(m.lomacl) a
   WHERE a.grantee <> o.oid
)
SELECT pg_catalog.format('REVOKE ALL ON %s FROM %s CASCADE', what,
         pg_catalog.string_agg(CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(grantee)::text) END, ', ')) AS statement
  FROM grantee_names GROUP BY what
UNION ALL
SELECT pg_catalog.format('ALTER ROLE %I%s RESET ALL', o.rolname, CASE WHEN s.setdatabase = 0 THEN '' ELSE pg_catalog.format(' IN DATABASE %I', d.datname) END)
  FROM owner o JOIN pg_catalog.pg_db_role_setting s ON s.setrole = o.oid
  LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
 WHERE s.setdatabase IN (0, (SELECT oid FROM here))`;

/**
 * Undoes what the code of `role`'s tables granted or set (see above), in the caller's transaction;
 * answers the statements it ran, none when there was nothing. The REVOKEs run with the server a
 * member of the role (memberFor): a role that is neither the owner nor a member of it revokes
 * nothing, with a mere warning.
 */
export async function undoTableCodeGrants(q: Queryable, role: string): Promise<string[]> {
  const statements = (await q.query<{ statement: string }>(UNDO_STATEMENTS, [role])).map((r) => r.statement);
  if (statements.length > 0) await q.exec(memberFor(role, statements.join(';\n')));
  return statements;
}
