import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/**
 * What JSON-RPC 2.0 says to send back for input that is not a message we can act on: -32700 for
 * unparsable JSON, -32600 for anything else. The id is the request's when it can be read, so the
 * client's pending call fails at once instead of at its timeout; null otherwise, and for anything
 * that looks like a response (`result` or `error`), whose id names one of the client's own requests.
 */
export type RequestId = string | number;

export type UnreadableInput =
  | { kind: 'unparsable'; reason: string }
  | { kind: 'invalid'; value: unknown }
  | { kind: 'oversized'; bytes: number; limit: number; id: RequestId | null };

export function errorReplyFor(input: UnreadableInput): JSONRPCMessage {
  const reply = (id: RequestId | null, code: number, message: string, data?: unknown) =>
    ({ jsonrpc: '2.0', id, error: { code, message, ...(data === undefined ? {} : { data }) } }) as unknown as JSONRPCMessage;
  switch (input.kind) {
    case 'unparsable':
      return reply(null, -32700, `Parse error: ${input.reason}`);
    case 'invalid':
      return reply(readableRequestId(input.value), -32600, 'Invalid Request: not a JSON-RPC 2.0 message');
    case 'oversized':
      return reply(
        input.id,
        -32600,
        `Invalid Request: the message is ${input.bytes} bytes, over this server's limit of ${input.limit} bytes for one ` +
          'line; it was skipped unread. Send less in one call.',
        { bytes: input.bytes, limit: input.limit },
      );
  }
}

/** The id of something shaped like a request (an object with an id and no `result`/`error`). */
export function readableRequestId(value: unknown): RequestId | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  if ('result' in value || 'error' in value) return null;
  return validRequestId((value as { id?: unknown }).id);
}

/** MCP's request ids: a string or an integer. */
export function validRequestId(id: unknown): RequestId | null {
  return typeof id === 'string' || Number.isSafeInteger(id) ? (id as RequestId) : null;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MAX_KEY_BYTES = 16;
const MAX_ID_BYTES = 256;

/**
 * Reads the top-level `id` of a JSON object from its bytes as they stream past, holding only a
 * few bytes: for a message too large to keep, whose id may come first (Python SDK) or last
 * (TypeScript SDK, after `params`). It tracks nesting, strings and escapes, nothing else, and
 * gives up (null) on anything that is not an object whose `id` is a string or an integer.
 * JSON's structural characters are ASCII and UTF-8 never uses ASCII bytes inside a multi-byte
 * character, so scanning bytes is exact.
 */
export class RequestIdScanner {
  #depth = 0;
  #started = false;
  #inString = false;
  #escaped = false;
  /** At depth 1, whether the next string is a member name. */
  #expectKey = false;
  #key: number[] | undefined;
  #lastKey = '';
  #idBytes: number[] | undefined;
  #id: RequestId | null = null;
  #sawResponseMember = false;
  #done = false;

  feed(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length && !this.#done; i++) {
      const capturing = this.#idBytes !== undefined && this.#depth === 1;
      if (this.#inString && !this.#escaped && this.#key === undefined && !capturing) {
        // The bulk of a large message is string content, which only a quote or backslash ends.
        while (i < bytes.length && bytes[i] !== QUOTE && bytes[i] !== BACKSLASH) i++;
        if (i === bytes.length) break;
      }
      const b = bytes[i] as number;
      if (!this.#inString) {
        this.#structural(b, capturing);
        continue;
      }
      if (this.#escaped) this.#escaped = false;
      else if (b === BACKSLASH) this.#escaped = true;
      else if (b === QUOTE) this.#inString = false;
      if (capturing) this.#capture(b);
      else if (this.#key !== undefined) {
        if (!this.#inString) this.#endKey();
        else if (this.#key.length <= MAX_KEY_BYTES) this.#key.push(b);
      }
    }
  }

  /** The id, once the whole message has been fed. */
  get id(): RequestId | null {
    return this.#sawResponseMember ? null : this.#id;
  }

  #structural(b: number, capturing: boolean): void {
    const c = String.fromCharCode(b);
    if (!this.#started) {
      if (/\s/.test(c)) return;
      this.#started = true;
      if (c === '{') [this.#depth, this.#expectKey] = [1, true];
      else this.#done = true;
      return;
    }
    if (this.#depth === 1 && (c === ',' || c === '}')) {
      if (capturing) this.#endId();
      this.#expectKey = c === ',';
      if (c === '}') this.#done = true;
      return;
    }
    if (c === '"') {
      this.#inString = true;
      if (this.#depth === 1 && this.#expectKey) this.#key = [];
    } else if (c === ':' && this.#depth === 1) {
      this.#expectKey = false;
      if (this.#lastKey === 'id') this.#idBytes = [];
      return;
    } else if (c === '{' || c === '[') {
      this.#depth++;
      // An object or array is no request id.
      if (capturing) this.#idBytes = undefined;
      return;
    } else if (c === '}' || c === ']') {
      this.#depth--;
    }
    if (capturing) this.#capture(b);
  }

  #capture(b: number): void {
    const idBytes = this.#idBytes as number[];
    if (idBytes.length <= MAX_ID_BYTES) idBytes.push(b);
  }

  #endKey(): void {
    const raw = this.#key as number[];
    this.#key = undefined;
    this.#lastKey = raw.length > MAX_KEY_BYTES ? '' : (parseJson(`"${Buffer.from(raw).toString('utf8')}"`) as string) ?? '';
    if (this.#lastKey === 'result' || this.#lastKey === 'error') this.#sawResponseMember = true;
  }

  #endId(): void {
    const raw = this.#idBytes as number[];
    this.#idBytes = undefined;
    this.#id = raw.length > MAX_ID_BYTES ? null : validRequestId(parseJson(Buffer.from(raw).toString('utf8')));
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
