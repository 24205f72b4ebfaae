import { PassThrough } from 'node:stream';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readableRequestId, RequestIdScanner } from '../../src/mcp/malformed-input.js';
import { StdioLineTransport } from '../../src/mcp/stdio-transport.js';

function scan(text: string, pieces: number[] = []) {
  const scanner = new RequestIdScanner();
  const bytes = Buffer.from(text);
  let start = 0;
  for (const cut of [...pieces.map((p) => Math.min(p, bytes.length)).sort((a, b) => a - b), bytes.length]) {
    scanner.feed(bytes.subarray(start, Math.max(start, cut)));
    start = Math.max(start, cut);
  }
  return scanner.id;
}

describe('RequestIdScanner', () => {
  it('finds the top-level id wherever it is, and only a request id', () => {
    expect(scan('{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"id":"inner"}}')).toBe(5);
    expect(scan('{"method":"tools/call","params":{"id":"inner","a":[{"id":1}]},"jsonrpc":"2.0","id":"abc"}')).toBe('abc');
    expect(scan(' {"params":{"s":"a \\" \\\\\\" } ] , \\"id\\": 3"},"id" : "x\\"y\\u00e9" }')).toBe('x"yé');
    expect(scan('{"\\u0069d":12}')).toBe(12);
    expect(scan('{"id":1.5,"method":"m"}')).toBe(null);
    expect(scan('{"id":{"n":1},"method":"m"}')).toBe(null);
    expect(scan('{"id":[1],"method":"m"}')).toBe(null);
    expect(scan('{"id":null,"method":"m"}')).toBe(null);
    expect(scan(`{"id":"${'z'.repeat(300)}","method":"m"}`)).toBe(null);
    expect(scan('{"jsonrpc":"2.0","id":4,"result":{}}')).toBe(null);
    expect(scan('[{"jsonrpc":"2.0","id":4,"method":"m"}]')).toBe(null);
    expect(scan('{"idx":4,"method":"m"}')).toBe(null);
  });

  it('agrees with JSON.parse on any object, however the bytes are cut', () => {
    const id = fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.double(), fc.jsonValue({ maxDepth: 2 }));
    const message = fc.record(
      { jsonrpc: fc.constant('2.0'), id, method: fc.string(), params: fc.jsonValue({ maxDepth: 4 }), result: fc.jsonValue({ maxDepth: 1 }) },
      { requiredKeys: [] },
    );
    // Members in any order: the TypeScript SDK writes the id last, the Python SDK first.
    const anyOrder = message.chain((m) => fc.shuffledSubarray(Object.entries(m), { minLength: Object.keys(m).length }).map((e) => Object.fromEntries(e)));
    fc.assert(
      fc.property(anyOrder, fc.array(fc.nat(400)), fc.boolean(), (value, cuts, pretty) => {
        const text = JSON.stringify(value, null, pretty ? 1 : undefined);
        expect(scan(text, cuts)).toEqual(readableRequestId(JSON.parse(text)));
      }),
      { numRuns: 500 },
    );
  });
});

function connected(maxLineBytes: number) {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const transport = new StdioLineTransport(stdin, stdout, maxLineBytes);
  const received: JSONRPCMessage[] = [];
  const sent: { id: unknown; error?: { code: number; message: string } }[] = [];
  let out = '';
  stdout.on('data', (c: Buffer) => {
    out += c.toString();
    const lines = out.split('\n');
    out = lines.pop() ?? '';
    for (const line of lines) sent.push(JSON.parse(line) as (typeof sent)[number]);
  });
  transport.onmessage = (m) => received.push(m);
  void transport.start();
  return { stdin, transport, received, sent };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('StdioLineTransport', () => {
  it('drops a line over the limit as it streams in, answers it with its id, and reads the next line', async () => {
    const { stdin, received, sent } = connected(1024);
    const [head, tail] = ['{"jsonrpc":"2.0","method":"tools/call","params":{"data":"', '"},"id":41}\r'];
    stdin.write(head);
    for (let i = 0; i < 100; i++) stdin.write('y'.repeat(1000));
    stdin.write(`${tail}\n{"jsonrpc":"2.0","id":42,"method":"ping"}\n`);
    await tick();
    const bytes = head.length + 100_000 + tail.length;
    expect(sent).toEqual([{ jsonrpc: '2.0', id: 41, error: expect.objectContaining({ code: -32600, data: { bytes, limit: 1024 } }) }]);
    expect(received).toEqual([{ jsonrpc: '2.0', id: 42, method: 'ping' }]);
  });

  it('takes a line split across chunks and several lines in one, and answers each unreadable line', async () => {
    const { stdin, received, sent } = connected(1024);
    stdin.write('{"jsonrpc":"2.0","id":1,');
    stdin.write('"method":"ping"}\n{not json\n{"jsonrpc":"2.0","id":"two","method":7}\n');
    stdin.write(`${'x'.repeat(2000)}\n{"jsonrpc":"2.0","method":"notifications/initialized"}\n`);
    await tick();
    expect(received).toEqual([
      { jsonrpc: '2.0', id: 1, method: 'ping' },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
    ]);
    expect(sent.map((r) => [r.id, r.error?.code])).toEqual([
      [null, -32700],
      ['two', -32600],
      [null, -32600],
    ]);
  });

  it('leaves stdin flowing when closed, so that its end is still seen', async () => {
    const { stdin, transport } = connected(1024);
    let ended = false;
    stdin.on('end', () => (ended = true));
    await transport.close();
    stdin.end('{"jsonrpc":"2.0","id":1,"method":"ping"}\n');
    await tick();
    expect(ended).toBe(true);
  });
});
