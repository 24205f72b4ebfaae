import fc from 'fast-check';
import { parse } from 'libpg-query';
import { describe, expect, it } from 'vitest';
import { quoteLiteral } from '../../src/db/identifiers.js';

/** What PostgreSQL's own parser (libpg-query, no database) reads back from `SELECT <literal>`. */
async function readBack(literal: string): Promise<unknown> {
  const tree = (await parse(`SELECT ${literal}`)) as { stmts: Array<{ stmt: { SelectStmt: { targetList: Array<{ ResTarget: { val: { A_Const: { sval?: { sval?: string } } } } }> } } }> };
  const constant = tree.stmts[0]?.stmt.SelectStmt.targetList[0]?.ResTarget.val.A_Const;
  return constant?.sval?.sval ?? '';
}

describe('quoteLiteral', () => {
  it("quotes any text (without NUL, which PostgreSQL's text cannot hold) so that PostgreSQL's parser reads back exactly that text", async () => {
    const text = fc.string({ unit: fc.oneof(fc.constantFrom("'", '\\', '"', '\n', '$', ' ', 'E', 'é', '😀'), fc.string({ minLength: 1, maxLength: 1, unit: 'grapheme' })) }).filter((t) => !t.includes('\0'));
    await fc.assert(fc.asyncProperty(text, async (t) => (await readBack(quoteLiteral(t))) === t), { numRuns: 300 });
    // pg.escapeLiteral's shape: a backslash makes it an escape string.
    expect(quoteLiteral("it's a\\b")).toBe(" E'it''s a\\\\b'");
    expect(quoteLiteral("it's")).toBe("'it''s'");
  });
});
