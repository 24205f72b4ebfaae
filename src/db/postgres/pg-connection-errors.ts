import { ConnectionBrokenError } from '../sql-errors.js';

/**
 * pg reports a dropped socket as a plain Error with no code, in words of its own (pg-pool's and
 * pg's client's); ours and PostgreSQL's errors never match. As a ConnectionBrokenError, the
 * engine knows it for a lost connection without reading pg's words.
 */
export function asConnectionBroken(error: unknown): unknown {
  const plain = error instanceof Error && error.constructor === Error;
  if (!plain || !/Connection terminated|connection timeout|Client has encountered a connection error/i.test(error.message)) return error;
  return new ConnectionBrokenError(error.message, { cause: error });
}
