/**
 * What autovacuum would evaluate of a workspace role's own code: PostgreSQL's workers run index
 * expressions and predicates and extended statistics' expressions (ANALYZE, BRIN summaries) and a
 * range type's subtype_diff (ANALYZE of any column of it) in the background, as the table's owner,
 * with no time limit, and only a superuser may cancel them. One query for the two places that ask:
 * the sandbox, which refuses such objects at the end of the call that made them, and doctor, which
 * reports any made before that check.
 *
 * `role` is an SQL expression for the role's name. The objects it owns, wherever it made them
 * (pg_shdepend's index), then what depends on them (pg_depend's): functions and operators, and
 * domains and range types (a cast to a domain runs its checks). Operators are fully qualified: the
 * sandbox body runs with the workspace's search path.
 */
export function autovacuumCodeOf(role: string): string {
  return `
    SELECT pg_catalog.string_agg(DISTINCT pg_catalog.pg_describe_object(u.classid, u.objid, 0), ', ')
      FROM pg_catalog.pg_shdepend o
      JOIN pg_catalog.pg_depend u ON u.refclassid OPERATOR(pg_catalog.=) o.classid AND u.refobjid OPERATOR(pg_catalog.=) o.objid
     WHERE o.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND o.refobjid OPERATOR(pg_catalog.=) pg_catalog.to_regrole(${role}) AND o.deptype OPERATOR(pg_catalog.=) 'o'
       AND o.dbid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
       AND (o.classid OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_operator'::pg_catalog.regclass])
            OR (o.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
                AND (SELECT t.typtype FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) o.objid) OPERATOR(pg_catalog.=) ANY (ARRAY['d', 'r', 'm']::pg_catalog.char[])))
       AND (u.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass
            OR (u.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) u.objid) OPERATOR(pg_catalog.=) ANY (ARRAY['i', 'I']::pg_catalog.char[]))
            OR (u.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass AND o.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                AND (SELECT t.typtype FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) u.objid) OPERATOR(pg_catalog.=) 'r'))`;
}
