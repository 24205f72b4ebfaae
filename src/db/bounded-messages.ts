/**
 * Agent SQL controls the text of PostgreSQL's ErrorResponse and NoticeResponse messages (RAISE,
 * or an error quoting a value it made), and a field can be up to a gigabyte. pg-protocol turns
 * each field into one JavaScript string inside the socket's 'data' handler: past V8's string
 * limit (about 512 MiB) that throws ERR_STRING_TOO_LONG there and ends the process, and short of
 * it the whole message is held in memory. So every byte from the server passes through here
 * before the protocol parser: an error or notice longer than MAX_FIELD_BYTES has each field cut to
 * that many bytes as it streams in (memory stays bounded) and is handed on rewritten, with its
 * length fixed, so the parser stays in step. Every other message passes untouched: agent rows
 * come back through the sandbox, which bounds them server-side (max_bytes), column names are
 * bounded by PostgreSQL (63 bytes), and a notification's payload by PostgreSQL (8000 bytes).
 */
export const MAX_FIELD_BYTES = 16 * 1024;

/** ErrorResponse and NoticeResponse: the messages whose fields agent code writes. */
const BOUNDED_TYPES = new Set([0x45 /* E */, 0x4e /* N */]);
/** PostgreSQL sends about 18 field codes; more is not a message it wrote. */
const MAX_FIELDS = 32;
const HEADER_BYTES = 5;

interface Rewrite {
  type: number;
  /** Body bytes still to read. */
  left: number;
  fields: Buffer[];
  /** The current field's code, or undefined between fields. */
  code: number | undefined;
  kept: Buffer[];
  keptBytes: number;
  dropped: number;
  ended: boolean;
}

/** A streaming filter of the backend's byte stream (see the module comment). */
export class MessageBounder {
  #header = Buffer.alloc(0);
  /** Bytes of the current message still to pass through untouched. */
  #pass = 0;
  #rewrite: Rewrite | undefined;

  constructor(private readonly maxFieldBytes = MAX_FIELD_BYTES) {}

  /** Feeds one chunk; `emit` receives the bytes to parse, in order. */
  push(chunk: Buffer, emit: (bytes: Buffer) => void): void {
    let i = 0;
    let passFrom = -1;
    const flush = (end: number) => {
      if (passFrom >= 0 && end > passFrom) emit(chunk.subarray(passFrom, end));
      passFrom = -1;
    };
    while (i < chunk.length) {
      if (this.#pass > 0) {
        const n = Math.min(this.#pass, chunk.length - i);
        if (passFrom < 0) passFrom = i;
        i += n;
        this.#pass -= n;
        continue;
      }
      if (this.#rewrite) {
        i = this.#readRewrite(chunk, i, emit);
        continue;
      }
      // A header: five bytes, perhaps split across chunks.
      const held = this.#header.length;
      const take = Math.min(HEADER_BYTES - held, chunk.length - i);
      const header = held === 0 && take === HEADER_BYTES ? chunk.subarray(i, i + HEADER_BYTES) : Buffer.concat([this.#header, chunk.subarray(i, i + take)]);
      if (header.length < HEADER_BYTES) {
        flush(i);
        this.#header = Buffer.from(header);
        i += take;
        continue;
      }
      this.#header = Buffer.alloc(0);
      const type = header[0] as number;
      const body = header.readInt32BE(1) - 4;
      if (BOUNDED_TYPES.has(type) && body > this.maxFieldBytes) {
        flush(i);
        i += take;
        this.#rewrite = { type, left: body, fields: [], code: undefined, kept: [], keptBytes: 0, dropped: 0, ended: false };
        continue;
      }
      if (held > 0) {
        // The header's first bytes came in an earlier chunk and were held back.
        flush(i);
        emit(header);
      } else if (passFrom < 0) {
        passFrom = i;
      }
      i += take;
      this.#pass = body;
    }
    flush(chunk.length);
  }

  /** Reads the body of a message being rewritten; returns where it stopped in `chunk`. */
  #readRewrite(chunk: Buffer, start: number, emit: (bytes: Buffer) => void): number {
    const r = this.#rewrite as Rewrite;
    const end = Math.min(chunk.length, start + r.left);
    let i = start;
    while (i < end) {
      if (r.ended) {
        i = end; // anything after the terminator is not PostgreSQL's: skipped
      } else if (r.code === undefined) {
        const code = chunk[i++] as number;
        if (code === 0) r.ended = true;
        else r.code = code;
      } else {
        const nul = chunk.indexOf(0, i);
        const stop = nul >= 0 && nul < end ? nul : end;
        const room = Math.max(0, this.maxFieldBytes - r.keptBytes);
        const keep = Math.min(room, stop - i);
        if (keep > 0) {
          r.kept.push(Buffer.from(chunk.subarray(i, i + keep)));
          r.keptBytes += keep;
        }
        r.dropped += stop - i - keep;
        i = stop;
        if (stop === nul) {
          i++;
          if (r.fields.length < MAX_FIELDS) r.fields.push(this.#field(r));
          r.code = undefined;
          r.kept = [];
          r.keptBytes = 0;
          r.dropped = 0;
        }
      }
    }
    r.left -= end - start;
    if (r.left === 0) this.#finishRewrite(emit);
    return end;
  }

  #field(r: Rewrite): Buffer {
    let value = Buffer.concat(r.kept);
    if (r.dropped > 0) {
      value = value.subarray(0, utf8Boundary(value));
      value = Buffer.concat([value, Buffer.from(` … [${r.dropped + (r.keptBytes - value.length)} more bytes cut by pg-workspace-mcp]`)]);
    }
    return Buffer.concat([Buffer.from([r.code as number]), value, Buffer.from([0])]);
  }

  #finishRewrite(emit: (bytes: Buffer) => void): void {
    const r = this.#rewrite as Rewrite;
    this.#rewrite = undefined;
    const body = Buffer.concat([...r.fields, Buffer.from([0])]);
    const header = Buffer.alloc(HEADER_BYTES);
    header[0] = r.type;
    header.writeInt32BE(body.length + 4, 1);
    emit(Buffer.concat([header, body]));
  }
}

/** The length of `bytes` without a UTF-8 sequence cut at its end. */
function utf8Boundary(bytes: Buffer): number {
  let end = bytes.length;
  // Back over continuation bytes to the lead byte of the last sequence.
  let lead = end - 1;
  while (lead >= 0 && lead > end - 4 && ((bytes[lead] as number) & 0xc0) === 0x80) lead--;
  if (lead < 0) return end;
  const b = bytes[lead] as number;
  const size = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
  if (lead + size > end) end = lead;
  return end;
}

/**
 * A stand-in for a socket, for pg-protocol's `parse(stream, callback)`, which listens to 'data'
 * and 'end' only: the same events, with the data bounded.
 */
export function boundedStream(stream: NodeJS.ReadableStream): NodeJS.ReadableStream {
  const bounder = new MessageBounder();
  return {
    on(event: string, listener: (...args: unknown[]) => void) {
      if (event === 'data') stream.on('data', (chunk: Buffer) => bounder.push(chunk, (bytes) => listener(bytes)));
      else stream.on(event, listener);
      return this;
    },
  } as unknown as NodeJS.ReadableStream;
}
