import type { Readable, Writable } from 'node:stream';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { JSONRPCMessageSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { errorReplyFor, RequestIdScanner, type UnreadableInput } from './malformed-input.js';

/** The SDK's own limit for one stdio message. */
export const MAX_LINE_BYTES = 10 * 1024 * 1024;

const NEWLINE = 0x0a;

/**
 * MCP over stdio: one JSON-RPC message per line. Replaces the SDK's StdioServerTransport, whose
 * reader buffers a line whole (copying the buffer for every chunk) and, past 10 MiB, closes
 * itself: the server then stopped reading, said nothing to the client, and sometimes missed EOF
 * and lived on holding the data-dir lock. Here a line over the limit is dropped as it streams in
 * (memory stays within the limit plus one chunk) and answered with a JSON-RPC error when its
 * newline arrives; the next line is read as usual. That resynchronisation is sound because a
 * serialized JSON message never contains a raw newline (JSON escapes them in strings). Every
 * other unreadable line is answered too (see malformed-input.ts) and reported through `onerror`.
 */
export class StdioLineTransport implements Transport {
  onmessage?: (message: JSONRPCMessage) => void;
  onerror?: (error: Error) => void;
  onclose?: () => void;

  #chunks: Buffer[] = [];
  #bytes = 0;
  /** Set while dropping a line over the limit. */
  #skipping: { bytes: number; scanner: RequestIdScanner } | undefined;

  constructor(
    private readonly stdin: Readable = process.stdin,
    private readonly stdout: Writable = process.stdout,
    private readonly maxLineBytes = MAX_LINE_BYTES,
  ) {}

  async start(): Promise<void> {
    this.stdin.on('data', this.#ondata);
    this.stdin.on('error', this.#onerror);
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve) => {
      if (this.stdout.write(`${JSON.stringify(message)}\n`)) resolve();
      else this.stdout.once('drain', resolve);
    });
  }

  async close(): Promise<void> {
    // stdin keeps flowing (not paused), so that its EOF still reaches whoever waits for it.
    this.stdin.off('data', this.#ondata);
    this.stdin.off('error', this.#onerror);
    this.#chunks = [];
    this.#skipping = undefined;
    this.onclose?.();
  }

  #onerror = (error: Error) => this.onerror?.(error);

  #ondata = (chunk: Buffer) => {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      this.#take(chunk.subarray(start, newline === -1 ? chunk.length : newline));
      if (newline === -1) return;
      this.#endLine();
      start = newline + 1;
    }
  };

  #take(piece: Buffer): void {
    if (this.#skipping) {
      this.#skipping.bytes += piece.length;
      this.#skipping.scanner.feed(piece);
    } else if (this.#bytes + piece.length > this.maxLineBytes) {
      const scanner = new RequestIdScanner();
      for (const chunk of [...this.#chunks, piece]) scanner.feed(chunk);
      this.#skipping = { bytes: this.#bytes + piece.length, scanner };
      this.#chunks = [];
      this.#bytes = 0;
    } else if (piece.length > 0) {
      this.#chunks.push(piece);
      this.#bytes += piece.length;
    }
  }

  #endLine(): void {
    const [chunks, skipped] = [this.#chunks, this.#skipping];
    [this.#chunks, this.#bytes, this.#skipping] = [[], 0, undefined];
    if (skipped) return this.#unreadable({ kind: 'oversized', bytes: skipped.bytes, limit: this.maxLineBytes, id: skipped.scanner.id });
    const line = Buffer.concat(chunks).toString('utf8').replace(/\r$/, '');
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      return this.#unreadable({ kind: 'unparsable', reason: (error as Error).message });
    }
    const message = JSONRPCMessageSchema.safeParse(value);
    if (!message.success) return this.#unreadable({ kind: 'invalid', value });
    this.onmessage?.(message.data);
  }

  #unreadable(input: UnreadableInput): void {
    const reply = errorReplyFor(input);
    this.onerror?.(new UnreadableMessageError(reply));
    this.send(reply).catch(() => undefined);
  }
}

/** Reported through `onerror` for the log: what the client was told. */
export class UnreadableMessageError extends Error {
  override name = 'UnreadableMessageError';
  constructor(readonly reply: JSONRPCMessage) {
    const { id, error } = reply as unknown as { id: unknown; error: { message: string } };
    super(`answered id ${JSON.stringify(id)}: ${error.message.slice(0, 500)}`);
  }
}
