import os from 'node:os';

/**
 * PostgreSQL's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html, "Binary
 * Format") for rows of text, int4 and float4[] fields: what `COPY ... FROM STDIN (FORMAT binary)`
 * reads. Vectors travel as four bytes a number, with nothing to format here nor parse there (a
 * vector as text took about as long to write and to read as the rest of its row). Written here:
 * pg-copy-streams-binary encodes through Node streams with six dependencies of its own, for
 * pg-copy-streams; a group is one buffer of three field types, sent by both backends' pipelines.
 */

export type CopyField = { text: string | null } | { int4: number } | { float4s: ArrayLike<number> | null };

/** PGCOPY\n\377\r\n\0, then flags and header extension length (both 0). */
const SIGNATURE = Buffer.from([0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
/** float4's type OID, which an array's header names. */
const FLOAT4_OID = 700;

/** One binary COPY stream of `rows`, each with the same fields in the order of the COPY's column list. */
export function encodeCopyBinary(rows: ReadonlyArray<readonly CopyField[]>): Buffer {
  const texts = rows.map((row) => row.map((f) => ('text' in f && f.text !== null ? Buffer.from(f.text, 'utf8') : undefined)));
  let size = SIGNATURE.length + 2;
  rows.forEach((row, r) => {
    size += 2;
    row.forEach((field, i) => {
      size += 4;
      if ('text' in field) size += texts[r]?.[i]?.length ?? 0;
      else if ('int4' in field) size += 4;
      else if (field.float4s) size += 20 + field.float4s.length * 8;
    });
  });
  const out = Buffer.allocUnsafe(size);
  let at = SIGNATURE.copy(out, 0);
  rows.forEach((row, r) => {
    at = out.writeInt16BE(row.length, at);
    row.forEach((field, i) => {
      if ('text' in field) {
        const bytes = texts[r]?.[i];
        if (!bytes) return void (at = out.writeInt32BE(-1, at));
        at = out.writeInt32BE(bytes.length, at);
        at += bytes.copy(out, at);
      } else if ('int4' in field) {
        at = out.writeInt32BE(4, at);
        at = out.writeInt32BE(field.int4, at);
      } else if (!field.float4s) {
        at = out.writeInt32BE(-1, at);
      } else {
        const values = field.float4s;
        // One dimension, no nulls, float4 elements, then the dimension's length and lower bound (1).
        at = out.writeInt32BE(20 + values.length * 8, at);
        at = out.writeInt32BE(1, at);
        at = out.writeInt32BE(0, at);
        at = out.writeInt32BE(FLOAT4_OID, at);
        at = out.writeInt32BE(values.length, at);
        at = out.writeInt32BE(1, at);
        at += elements(values).copy(out, at);
      }
    });
  });
  out.writeInt16BE(-1, at);
  return out;
}

/**
 * An array's elements, each its length (4) and its float4, big-endian: written natively through
 * typed arrays and byte-swapped at once (writing each number through a Buffer method took most of
 * the encoding's time).
 */
function elements(values: ArrayLike<number>): Buffer {
  const words = new Uint32Array(values.length * 2);
  const floats = new Float32Array(words.buffer);
  for (let k = 0; k < values.length; k++) {
    words[2 * k] = 4;
    floats[2 * k + 1] = values[k] as number;
  }
  const bytes = Buffer.from(words.buffer);
  return os.endianness() === 'LE' ? bytes.swap32() : bytes;
}
