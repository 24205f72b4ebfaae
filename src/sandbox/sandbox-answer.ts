import { printParseErrorCode, visit } from 'jsonc-parser';

/** What a sandbox call answers (see sandboxBodySource): rows fetched, and whether more existed. */
export interface SandboxAnswer {
  /** Each row's values in column order; a top-level number as its exact text. */
  rows: unknown[][];
  more: boolean;
  byBytes: boolean;
  /** Rows affected or read, as the sandbox counted them. */
  total: number;
}

/**
 * Reads the sandbox's answer, `{"more": ..., "by_bytes": ..., "total": ..., "rows": [...]}`,
 * whose rows are PostgreSQL's `to_json` of each row: objects, because that is what PostgreSQL
 * makes of a record without a query per row (turning them into arrays in SQL was half of the
 * sandbox's time). So they are read as a token stream, not with JSON.parse: members in order,
 * so duplicate column names (`SELECT 1, 2`: both `?column?`) and numeric ones keep their places,
 * and a top-level number keeps its text (a bigint or numeric stays exact; the caller turns small
 * types back into numbers). A value that is itself an object or array (json, arrays, composite
 * types) is parsed as it is.
 */
export function readSandboxAnswer(text: string): SandboxAnswer {
  const answer: SandboxAnswer = { rows: [], more: false, byBytes: false, total: 0 };
  // 1: the answer's own members; 2: the rows array; 3: a row; 4: a value's outermost bracket.
  let depth = 0;
  let member = '';
  let row: unknown[] = [];
  let valueStart = 0;
  const begin = (offset: number) => {
    depth++;
    if (depth === 3) row = [];
    else if (depth === 4) valueStart = offset;
  };
  const end = (offset: number, length: number) => {
    if (depth === 3) answer.rows.push(row);
    else if (depth === 4) row.push(JSON.parse(text.slice(valueStart, offset + length)));
    depth--;
  };
  visit(
    text,
    {
      onObjectBegin: begin,
      onArrayBegin: begin,
      onObjectEnd: end,
      onArrayEnd: end,
      onObjectProperty: (property) => {
        if (depth === 1) member = property;
      },
      onLiteralValue: (value: unknown, offset, length) => {
        if (depth === 3) row.push(typeof value === 'number' ? text.slice(offset, offset + length) : value);
        else if (depth === 1 && member === 'more') answer.more = value === true;
        else if (depth === 1 && member === 'by_bytes') answer.byBytes = value === true;
        else if (depth === 1 && member === 'total') answer.total = Number(value);
      },
      onError: (error, offset) => {
        throw new Error(`the SQL sandbox's answer is not JSON (${printParseErrorCode(error)} at ${offset})`);
      },
    },
    { disallowComments: true },
  );
  return answer;
}
