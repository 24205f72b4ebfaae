/**
 * What a COPY into a workspace's tables evaluates as whoever runs it: CHECK constraints (the
 * tables' and their domains') and generated columns. On Citus the role that moves a workspace
 * between workers (citus_schema_move, the rebalancer, citus_drain_node: a superuser, since only
 * an owner of both the schema and its tables may, and nobody else is) copies its rows so: an
 * agent's CHECK ran as the superuser that moved it (red team round 4). So there the sandbox
 * refuses such an expression that calls the workspace's own functions or operators, or any
 * VOLATILE function (a built-in one as a superuser reads files, writes them, runs any SQL:
 * pg_read_file, lo_export, query_to_xml); built-in IMMUTABLE and STABLE ones are fine.
 *
 * Built-in functions are pinned, so pg_depend records no dependency on them: the functions an
 * expression calls are read from its stored tree (`:funcid`, `:opfuncid`, and `:opno` through
 * its operator's function). The schema's tables and types by pg_depend's index, then their
 * constraints and column expressions by the same index, never a scan of a whole catalog.
 * `schema` and `role` are SQL expressions for their names. Operators are fully qualified: the
 * sandbox body runs with the workspace's search path.
 */
export function copyEvaluatedCodeOf(schema: string, role: string): string {
  return `
    WITH members AS MATERIALIZED (
      SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
       WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
         AND d.refobjid OPERATOR(pg_catalog.=) (${schema})::pg_catalog.regnamespace
         AND d.classid OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_type'::pg_catalog.regclass])),
    parts AS MATERIALIZED (
      SELECT d.classid, d.objid FROM pg_catalog.pg_depend d JOIN members m ON d.refclassid OPERATOR(pg_catalog.=) m.classid AND d.refobjid OPERATOR(pg_catalog.=) m.objid
       WHERE d.classid OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.pg_constraint'::pg_catalog.regclass, 'pg_catalog.pg_attrdef'::pg_catalog.regclass])),
    exprs (what, tree) AS (
      SELECT pg_catalog.pg_describe_object(p.classid, p.objid, 0), c.conbin::pg_catalog.text
        FROM parts p JOIN pg_catalog.pg_constraint c ON c.oid OPERATOR(pg_catalog.=) p.objid
       WHERE p.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass AND c.contype OPERATOR(pg_catalog.=) 'c'::pg_catalog."char"
      UNION ALL
      SELECT pg_catalog.pg_describe_object(p.classid, p.objid, 0), a.adbin::pg_catalog.text
        FROM parts p JOIN pg_catalog.pg_attrdef a ON a.oid OPERATOR(pg_catalog.=) p.objid
        JOIN pg_catalog.pg_attribute t ON t.attrelid OPERATOR(pg_catalog.=) a.adrelid AND t.attnum OPERATOR(pg_catalog.=) a.adnum
       WHERE p.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND t.attgenerated OPERATOR(pg_catalog.=) 's'::pg_catalog."char"),
    calls (what, fn) AS (
      SELECT e.what, CASE WHEN m[1] OPERATOR(pg_catalog.=) 'opno'
                          THEN (SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.=) m[2]::pg_catalog.oid)
                          ELSE m[2]::pg_catalog.oid END
        FROM exprs e CROSS JOIN LATERAL pg_catalog.regexp_matches(e.tree, ':(funcid|opfuncid|opno) (\\d+)', 'g') m)
    SELECT pg_catalog.string_agg(DISTINCT c.what, ', ')
      FROM calls c JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) c.fn
     WHERE p.provolatile OPERATOR(pg_catalog.=) 'v'::pg_catalog."char" OR p.proowner OPERATOR(pg_catalog.=) pg_catalog.to_regrole(${role})`;
}
