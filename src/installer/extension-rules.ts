import type { Statement } from '../extensions/extension-sql.js';
import type { PreparedExtension } from './prepared-extension.js';

/**
 * The lanes extensions stay in, checked on the parsed SQL at boot, before the database is
 * touched: an extension changes only the tables it creates, reads another extension's tables
 * only when it lists them in `uses_tables`, and its seeds only upsert into its own tables.
 * The installer runs every file as the server's role, which may do all of this, so PostgreSQL
 * cannot draw these lines; what the parser cannot see (DO blocks and function bodies in schema
 * files and migrations, dynamic SQL) is the extension author's responsibility, and docs/extensions.md says so.
 */
export class ExtensionRuleError extends Error {
  override name = 'ExtensionRuleError';

  constructor(extensionId: string, statement: Statement, problem: string, fix: string) {
    super(
      `Extension "${extensionId}", ${statement.file} statement ${statement.number} (line ${statement.line}): ` +
        `${snippet(statement.sql)}\n${problem}\nFix: ${fix}`,
    );
  }
}

/** Global files name tables `schema.table` (unqualified means public); workspace files by bare name. */
type Scope = 'global' | 'workspace';
type Node = Record<string, unknown>;

interface Write {
  readonly key: string;
  /** What the statement does to the table, as a verb phrase: "alters", "creates an index on". */
  readonly verb: string;
  /** Row changes (INSERT, UPDATE, DELETE, MERGE, TRUNCATE), as opposed to changes of the table itself. */
  readonly data: boolean;
  /** The statement node, for INSERT's ON CONFLICT. */
  readonly node: Node;
  readonly kind: string;
}

interface References {
  readonly writes: readonly Write[];
  /** Statements about whole schemas (DROP SCHEMA, ALTER SCHEMA RENAME, GRANT ... IN SCHEMA). */
  readonly schemas: ReadonlyArray<{ name: string; verb: string }>;
  readonly reads: readonly string[];
  /** Unqualified names of the functions called. */
  readonly calls: readonly string[];
}

/** What every enabled extension's SQL declares, gathered once for all the checks. */
interface Catalog {
  /** Table key to the id of the extension whose SQL creates it. */
  readonly owners: ReadonlyMap<string, string>;
  /** Tables with a primary key, unique or exclusion constraint somewhere in the SQL. */
  readonly uniqueKeyed: ReadonlySet<string>;
  /** Volatile functions the extensions create (unqualified name to extension id): they may write. */
  readonly volatileFunctions: ReadonlyMap<string, string>;
}

interface Lane {
  readonly id: string;
  readonly uses: ReadonlySet<string>;
}

export function checkExtensionRules(prepared: readonly PreparedExtension[]): void {
  const catalog = catalogOf(prepared);
  for (const p of prepared) {
    const lane: Lane = { id: p.extension.id, uses: new Set(p.extension.usesTables) };
    for (const [scope, statements] of scopedStatements(p)) {
      for (const s of statements) checkLane(s, referencesOf(s, scope), lane, catalog);
    }
    for (const s of p.seeds) checkSeed(s, lane, catalog);
  }
}

function scopedStatements(p: PreparedExtension): Array<[Scope, Statement[]]> {
  return [
    ['global', [...p.structural, ...p.dependent, ...p.migrations.flatMap((m) => m.statements)]],
    ['workspace', [...p.workspace.structural, ...p.workspace.dependent, ...p.workspace.migrations.flatMap((m) => m.statements)]],
  ];
}

function catalogOf(prepared: readonly PreparedExtension[]): Catalog {
  const owners = new Map<string, string>();
  const uniqueKeyed = new Set<string>();
  const volatileFunctions = new Map<string, string>();
  for (const p of prepared) {
    for (const [scope, statements] of scopedStatements(p)) {
      for (const s of statements) {
        const created = s.kind === 'CreateStmt' ? rangeVar(s.tree['relation']) : undefined;
        // The first extension to create a table owns it; install-plan refuses two schema files
        // creating one table, and a migration creating another's table is refused below.
        if (created && !owners.has(keyOf(created, scope))) owners.set(keyOf(created, scope), p.extension.id);
        const keyed =
          (s.kind === 'IndexStmt' && s.tree['unique'] === true) ||
          (['CreateStmt', 'AlterTableStmt'].includes(s.kind) && hasUniqueConstraint(s.tree));
        const relation = rangeVar(s.tree['relation']);
        if (keyed && relation) uniqueKeyed.add(keyOf(relation, scope));
        if (s.kind === 'CreateFunctionStmt' && s.tree['is_procedure'] !== true) {
          const name = nameParts(s.tree['funcname']).at(-1);
          // By name: one volatile overload makes every call of the name suspect.
          if (name !== undefined && isVolatile(s.tree)) volatileFunctions.set(name, p.extension.id);
        }
      }
    }
  }
  return { owners, uniqueKeyed, volatileFunctions };
}

/** Schema files and migrations: change only your own tables, read others' only when declared. */
function checkLane(s: Statement, refs: References, lane: Lane, catalog: Catalog): void {
  for (const w of refs.writes) {
    const owner = catalog.owners.get(w.key);
    if (owner === undefined || owner === lane.id) continue;
    throw new ExtensionRuleError(
      lane.id,
      s,
      `It ${w.verb} ${w.key}, a table of extension "${owner}". ` +
        'An extension changes only the tables its own SQL creates; `uses_tables` declares reads, not writes.',
      w.verb === 'creates'
        ? `two extensions cannot create one table: rename yours, or drop this CREATE and list "${w.key}" in uses_tables.`
        : w.data
          ? `keep this data in a table of "${lane.id}"'s own, or ask "${owner}" to make the change.`
          : `ask "${owner}" to make this change in its own SQL, or give "${lane.id}" its own table ` +
            `(a foreign key to ${w.key}, with "${w.key}" in uses_tables, links the two).`,
    );
  }
  for (const { name, verb } of refs.schemas) {
    const others = [...catalog.owners].filter(([key, owner]) => key.startsWith(`${name}.`) && owner !== lane.id);
    if (others.length === 0) continue;
    const [, owner] = others[0] as [string, string];
    throw new ExtensionRuleError(
      lane.id,
      s,
      `It ${verb} ${name}, which holds ${others.map(([key]) => key).join(', ')} of extension "${owner}".`,
      `leave ${name} to "${owner}"; put "${lane.id}"'s tables in a schema of its own.`,
    );
  }
  checkReads(s, refs, lane, catalog);
}

function checkReads(s: Statement, refs: References, lane: Lane, catalog: Catalog): void {
  for (const key of refs.reads) {
    const owner = catalog.owners.get(key);
    if (owner === undefined || owner === lane.id || lane.uses.has(key)) continue;
    throw new ExtensionRuleError(
      lane.id,
      s,
      `It reads ${key}, a table of extension "${owner}", which "${lane.id}" does not list in uses_tables.`,
      `add "${key}" to "uses_tables" in ${lane.id}'s extension.json, so boot checks that "${owner}" is enabled.`,
    );
  }
}

const REMOVES = new Set(['DeleteStmt', 'TruncateStmt']);
const REWRITES = new Set(['UpdateStmt', 'MergeStmt']);
const OPAQUE: Record<string, string> = {
  DoStmt: 'a DO block',
  CallStmt: 'a CALL',
  SelectStmt: 'a SELECT (in a seed it only runs for what its functions do)',
};
const RERUN =
  'Seeds run again every time the install changes (an extension added, removed or edited), not once';

/**
 * Seeds: `INSERT ... ON CONFLICT` into the extension's own tables, and nothing else, so that
 * running them again on any later install is harmless and touches no one else's data.
 */
function checkSeed(s: Statement, lane: Lane, catalog: Catalog): void {
  const refuse = (problem: string, fix: string) => new ExtensionRuleError(lane.id, s, problem, fix);
  const kind = s.kind.replace(/Stmt$/, '').toUpperCase();
  const what = `${/^[AEIOU]/.test(kind) ? 'an' : 'a'} ${kind}`;
  if (REMOVES.has(s.kind)) {
    throw refuse(
      `Seeds may only insert, and this is ${what}. ${RERUN}: it would remove rows again each time.`,
      'remove data once, in a migration (migrations/NNNN_*.sql runs exactly once).',
    );
  }
  if (REWRITES.has(s.kind)) {
    throw refuse(
      `Seeds may only insert, and this is ${what}. ${RERUN}: it would rewrite rows changed since, each time.`,
      'to keep seeded rows current, use INSERT ... ON CONFLICT (key) DO UPDATE SET ...; to change existing data once, use a migration.',
    );
  }
  if (OPAQUE[s.kind] !== undefined) {
    throw refuse(
      `Seeds may only insert, and this is ${OPAQUE[s.kind]}: what it writes, and whether it can run twice, cannot be checked before it runs.`,
      'write the data as INSERT ... ON CONFLICT statements; put functions in schema.sql and one-off work in a migration.',
    );
  }
  if (s.kind !== 'InsertStmt') {
    throw refuse(
      `Seeds hold data only (INSERT ... ON CONFLICT), and this is ${leadingWords(s.sql)}.`,
      'put DDL in schema.sql (idempotent: IF NOT EXISTS, CREATE OR REPLACE) or in a migration; a seed holds nothing else.',
    );
  }
  const refs = referencesOf(s, 'global');
  for (const w of refs.writes) checkSeedInsert(s, w, lane, catalog);
  checkReads(s, refs, lane, catalog);
  for (const name of refs.calls) {
    const owner = catalog.volatileFunctions.get(name);
    if (owner === undefined) continue;
    throw refuse(
      `It calls ${name}(), a VOLATILE function of extension "${owner}": its body cannot be checked, so it may write anywhere or not be safe to run twice.`,
      `declare ${name}() IMMUTABLE or STABLE if it only computes a value (PostgreSQL then refuses writes inside it), or compute the value in the seed.`,
    );
  }
}

function checkSeedInsert(s: Statement, w: Write, lane: Lane, catalog: Catalog): void {
  const refuse = (problem: string, fix: string) => new ExtensionRuleError(lane.id, s, problem, fix);
  if (w.kind !== 'InsertStmt') {
    throw refuse(
      `Its WITH clause ${w.verb} ${w.key}: seeds may only insert. ${RERUN}.`,
      'write each insert as its own INSERT ... ON CONFLICT statement; change or remove existing data in a migration.',
    );
  }
  const owner = catalog.owners.get(w.key);
  if (owner === undefined) {
    throw refuse(
      `It inserts into ${w.key}, which no enabled extension creates; a seed fills only its own extension's tables.`,
      `create ${w.key} in ${lane.id}/schema.sql, or fix the name (unqualified means public.).`,
    );
  }
  if (owner !== lane.id) {
    throw refuse(
      `It inserts into ${w.key}, a table of extension "${owner}"; a seed fills only its own extension's tables.`,
      `move this seed to "${owner}", or keep the rows in a table "${lane.id}" creates.`,
    );
  }
  if (w.node['onConflictClause'] === undefined) {
    throw refuse(
      `An INSERT without ON CONFLICT loads once, then fails with "duplicate key value violates unique constraint". ${RERUN}, so every later install would fail.`,
      'add ON CONFLICT (key) DO NOTHING, or ON CONFLICT (key) DO UPDATE SET ... to keep the seeded values current.',
    );
  }
  if (!catalog.uniqueKeyed.has(w.key)) {
    throw refuse(
      `${w.key} has no PRIMARY KEY, UNIQUE or EXCLUDE constraint in the SQL that creates it, so ON CONFLICT never fires and every install inserts the rows again.`,
      `give ${w.key} a primary key or unique constraint (in schema.sql, or in a migration for an existing table).`,
    );
  }
}

/** The tables seeds insert into (they passed checkExtensionRules, so only their own), as schema and table. */
export function seedTargets(seeds: readonly Statement[]): Array<{ schema: string; table: string }> {
  const keys = new Set(seeds.flatMap((s) => referencesOf(s, 'global').writes.map((w) => w.key)));
  return [...keys].map((key) => {
    const dot = key.indexOf('.');
    return { schema: key.slice(0, dot), table: key.slice(dot + 1) };
  });
}

/** The tables a statement changes, the schemas it acts on, the tables it reads and the functions it calls. */
function referencesOf(s: Statement, scope: Scope): References {
  const writes: Write[] = [];
  const schemas: Array<{ name: string; verb: string }> = [];
  const claimed = new Set<unknown>();
  const cteNames = new Set<string>();
  const relations: Node[] = [];
  const calls: string[] = [];

  const write = (value: unknown, verb: string, kind: string, node: Node, data = false) => {
    const rv = rangeVar(value);
    if (!rv) return;
    claimed.add(rv);
    writes.push({ key: keyOf(rv, scope), verb, data, node, kind });
  };
  const named = (parts: string[], verb: string, kind: string, node: Node) => {
    if (parts.length > 0) writes.push({ key: keyOfParts(parts, scope), verb, data: false, node, kind });
  };
  const created = (value: unknown) => {
    const rv = rangeVar(value);
    if (rv) claimed.add(rv);
  };

  const statement = (kind: string, n: Node) => {
    const on = (value: unknown, verb: string, data = false) => write(value, verb, kind, n, data);
    switch (kind) {
      case 'InsertStmt': return on(n['relation'], 'inserts into', true);
      case 'UpdateStmt': return on(n['relation'], 'updates', true);
      case 'DeleteStmt': return on(n['relation'], 'deletes from', true);
      case 'MergeStmt': return on(n['relation'], 'merges into', true);
      case 'TruncateStmt': return list(n['relations']).forEach((r) => on(r, 'truncates', true));
      case 'AlterTableStmt': return on(n['relation'], 'alters');
      case 'AlterObjectSchemaStmt': return on(n['relation'], 'moves to another schema');
      case 'IndexStmt': return on(n['relation'], 'creates an index on');
      case 'CreateTrigStmt': return on(n['relation'], 'creates a trigger on');
      case 'CreatePolicyStmt': return on(n['table'], 'creates a policy on');
      case 'AlterPolicyStmt': return on(n['table'], 'alters a policy on');
      case 'RuleStmt': return on(n['relation'], 'creates a rule on');
      case 'CreateStatsStmt': return list(n['relations']).forEach((r) => on(r, 'creates statistics on'));
      case 'CreateStmt':
        // A child table or partition shows up in every query of its parent: that changes the parent.
        list(n['inhRelations']).forEach((r) => on(r, n['partbound'] ? 'adds a partition to' : 'adds an inheriting table to'));
        return on(n['relation'], 'creates');
      case 'CreateTableAsStmt': return on((n['into'] as Node | undefined)?.['rel'], 'creates');
      case 'SelectStmt': return on((n['intoClause'] as Node | undefined)?.['rel'], 'creates');
      case 'ViewStmt': return created(n['view']);
      case 'CreateSeqStmt': return created(n['sequence']);
      case 'CompositeTypeStmt': return created(n['typevar']);
      case 'RenameStmt':
        if (n['renameType'] === 'OBJECT_SCHEMA') return void schemas.push({ name: String(n['subname']), verb: 'renames the schema' });
        return on(n['relation'], n['renameType'] === 'OBJECT_TABLE' ? 'renames' : 'renames part of');
      case 'GrantStmt':
        if (n['objtype'] !== 'OBJECT_TABLE') return;
        if (n['targtype'] === 'ACL_TARGET_ALL_IN_SCHEMA') {
          for (const name of list(n['objects']).map((o) => (o as { String?: { sval?: string } }).String?.sval)) {
            if (name !== undefined) schemas.push({ name, verb: 'changes privileges on every table of the schema' });
          }
          return;
        }
        return list(n['objects']).forEach((r) => on(r, 'changes privileges on'));
      case 'DropStmt': return dropped(n, kind);
      case 'CommentStmt': return commented(n, kind);
      default: return;
    }
  };
  const dropped = (n: Node, kind: string) => {
    const type = n['removeType'];
    for (const object of list(n['objects'])) {
      const parts = nameParts((object as { List?: { items?: unknown } }).List?.items);
      if (type === 'OBJECT_SCHEMA') {
        const name = (object as { String?: { sval?: string } }).String?.sval;
        if (name !== undefined) schemas.push({ name, verb: 'drops the schema' });
      } else if (type === 'OBJECT_TABLE' || type === 'OBJECT_FOREIGN_TABLE') {
        named(parts, 'drops', kind, n);
      } else if (type === 'OBJECT_TRIGGER' || type === 'OBJECT_POLICY' || type === 'OBJECT_RULE') {
        // [schema?, table, name]: the object hangs off the table before its name.
        named(parts.slice(0, -1), `drops a ${String(type).slice('OBJECT_'.length).toLowerCase()} of`, kind, n);
      }
    }
  };
  const commented = (n: Node, kind: string) => {
    const parts = nameParts((n['object'] as { List?: { items?: unknown } } | undefined)?.List?.items);
    if (n['objtype'] === 'OBJECT_TABLE') named(parts, 'comments on', kind, n);
    else if (['OBJECT_COLUMN', 'OBJECT_TRIGGER', 'OBJECT_POLICY', 'OBJECT_RULE', 'OBJECT_TABCONSTRAINT'].includes(String(n['objtype']))) {
      named(parts.slice(0, -1), 'comments on part of', kind, n);
    }
  };

  // Statements nest inside others (data-modifying WITH clauses), so each node is looked at.
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(walk);
    if (typeof value !== 'object' || value === null) return;
    const n = value as Node;
    if (typeof n['relname'] === 'string') relations.push(n);
    if (typeof n['ctename'] === 'string') cteNames.add(n['ctename']);
    if (Array.isArray(n['funcname']) && 'funcformat' in n) {
      const name = nameParts(n['funcname']).at(-1);
      if (name !== undefined) calls.push(name);
    }
    for (const [key, child] of Object.entries(n)) {
      if (key.endsWith('Stmt') && typeof child === 'object' && child !== null) statement(key, child as Node);
      walk(child);
    }
  };
  statement(s.kind, s.tree as Node);
  walk(s.tree);

  const reads = relations
    .filter((rv) => !claimed.has(rv) && !(rv['schemaname'] === undefined && cteNames.has(String(rv['relname']))))
    .map((rv) => keyOf(rv, scope));
  return { writes, schemas, reads: [...new Set(reads)], calls };
}

function keyOf(rv: Node, scope: Scope): string {
  const schema = rv['schemaname'];
  return keyOfParts(typeof schema === 'string' ? [schema, String(rv['relname'])] : [String(rv['relname'])], scope);
}

function keyOfParts(parts: readonly string[], scope: Scope): string {
  const name = parts.at(-1) as string;
  const schema = parts.at(-2);
  if (schema !== undefined) return `${schema}.${name}`;
  return scope === 'global' ? `public.${name}` : name;
}

/** A RangeVar, whether bare (`relation: {relname}`) or wrapped as a list item (`{RangeVar: {...}}`). */
function rangeVar(value: unknown): Node | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const n = ((value as Node)['RangeVar'] ?? value) as Node;
  return typeof n['relname'] === 'string' ? n : undefined;
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function nameParts(items: unknown): string[] {
  return list(items)
    .map((item) => (item as { String?: { sval?: unknown } } | null)?.String?.sval)
    .filter((part): part is string => typeof part === 'string');
}

function hasUniqueConstraint(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasUniqueConstraint);
  if (typeof value !== 'object' || value === null) return false;
  const n = value as Node;
  if (['CONSTR_PRIMARY', 'CONSTR_UNIQUE', 'CONSTR_EXCLUSION'].includes(String(n['contype']))) return true;
  return Object.values(n).some(hasUniqueConstraint);
}

/** PostgreSQL's default is VOLATILE; only IMMUTABLE and STABLE functions are refused writes. */
function isVolatile(tree: Readonly<Node>): boolean {
  const option = list(tree['options'])
    .map((o) => (o as { DefElem?: { defname?: string; arg?: { String?: { sval?: string } } } }).DefElem)
    .find((d) => d?.defname === 'volatility');
  const volatility = option?.arg?.String?.sval ?? 'volatile';
  return volatility === 'volatile';
}

/** `DROP TABLE`, `CREATE INDEX`: how the statement reads, for naming DDL of any kind. */
function leadingWords(sql: string): string {
  return (sql.match(/^\w+(\s+\w+)?/)?.[0] ?? sql).toUpperCase();
}

function snippet(sql: string): string {
  const first = sql.split('\n')[0]?.trim() ?? '';
  const short = first.length > 100 ? `${first.slice(0, 100)}…` : first;
  return first === sql.trim() ? short : `${short} …`;
}
