import { parse } from 'libpg-query';
import { quoteLiteral } from '../db/identifiers.js';

/**
 * A first, parser-level check of SQL sent to `query` and `execute` (defence in depth: the
 * wall is the workspace's role and its sandbox). PostgreSQL's own parser (libpg-query, no
 * database involved, so no agent code runs) splits the text: exactly one statement, of a kind
 * the tool accepts.
 */

export type AgentSqlMode = 'query' | 'execute';

/** A single JSON value bound to `$n`: vectors as arrays of numbers. */
export type AgentParam = string | number | boolean | null | number[] | Record<string, unknown> | unknown[];

export class AgentSqlError extends Error {
  override name = 'AgentSqlError';
}

export interface AgentStatement {
  /** The SQL with every `$n` replaced by its value as a literal. */
  sql: string;
  kind: string;
  /** SELECT, VALUES, SHOW, EXPLAIN or a statement with RETURNING. */
  returnsRows: boolean;
  /** What PostgreSQL's command tag would start with, e.g. "INSERT", "CREATE TABLE". */
  command: string;
}

const READ_KINDS = new Set(['SelectStmt', 'ExplainStmt', 'ShowStmt']);

/** What `execute` takes: data changes and DDL of objects that live inside a schema. */
const EXECUTE_KINDS: Record<string, string> = {
  SelectStmt: 'SELECT',
  ExplainStmt: 'EXPLAIN',
  ShowStmt: 'SHOW',
  InsertStmt: 'INSERT',
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE',
  MergeStmt: 'MERGE',
  TruncateStmt: 'TRUNCATE',
  CreateStmt: 'CREATE TABLE',
  CreateTableAsStmt: 'CREATE TABLE AS',
  AlterTableStmt: 'ALTER TABLE',
  DropStmt: 'DROP',
  IndexStmt: 'CREATE INDEX',
  ViewStmt: 'CREATE VIEW',
  CreateSeqStmt: 'CREATE SEQUENCE',
  AlterSeqStmt: 'ALTER SEQUENCE',
  CreateFunctionStmt: 'CREATE FUNCTION',
  CreateTrigStmt: 'CREATE TRIGGER',
  CreateEnumStmt: 'CREATE TYPE',
  CompositeTypeStmt: 'CREATE TYPE',
  CreateDomainStmt: 'CREATE DOMAIN',
  CreateRangeStmt: 'CREATE TYPE',
  DefineStmt: 'CREATE',
  RenameStmt: 'ALTER',
  CommentStmt: 'COMMENT',
  CreateStatsStmt: 'CREATE STATISTICS',
  RefreshMatViewStmt: 'REFRESH MATERIALIZED VIEW',
  // Of the workspace's own tables: see maintenance-statement.ts.
  VacuumStmt: 'VACUUM',
};

/** What the parse tree says about a text, whatever the mode and the parameters. */
interface Analysis {
  statements: number;
  kind: string;
  selectInto: boolean;
  returnsRows: boolean;
  refs: { number: number; location: number }[];
}

/**
 * Agents send the same statement again and again with other parameters (an INSERT per row): the
 * analysis of a short text is kept, so those calls skip the parser. Bounded in entries and in
 * text length; the oldest entry goes first.
 */
const analyses = new Map<string, Analysis>();
const ANALYSES_KEPT = 256;
const ANALYSED_TEXT_KEPT = 4096;

async function analyse(sql: string): Promise<Analysis> {
  const kept = analyses.get(sql);
  if (kept) return kept;
  let tree: Awaited<ReturnType<typeof parse>>;
  try {
    tree = await parse(sql);
  } catch (error) {
    throw new AgentSqlError(`Syntax error: ${(error as Error).message}`);
  }
  const statements = tree.stmts ?? [];
  const [kind, node] = Object.entries(statements[0]?.stmt ?? {})[0] ?? ['Unknown', {}];
  const body = node as Record<string, unknown>;
  const returning = body['returningClause'] ?? body['returningList'];
  const analysis: Analysis = {
    statements: statements.length,
    kind,
    selectInto: kind === 'SelectStmt' && Boolean(body['intoClause']),
    returnsRows:
      READ_KINDS.has(kind) ||
      (Array.isArray((returning as { exprs?: unknown[] })?.exprs) && (returning as { exprs: unknown[] }).exprs.length > 0) ||
      (Array.isArray(returning) && returning.length > 0),
    refs: collectParams(node),
  };
  if (sql.length <= ANALYSED_TEXT_KEPT) {
    if (analyses.size >= ANALYSES_KEPT) analyses.delete(analyses.keys().next().value as string);
    analyses.set(sql, analysis);
  }
  return analysis;
}

/** Parses, checks and binds one statement of agent SQL. */
export async function prepareAgentStatement(sql: string, params: readonly AgentParam[], mode: AgentSqlMode): Promise<AgentStatement> {
  const { statements, kind, selectInto, returnsRows, refs } = await analyse(sql);
  if (statements !== 1) {
    throw new AgentSqlError(
      `Send exactly one SQL statement per call (got ${statements}); transactions are managed by the server: each call is one.`,
    );
  }
  if (selectInto) {
    throw new AgentSqlError('SELECT INTO is not supported: use CREATE TABLE ... AS with execute.');
  }
  if (mode === 'query' && !READ_KINDS.has(kind)) {
    throw new AgentSqlError(`query runs read-only statements (SELECT, VALUES, EXPLAIN, SHOW), not ${kind}: use execute to change data or tables.`);
  }
  const command = EXECUTE_KINDS[kind];
  if (mode === 'execute' && !command) {
    throw new AgentSqlError(
      `execute does not run ${kind}: it runs one data change (INSERT, UPDATE, DELETE, MERGE, TRUNCATE), DDL of ` +
        'objects inside the workspace (tables, indexes, views, sequences, functions, triggers, types) or VACUUM/ANALYZE of its tables. Transaction control, ' +
        'roles, grants, settings, COPY, DO blocks and session state are the server\'s.',
    );
  }
  return { sql: bindParams(sql, refs, params), kind, returnsRows, command: command ?? 'SELECT' };
}

function collectParams(node: unknown, found: { number: number; location: number }[] = []) {
  if (Array.isArray(node)) {
    for (const item of node) collectParams(item, found);
  } else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'ParamRef') {
        const ref = value as { number?: number; location?: number };
        found.push({ number: ref.number ?? 0, location: ref.location ?? 0 });
      } else {
        collectParams(value, found);
      }
    }
  }
  return found;
}

/**
 * `$n` becomes its value as a quoted literal, which PostgreSQL types from context exactly as it
 * types an untyped bound parameter (`$1::vector`, `id = $1`). Positions come from the parser, so
 * a `$1` inside a string or a comment is left alone. The text only ever runs as the workspace's
 * role, so the substitution cannot reach further than the SQL itself could.
 */
function bindParams(sql: string, refs: { number: number; location: number }[], params: readonly AgentParam[]): string {
  const used = new Set(refs.map((r) => r.number));
  for (const n of used) {
    if (n < 1 || n > params.length) {
      throw new AgentSqlError(`The SQL uses $${n} but ${params.length} parameter(s) were given.`);
    }
  }
  if (refs.length === 0) return sql;
  const bytes = Buffer.from(sql, 'utf8');
  let out = '';
  let at = 0;
  for (const ref of [...refs].sort((a, b) => a.location - b.location)) {
    let end = ref.location + 1;
    while (end < bytes.length && (bytes[end] as number) >= 0x30 && (bytes[end] as number) <= 0x39) end++;
    out += bytes.subarray(at, ref.location).toString('utf8') + literalOf(params[ref.number - 1] ?? null);
    at = end;
  }
  return out + bytes.subarray(at).toString('utf8');
}

function literalOf(value: AgentParam): string {
  if (value === null) return 'NULL';
  if (typeof value === 'string') return quoteLiteral(value);
  if (typeof value === 'number' || typeof value === 'boolean') return quoteLiteral(String(value));
  // An array of numbers is a vector literal ('[1,2,3]'); anything else is JSON.
  if (Array.isArray(value) && value.every((v) => typeof v === 'number')) return quoteLiteral(`[${value.join(',')}]`);
  return quoteLiteral(JSON.stringify(value));
}
