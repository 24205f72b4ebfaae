import { parse, type RangeVar } from 'libpg-query';
import type { SqlFile } from './extension.js';

/**
 * Structural statements give the database its shape and run before migrations; dependent ones
 * (indexes, views, functions, grants…) may reference what migrations add, so they run after.
 */
export type StatementRole = 'structural' | 'dependent' | 'other';

export interface Statement {
  readonly file: string;
  /** 1-based position of the statement in its file, of `total`. */
  readonly number: number;
  readonly total: number;
  readonly line: number;
  /** libpg-query node name, e.g. `CreateStmt`. */
  readonly kind: string;
  /** The statement's parse tree (the node under `kind`), for checks that look inside it. */
  readonly tree: Readonly<Record<string, unknown>>;
  readonly role: StatementRole;
  readonly sql: string;
  /** For CREATE TABLE: the table, schema-qualified only when the SQL qualifies it. */
  readonly createsTable?: { schema: string | undefined; name: string };
  /** For DROP TABLE: the unqualified names of the tables dropped. */
  readonly dropsTables?: string[];
  /** The schemas the statement names (qualified names, schema statements), for reserved ids. */
  readonly schemas: readonly string[];
}

export class SqlFileError extends Error {
  override name = 'SqlFileError';
  constructor(file: string, detail: string) {
    super(`${file}: ${detail}`);
  }
}

const STRUCTURAL = new Set([
  'CreateStmt',
  'CreateSchemaStmt',
  'CreateSeqStmt',
  'CompositeTypeStmt',
  'CreateEnumStmt',
  'CreateRangeStmt',
  'CreateDomainStmt',
]);

const DEPENDENT = new Set([
  'IndexStmt',
  'ViewStmt',
  'CreateFunctionStmt',
  'CreateTrigStmt',
  'CommentStmt',
  'GrantStmt',
  'AlterDefaultPrivilegesStmt',
  'DoStmt',
  'CreatePolicyStmt',
  'AlterTableStmt',
  'AlterSeqStmt',
  'CreateTableAsStmt',
  'RuleStmt',
  'CreateStatsStmt',
  'AlterOwnerStmt',
]);

/** Splits a file with PostgreSQL's own parser; a syntax error names the file and line. */
export async function parseStatements(file: SqlFile): Promise<Statement[]> {
  let tree: Awaited<ReturnType<typeof parse>>;
  try {
    tree = await parse(file.sql);
  } catch (error) {
    const cursor = (error as { sqlDetails?: { cursorPosition?: number } }).sqlDetails?.cursorPosition;
    const where = cursor === undefined ? '' : ` at line ${lineAt(file.sql, cursor)}`;
    throw new SqlFileError(file.path, `syntax error${where}: ${(error as Error).message}`);
  }
  // Parser locations are byte offsets into the UTF-8 text, not string indexes.
  const bytes = Buffer.from(file.sql, 'utf8');
  const raws = tree.stmts ?? [];
  return raws.map((raw, index) => {
    const start = raw.stmt_location ?? 0;
    const end = raw.stmt_len ? start + raw.stmt_len : bytes.length;
    const text = bytes.subarray(start, end).toString('utf8');
    const sql = text.trim();
    const offset = start + Buffer.byteLength(text.slice(0, text.length - text.trimStart().length));
    const [kind, node] = Object.entries(raw.stmt ?? {})[0] ?? ['Unknown', {}];
    const statement: Statement = {
      file: file.path,
      number: index + 1,
      total: raws.length,
      line: lineAt(file.sql, bytes.subarray(0, offset).toString('utf8').length),
      kind,
      tree: node as Record<string, unknown>,
      role: roleOf(kind, node as Record<string, unknown>),
      sql,
      schemas: [...namedSchemas(node)],
    };
    const relation = kind === 'CreateStmt' ? (node as { relation?: RangeVar }).relation : undefined;
    if (relation?.relname) return { ...statement, createsTable: { schema: relation.schemaname, name: relation.relname } };
    if (kind === 'DropStmt' && (node as { removeType?: string }).removeType === 'OBJECT_TABLE') {
      // Each dropped object is a name list such as [schema, table]; the table is its last part.
      const objects = (node as { objects?: { List?: { items?: { String?: { sval?: string } }[] } }[] }).objects ?? [];
      const names = objects.map((o) => o.List?.items?.at(-1)?.String?.sval).filter((n): n is string => n !== undefined);
      return { ...statement, dropsTables: names };
    }
    return statement;
  });
}

type Node = Record<string, unknown>;

/** `[{String: {sval}}, ...]` as strings, or undefined for any other list. */
function nameParts(list: unknown): string[] | undefined {
  if (!Array.isArray(list) || list.length === 0) return undefined;
  const parts = list.map((item) => (item as { String?: { sval?: unknown } } | null)?.String?.sval);
  return parts.every((p): p is string => typeof p === 'string') ? parts : undefined;
}

/** Lists of strings that are not qualified names: column references (table.column), enum labels. */
const NOT_NAMES = new Set(['fields', 'vals']);

/**
 * The schemas a parse tree names: `schemaname` of relations and CREATE SCHEMA, the schema part
 * of qualified names (functions, types, comments, drops...), and the objects of statements about
 * schemas (GRANT ON SCHEMA, DROP/ALTER/COMMENT SCHEMA, default privileges IN SCHEMA, SET SCHEMA).
 * What dynamic SQL names (EXECUTE, DO) cannot be seen here.
 */
function namedSchemas(node: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(node)) {
    const parts = nameParts(node);
    if (parts && parts.length >= 2) found.add(parts[parts.length - 2] as string);
    for (const item of node) namedSchemas(item, found);
    return found;
  }
  if (typeof node !== 'object' || node === null) return found;
  const n = node as Node;
  for (const key of ['schemaname', 'newschema'] as const) if (typeof n[key] === 'string') found.add(n[key]);
  const aboutSchemas = [n['objtype'], n['removeType'], n['renameType'], n['objectType']].includes('OBJECT_SCHEMA');
  if (aboutSchemas) {
    for (const key of ['subname', 'newname']) if (typeof n[key] === 'string') found.add(n[key]);
    const object = (n['object'] as { String?: { sval?: unknown } } | undefined)?.String?.sval;
    if (typeof object === 'string') found.add(object);
    for (const name of nameParts(n['objects']) ?? []) found.add(name);
  }
  if (n['defname'] === 'schemas') for (const name of nameParts((n['arg'] as { List?: { items?: unknown } })?.List?.items) ?? []) found.add(name);
  for (const [key, value] of Object.entries(n)) {
    // An option's value (a function's AS 'file', 'symbol', say) is no name either.
    if (!NOT_NAMES.has(key) && !(key === 'arg' && 'defname' in n)) namedSchemas(value, found);
  }
  return found;
}

function roleOf(kind: string, node: Record<string, unknown>): StatementRole {
  if (STRUCTURAL.has(kind)) return 'structural';
  if (kind === 'DefineStmt') return node['kind'] === 'OBJECT_TYPE' ? 'structural' : 'dependent';
  if (DEPENDENT.has(kind)) return 'dependent';
  return 'other';
}

function lineAt(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** Statements the installer refuses in every file: it owns transactions and extension creation. */
export function rejectInstallerOwnedStatements(statements: readonly Statement[]): void {
  for (const s of statements) {
    if (s.kind === 'TransactionStmt') {
      throw new SqlFileError(
        s.file,
        `statement ${s.number} (line ${s.line}) controls the transaction; remove it: the installer runs each file inside its own transaction.`,
      );
    }
    if (s.kind === 'CreateExtensionStmt') {
      throw new SqlFileError(
        s.file,
        `statement ${s.number} (line ${s.line}) creates a PostgreSQL extension; list it in extension.json "requires" instead, so boot can check it is available and say how to install it.`,
      );
    }
  }
}
