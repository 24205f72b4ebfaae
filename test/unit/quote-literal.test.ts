import fc from 'fast-check';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { quoteLiteral } from '../../src/db/identifiers.js';

describe('quoteLiteral', () => {
  it('quotes every string exactly as pg.escapeLiteral does', () => {
    fc.assert(fc.property(fc.string({ unit: fc.constantFrom("'", '\\', 'a', 'é', '"', '\n', '$', ' ') }), (text) => quoteLiteral(text) === pg.escapeLiteral(text)));
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => quoteLiteral(text) === pg.escapeLiteral(text)));
    expect(quoteLiteral("it's a\\b")).toBe(" E'it''s a\\\\b'");
  });
});
