import fc from 'fast-check';
import { parse } from 'libpg-query';
import { describe, expect, it } from 'vitest';
import { quoteIdent } from '../../src/db/identifiers.js';
import { prepareAgentStatement, type AgentParam } from '../../src/sandbox/agent-statement.js';

/*
 * The `$n` substitution works on byte offsets the parser reports, and the sandbox's safety
 * rests on it binding values as literals and nothing else: these properties check it against
 * PostgreSQL's own parser (libpg-query) over generated statements.
 */

/** Values as PostgreSQL's parser reads them back: the string of the i-th select-list constant. */
async function selectedStrings(sql: string): Promise<Array<string | null>> {
  const select = firstStatement(await parse(sql))['SelectStmt'] as { targetList: Array<{ ResTarget: { val: Record<string, unknown> } }> };
  return select.targetList.map(({ ResTarget: { val } }) => {
    const constant = (val['A_Const'] ?? (val['TypeCast'] as { arg: { A_Const: unknown } } | undefined)?.arg.A_Const) as
      | { sval?: { sval: string }; isnull?: boolean }
      | undefined;
    if (!constant) throw new Error(`not a constant: ${JSON.stringify(val)}`);
    return constant.isnull ? null : (constant.sval?.sval ?? '');
  });
}

function firstStatement(tree: Awaited<ReturnType<typeof parse>>): Record<string, unknown> {
  return (tree.stmts?.[0]?.stmt ?? {}) as Record<string, unknown>;
}

function paramRefs(tree: unknown): number {
  if (Array.isArray(tree)) return tree.reduce((n: number, item) => n + paramRefs(item), 0);
  if (tree && typeof tree === 'object') {
    return Object.entries(tree).reduce((n, [key, value]) => n + (key === 'ParamRef' ? 1 : paramRefs(value)), 0);
  }
  return 0;
}

/** Text that may hold anything an agent might write inside a literal or comment, `$1` included. */
const awkwardText = fc.stringMatching(/^[\s\S]*$/).map((s) => s.replace(/\0/g, '')).chain((s) =>
  fc.constantFrom(s, `$1${s}`, `${s}$2`, `'$1'`, `$$`, `\\$1`, `é$1ü`, `\u{1F600}$1`),
);

describe('agent statements: $n substitution', () => {
  it('binds any string value as a literal that PostgreSQL reads back as the same string', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'grapheme' }).map((s) => s.replace(/\0/g, '')), async (value) => {
        const { sql } = await prepareAgentStatement('SELECT $1', [value], 'query');
        expect(await selectedStrings(sql)).toEqual([value]);
      }),
      { numRuns: 300 },
    );
  });

  it('leaves $n inside strings, comments and dollar quotes alone, and replaces every real one', async () => {
    // A statement made of real parameters and of places where `$n` is just text; multi-byte
    // characters before a parameter move its byte offset away from its character offset.
    const piece = fc.oneof(
      fc.record({ kind: fc.constant('param' as const), n: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ kind: fc.constant('string' as const), text: awkwardText }),
      fc.record({ kind: fc.constant('dollar' as const), text: awkwardText.filter((t) => !t.includes('$q$')) }),
    );
    const comment = awkwardText.filter((t) => !t.includes('*/') && !t.includes('/*'));
    const values: AgentParam[] = ['first', "it's", 'thïrd $1'];
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { minLength: 1, maxLength: 6 }), comment, async (pieces, note) => {
        const columns = pieces.map((p) =>
          p.kind === 'param' ? `$${p.n}` : p.kind === 'string' ? `'${p.text.replace(/'/g, "''")}'` : `$q$${p.text}$q$`,
        );
        const sql = `/* ${note} */ SELECT ${columns.join(', ')} -- ${note.replace(/\n|\r/g, ' ')}`;
        const prepared = await prepareAgentStatement(sql, values, 'query');
        const expected = pieces.map((p) => (p.kind === 'param' ? (values[p.n - 1] as string) : p.text));
        expect(await selectedStrings(prepared.sql)).toEqual(expected);
        expect(paramRefs(await parse(prepared.sql))).toBe(0);
        // The comments survive byte for byte: nothing outside a parameter's own bytes moved.
        expect(prepared.sql.startsWith(`/* ${note} */ SELECT `)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('binds numbers, booleans, null, vectors and JSON as literals of their text', async () => {
    const { sql } = await prepareAgentStatement('SELECT $1, $2, $3, $4, $5', [42.5, true, null, [1, 2.5, -3], { a: "b'c" }], 'query');
    expect(await selectedStrings(sql)).toEqual(['42.5', 'true', null, '[1,2.5,-3]', '{"a":"b\'c"}']);
  });

  it('refuses a parameter number outside the values given', async () => {
    await expect(prepareAgentStatement('SELECT $2', ['x'], 'query')).rejects.toThrow('uses $2 but 1 parameter(s) were given');
    await expect(prepareAgentStatement('SELECT $0', [], 'query')).rejects.toThrow(/uses \$0/);
  });
});

describe('identifier quoting', () => {
  /** Anything validateIdentifier lets through: 1-63 bytes, no NUL. */
  const identifier = fc
    .string({ unit: 'grapheme', minLength: 1, maxLength: 63 })
    .map((s) => s.replace(/\0/g, ''))
    .filter((s) => s.length > 0 && Buffer.byteLength(s) <= 63);

  it('makes any valid name one identifier that PostgreSQL reads back unchanged', async () => {
    await fc.assert(
      fc.asyncProperty(identifier, async (name) => {
        const tree = await parse(`CREATE TABLE ${quoteIdent(name)}.${quoteIdent(name)} (${quoteIdent(name)} int)`);
        const create = firstStatement(tree)['CreateStmt'] as {
          relation: { schemaname: string; relname: string };
          tableElts: Array<{ ColumnDef: { colname: string } }>;
        };
        expect(tree.stmts).toHaveLength(1);
        expect([create.relation.schemaname, create.relation.relname, create.tableElts[0]?.ColumnDef.colname]).toEqual([name, name, name]);
      }),
      { numRuns: 300 },
    );
  });
});
