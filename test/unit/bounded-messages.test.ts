import fc from 'fast-check';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { describe, expect, it } from 'vitest';
import { MessageBounder } from '../../src/db/bounded-messages.js';

const LIMIT = 64;

function message(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}
const cstring = (s: string) => Buffer.concat([Buffer.from(s), Buffer.from([0])]);
const errorLike = (type: 'E' | 'N', fields: Record<string, string>) =>
  message(type, Buffer.concat([...Object.entries(fields).map(([code, value]) => cstring(code + value)), Buffer.from([0])]));
const dataRow = (values: string[]) => {
  const count = Buffer.alloc(2);
  count.writeInt16BE(values.length);
  return message('D', Buffer.concat([count, ...values.map((v) => Buffer.concat([int32(Buffer.byteLength(v)), Buffer.from(v)]))]));
};
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

/** What pg-protocol's parser makes of `stream` cut into `cuts`, with or without the bounder in front. */
function parse(original: Buffer, cuts: number[], bounded: boolean): BackendMessage[] {
  // pg-protocol compacts its input in place: each run gets a copy.
  const stream = Buffer.from(original);
  const parser = new Parser();
  const out: BackendMessage[] = [];
  const bounder = new MessageBounder(LIMIT);
  let from = 0;
  for (const at of [...cuts.filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b), stream.length]) {
    const chunk = stream.subarray(from, at);
    from = at;
    if (bounded) bounder.push(chunk, (bytes) => parser.parse(bytes, (m) => out.push(m)));
    else parser.parse(chunk, (m) => out.push(m));
  }
  return out;
}

const plain = (m: BackendMessage) => JSON.parse(JSON.stringify(m, (_k, v: unknown) => (v instanceof Error ? { ...v, message: v.message } : v))) as unknown;

describe('MessageBounder', () => {
  it('passes every message within the bound through unchanged, however the stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ maxLength: LIMIT }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(400)),
        (values, cuts) => {
          const stream = Buffer.concat([
            dataRow(values),
            errorLike('N', { S: 'NOTICE', C: '00000', M: values[0] ?? '' }),
            errorLike('E', { S: 'ERROR', C: 'P0001', M: values.join('').slice(0, LIMIT) }),
            message('Z', Buffer.from('I')),
          ]);
          expect(parse(stream, cuts, true).map(plain)).toEqual(parse(stream, [], false).map(plain));
        },
      ),
    );
  });

  it('cuts each field of a long error or notice to the bound, keeps its code and the messages around it', () => {
    fc.assert(
      fc.property(fc.integer({ min: LIMIT + 1, max: 5000 }), fc.array(fc.nat(6000)), fc.constantFrom('E' as const, 'N' as const), (size, cuts, type) => {
        const long = 'é'.repeat(size); // two bytes a character: cuts may fall inside one
        const stream = Buffer.concat([
          dataRow(['before']),
          errorLike(type, { S: 'ERROR', C: 'P0001', M: long, D: 'short detail', W: long }),
          dataRow(['after']),
        ]);
        const [before, bounded, after, ...rest] = parse(stream, cuts, true) as [BackendMessage, BackendMessage & Record<string, string>, BackendMessage];
        expect(rest).toEqual([]);
        expect(plain(before)).toEqual({ name: 'dataRow', length: expect.any(Number), fieldCount: 1, fields: ['before'] });
        expect(plain(after)).toMatchObject({ fields: ['after'] });
        expect(bounded.name).toBe(type === 'E' ? 'error' : 'notice');
        expect(bounded['code']).toBe('P0001');
        expect(bounded['detail']).toBe('short detail');
        for (const field of [bounded['message'], bounded['where']]) {
          expect(field).toMatch(/^é+ … \[\d+ more bytes cut by pg-workspace-mcp\]$/);
          expect(Buffer.byteLength(field?.split(' …')[0] ?? '')).toBeLessThanOrEqual(LIMIT);
          const cut = Number(/\[(\d+) more/.exec(field ?? '')?.[1]);
          expect(Buffer.byteLength(field?.split(' …')[0] ?? '') + cut).toBe(Buffer.byteLength(long));
        }
      }),
    );
  });
});
