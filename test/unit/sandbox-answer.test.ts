import { describe, expect, it } from 'vitest';
import { readSandboxAnswer } from '../../src/sandbox/sandbox-answer.js';

/** An answer as the sandbox builds it: json_build_object over to_json rows (PostgreSQL's spacing). */
const answer = (rows: string, more = false, byBytes = false, total = 1) =>
  `{"more" : ${more}, "by_bytes" : ${byBytes}, "total" : ${total}, "rows" : ${rows}}`;

describe('readSandboxAnswer', () => {
  it('keeps every member of a row in order, repeated and numeric names included', () => {
    expect(readSandboxAnswer(answer('[{"?column?":1,"?column?":2,"2":"b","1":"a"}]')).rows).toEqual([['1', '2', 'b', 'a']]);
  });

  it('keeps top-level numbers as their exact text and parses nested values as JSON', () => {
    const { rows } = readSandboxAnswer(answer('[{"big":9007199254740993,"n":0.1000000000000000000,"j":{"a":[1,{"b":2}]},"arr":[1.5,null]}]'));
    expect(rows).toEqual([['9007199254740993', '0.1000000000000000000', { a: [1, { b: 2 }] }, [1.5, null]]]);
  });

  it('reads strings, booleans and nulls, whatever brackets and escapes the strings hold', () => {
    expect(readSandboxAnswer(answer('[{"s":"x\\"]}{,\\n","t":true,"f":false,"n":null},{"s":"","t":false,"f":true,"n":null}]')).rows).toEqual([
      ['x"]}{,\n', true, false, null],
      ['', false, true, null],
    ]);
  });

  it('reads the envelope: truncation, its cause and the count', () => {
    expect(readSandboxAnswer(answer('[]', true, true, 12))).toEqual({ rows: [], more: true, byBytes: true, total: 12 });
    expect(readSandboxAnswer('{"total" : 3}')).toEqual({ rows: [], more: false, byBytes: false, total: 3 });
  });

  it('refuses text that is not JSON rather than guessing', () => {
    expect(() => readSandboxAnswer(answer('[{"a":1,}]'))).toThrow(/not JSON/);
    expect(() => readSandboxAnswer('{"rows": [{"a": 1}')).toThrow(/not JSON/);
  });
});
