import { parse } from 'libpg-query';
import pg from 'pg';
import { quoteIdent } from '../db/identifiers.js';
import { AgentSqlError } from './agent-statement.js';

/**
 * VACUUM and ANALYZE sent to `execute`, of the workspace's own tables only. The names are
 * resolved and their owner checked as the workspace's role, in its sandbox (RESOLVE_NAMED,
 * WORKSPACE_TABLES); the statement then runs on the resolved names as the workspace's role:
 * ANALYZE in the sandbox like any statement, VACUUM (which cannot run in a transaction, so not in
 * the sandbox function) through Database.runAsRole. Either way PostgreSQL refuses a table the
 * role does not own, and runs the table's code (index expressions) as its owner.
 */
export interface MaintenanceStatement {
  command: 'VACUUM' | 'ANALYZE';
  /** The options as SQL, e.g. `(ANALYZE, INDEX_CLEANUP 'off')`, or empty. */
  options: string;
  /** The tables named, each quoted (schema-qualified when the agent qualified it), with its column list as SQL; none: all of the workspace's. */
  tables: { name: string; columns: string }[];
}

/** Options with no effect beyond the tables named; database-wide ones (ONLY_DATABASE_STATS...) are the server's. */
const VACUUM_OPTIONS = new Set(['full', 'freeze', 'verbose', 'analyze', 'skip_locked', 'index_cleanup', 'truncate', 'process_main', 'process_toast', 'disable_page_skipping']);
const ANALYZE_OPTIONS = new Set(['verbose', 'skip_locked']);

interface DefElem {
  defname: string;
  arg?: { Boolean?: { boolval?: boolean }; Integer?: { ival?: number }; String?: { sval?: string } };
}
interface VacuumRelation {
  relation: { schemaname?: string; relname: string };
  va_cols?: { String?: { sval?: string } }[];
}

export async function parseMaintenance(sql: string): Promise<MaintenanceStatement> {
  const tree = await parse(sql);
  const node = (tree.stmts?.[0]?.stmt as { VacuumStmt?: { is_vacuumcmd?: boolean; options?: { DefElem: DefElem }[]; rels?: { VacuumRelation: VacuumRelation }[] } })
    .VacuumStmt;
  if (!node) throw new AgentSqlError('not a VACUUM or ANALYZE statement');
  const command = node.is_vacuumcmd ? 'VACUUM' : 'ANALYZE';
  const allowed = node.is_vacuumcmd ? VACUUM_OPTIONS : ANALYZE_OPTIONS;
  const options = (node.options ?? []).map(({ DefElem: d }) => {
    if (!allowed.has(d.defname)) {
      throw new AgentSqlError(
        `${command} option ${d.defname.toUpperCase()} is not available to a workspace; use ${[...allowed].map((o) => o.toUpperCase()).join(', ')}.`,
      );
    }
    const arg = d.arg;
    const value =
      arg?.Boolean !== undefined ? String(arg.Boolean.boolval ?? false)
      : arg?.Integer !== undefined ? String(arg.Integer.ival ?? 0)
      : arg?.String !== undefined ? pg.escapeLiteral(arg.String.sval ?? '')
      : undefined;
    return value === undefined ? d.defname.toUpperCase() : `${d.defname.toUpperCase()} ${value}`;
  });
  const tables = (node.rels ?? []).map(({ VacuumRelation: r }) => ({
    name: [r.relation.schemaname, r.relation.relname].filter((part) => part !== undefined).map(quoteIdent).join('.'),
    columns: r.va_cols?.length ? ` (${r.va_cols.map((c) => quoteIdent(c.String?.sval ?? '')).join(', ')})` : '',
  }));
  return { command, options: options.length > 0 ? ` (${options.join(', ')})` : '', tables };
}

/** The statement on the tables as resolved (schema-qualified, in the agent's order). */
export function maintenanceSql(statement: MaintenanceStatement, resolved: readonly { qualified: string; columns: string }[]): string {
  return `${statement.command}${statement.options} ${resolved.map((t) => `${t.qualified}${t.columns}`).join(', ')}`;
}

/**
 * Run as the workspace's role in its sandbox ($1: the names as a JSON array): how each resolves
 * there (its search path puts the workspace first), whether it is a table of the workspace and
 * whether the workspace's role owns it.
 */
export const RESOLVE_NAMED = `
SELECT n.name, pg_catalog.quote_ident(s.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname) AS qualified,
       c.oid IS NOT NULL AS found,
       s.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema() AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,m,p}') AS inside,
       c.relowner OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user) AS owned
  FROM pg_catalog.jsonb_array_elements_text($1::pg_catalog.jsonb) WITH ORDINALITY AS n(name, i)
  LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(n.name)
  LEFT JOIN pg_catalog.pg_namespace s ON s.oid OPERATOR(pg_catalog.=) c.relnamespace
 ORDER BY n.i`;

/** Run as the workspace's role in its sandbox: the tables (and materialized views) of the workspace it owns. */
export const WORKSPACE_TABLES = `
SELECT pg_catalog.format('%I.%I', s.nspname, c.relname) AS qualified
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE s.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema() AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,m,p}')
   AND c.relowner OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user)
 ORDER BY c.relname`;
