import { randomInt } from 'node:crypto';
import { chmod, mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { PGLiteSocketHandler } from '@electric-sql/pglite-socket';
import type { Mutex } from '../mutex.js';
import { StatementCancelledError } from '../statement-cancelled.js';
import { StatementTimeoutError, type PGliteThread } from './pglite-thread.js';
import { CLAIM_SESSION_SQL, SESSION_TAKEN } from '../session-claims.js';

/** PostgreSQL clients look for `<dir>/.s.PGSQL.<port>`: with this name `psql -h <dir>` finds the socket. */
export const SOCKET_FILE = '.s.PGSQL.5432';

/** Linux keeps a unix socket's path in 108 bytes, the terminating NUL included. */
const MAX_SOCKET_PATH_BYTES = 107;

/** How long a client may keep the one session in an idle transaction before it is disconnected. */
export const IDLE_IN_TRANSACTION_MS = 15_000;

const SYNC = new Uint8Array([0x53, 0, 0, 0, 4]);
const SYNC_TYPE = 0x53;
const QUERY_TYPE = 0x51;
const EXECUTE_TYPE = 0x45;
const PARSE_TYPE = 0x50;
const CLAIM_TEXT = Buffer.from(CLAIM_SESSION_SQL);
/** How a claim's Execute ends when it succeeded: CommandComplete "SELECT 1" (an error ends with ErrorResponse). */
const CLAIM_ANSWERED = Buffer.from('C\0\0\0\x0dSELECT 1\0', 'latin1');
const RENEW_REASON = "a new session: the last one held another workspace's custom settings";
const ERROR_TYPE = 0x45;
const TERMINATE = 0x58;
const BACKEND_KEY_TYPE = 0x4b;
/** A CancelRequest's length and code (the protocol's), the whole of the first message of a connection made to send it. */
const CANCEL_REQUEST = { length: 16, code: 80877102 };

/** An ErrorResponse with PostgreSQL's fields for `error` (severity, SQLSTATE, message, detail). */
function errorResponse(error: StatementTimeoutError | StatementCancelledError): Buffer {
  const field = (code: string, value: string) => Buffer.concat([Buffer.from(code), Buffer.from(value), Buffer.from([0])]);
  const body = Buffer.concat([
    field('S', error.severity),
    field('V', error.severity),
    field('C', error.code),
    field('M', error.message),
    ...('detail' in error ? [field('D', error.detail)] : []),
    Buffer.from([0]),
  ]);
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

/**
 * Whether `head`, the start of the answer to an Execute, is an ErrorResponse with SQLSTATE
 * `code` (its fields are type byte and C string each; the SQLSTATE comes within the first few).
 */
export function isErrorWithCode(head: Uint8Array, code: string): boolean {
  if (head[0] !== ERROR_TYPE || head.length < 5) return false;
  const text = Buffer.from(head.buffer, head.byteOffset, head.length);
  for (let at = 5; at < text.length && text[at] !== 0; ) {
    const end = text.indexOf(0, at + 1);
    if (end < 0) return false;
    if (text[at] === 0x43) return text.toString('latin1', at + 1, end) === code;
    at = end + 1;
  }
  return false;
}

/** Whether `message`, a Parse, is of a claim (session-claims.ts): its statement text, after the statement's name, is the claim's. */
function parsesClaim(message: Uint8Array): boolean {
  const bytes = Buffer.from(message.buffer, message.byteOffset, message.length);
  const text = bytes.indexOf(0, 5) + 1;
  return text > 0 && bytes[text + CLAIM_TEXT.length] === 0 && bytes.subarray(text, text + CLAIM_TEXT.length).equals(CLAIM_TEXT);
}

/**
 * `data`, an answer to a startup message, with `key` in its BackendKeyData: PGlite gives every
 * connection the same one (its one backend's), which a cancel request must name a connection by.
 */
function withBackendKey(data: Uint8Array, key: { id: number; secret: number }): Uint8Array {
  const bytes = Buffer.from(data);
  for (let at = 0; at + 5 <= bytes.length; at += 1 + bytes.readInt32BE(at + 1)) {
    if (bytes[at] === BACKEND_KEY_TYPE && bytes.readInt32BE(at + 1) === 12 && at + 13 <= bytes.length) {
      bytes.writeInt32BE(key.id, at + 5);
      bytes.writeInt32BE(key.secret, at + 9);
    }
  }
  return bytes;
}

const readyForQuery = (status: string) => Buffer.from([0x5a, 0, 0, 0, 5, status.charCodeAt(0)]);

/** A simple-protocol Query message. */
function queryMessage(sql: string): Uint8Array {
  const text = Buffer.from(`${sql}\0`);
  const message = Buffer.alloc(5 + text.length);
  message.write('Q', 0);
  message.writeInt32BE(4 + text.length, 1);
  text.copy(message, 5);
  return message;
}

const ROLLBACK = queryMessage('ROLLBACK');
/** Leaves the session in a failed transaction, which refuses every statement until a ROLLBACK. */
const FAILED_TRANSACTION = queryMessage('BEGIN; SELECT 1 / 0');
const RESET = queryMessage('RESET ALL');

/** A Parse that fails: it aborts whatever transaction is open, implicit or not, without committing it. */
const ABORT = (() => {
  const text = Buffer.from('pg-workspace-mcp: the client disconnected\0\0');
  const message = Buffer.alloc(5 + text.length + 2);
  message.write('P', 0);
  message.writeInt32BE(4 + text.length + 2, 1);
  text.copy(message, 5);
  return message;
})();

/**
 * The transaction status of the ReadyForQuery message ending a response ('I' idle, 'T' in a
 * transaction, 'E' in a failed one), or undefined when the response has none: the client is
 * mid-way through an extended-protocol exchange (Parse … Sync) or a COPY. ReadyForQuery is always
 * the last message of a response when present, and no other message can end with its 6 bytes.
 */
function readyStatus(tail: Uint8Array): string | undefined {
  const at = tail.length - 6;
  if (at < 0 || tail[at] !== 0x5a || tail[at + 1] !== 0 || tail[at + 2] !== 0 || tail[at + 3] !== 0 || tail[at + 4] !== 5) return undefined;
  return String.fromCharCode(tail[at + 5] as number);
}

function lastBytes(previous: Uint8Array, data: Uint8Array, n: number): Uint8Array {
  if (data.length >= n) return data.slice(data.length - n);
  const joined = new Uint8Array(previous.length + data.length);
  joined.set(previous);
  joined.set(data, previous.length);
  return joined.slice(Math.max(0, joined.length - n));
}

/** Waits for a turn on `mutex` and keeps it until the returned function is called. */
function hold(mutex: Mutex): Promise<() => void> {
  return new Promise((granted) => {
    void mutex.run(() => new Promise<void>((release) => granted(release)));
  });
}

interface Connection {
  handler: PGLiteSocketHandler;
  /** What its cancel requests must carry with its handler id, sent to it as its BackendKeyData. */
  secret: number;
  /** Ends its message running in PGlite, at its cancel request. */
  running: AbortController | undefined;
  /** Its messages run in order, one after the other. */
  chain: Promise<unknown>;
  gone: boolean;
  /** It sent more than its startup message, so it may have changed session settings. */
  queried: boolean;
  /** Its statement was ended at its timeout mid-way through an exchange: its messages up to Sync are skipped, as PostgreSQL does after an error. */
  skipToSync: boolean;
  /** An Execute was sent since the last ReadyForQuery. */
  executed: boolean;
  /**
   * The first Execute of its exchange, the claim of a call that runs agent code
   * (session-claims.ts), was refused: the session holds another workspace's custom settings and is
   * replaced once the exchange ends, before the client (which calls again) or anyone else goes on.
   */
  renew: boolean;
  /**
   * A claim follows a statement in the exchange (a VACUUM's, SocketClientDatabase.runAsRole) and
   * has not answered yet: unless it does, whose placeholders that statement's table code left is
   * unknown, and the session is replaced once the exchange ends (a refusal, or a claim never run).
   */
  claimDue: boolean;
  /** The last Parse was that claim's: the next Execute is the claim's. */
  claimParsed: boolean;
}

interface Holder {
  id: number;
  release: () => void;
  /** Between a message without a ReadyForQuery and the one that brings it (Parse … Sync). */
  midExchange: boolean;
  status: string;
  idle?: NodeJS.Timeout;
}

/**
 * Gives PGlite's one session to one client at a time: a client keeps its turn from its first
 * message to the end of its transaction (the ReadyForQuery that says 'idle'), like a transaction
 * pooler, and this process's own work takes its turns on the same mutex. pglite-socket's own
 * queue hands the session over after every message, so another client's Parse could replace an
 * unnamed statement between a client's Parse and its Bind, or run inside this process's open
 * transaction; PGLiteSocketHandler (framing, SSL and cancel requests) calls this instead.
 */
class SessionTurns {
  readonly #connections = new Map<number, Connection>();
  #holder: Holder | undefined;

  constructor(
    private readonly pglite: PGliteThread,
    private readonly turns: Mutex,
    private readonly idleInTransactionMs: number,
  ) {}

  add(handler: PGLiteSocketHandler): void {
    this.#connections.set(handler.handlerId, { handler, secret: randomInt(2 ** 31), running: undefined, chain: Promise.resolve(), gone: false, queried: false, skipToSync: false, executed: false, renew: false, claimDue: false, claimParsed: false });
  }

  /**
   * A cancel request for the connection whose BackendKeyData was `id` and `secret`: its message
   * running in PGlite is ended as at a statement timeout (the store reopened, the client told
   * 57014), as PostgreSQL ends the statement. A connection running nothing is left alone, as
   * PostgreSQL leaves an idle backend.
   */
  cancel(id: number, secret: number): void {
    const connection = this.#connections.get(id);
    if (connection?.secret === secret) connection.running?.abort();
  }

  /** Called by the handler for each complete message of its client, in order. */
  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    const connection = this.#connections.get(handlerId);
    if (!connection || connection.gone) return Promise.reject(new Error('Handler disconnected'));
    const run = connection.chain.then(() => this.#run(handlerId, connection, message, onData));
    connection.chain = run.catch(() => undefined);
    return run;
  }

  async #run(id: number, connection: Connection, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    if (connection.gone) throw new Error('Handler disconnected');
    // Terminate: PGlite has no backend to end; the close that follows cleans up.
    if (message[0] === TERMINATE) return 0;
    if (message[0] !== 0) connection.queried = true;
    if (this.#holder?.id !== id) {
      const release = await hold(this.turns);
      if (connection.gone) {
        release();
        throw new Error('Handler disconnected');
      }
      this.#holder = { id, release, midExchange: false, status: 'I' };
    }
    const holder = this.#holder;
    clearTimeout(holder.idle);
    if (connection.skipToSync && message[0] !== SYNC_TYPE) {
      holder.midExchange = true;
      return 0;
    }
    connection.skipToSync = false;
    let bytes = 0;
    let tail: Uint8Array = new Uint8Array(0);
    // A claim's answer: the first Execute of the exchange (a refusal fits in its first bytes).
    const claim = message[0] === EXECUTE_TYPE && !connection.executed;
    // Or a claim after a statement: its Parse is recognized, since the statement before it fails
    // as it likes (table code raises what it wants) and the claim is then never run.
    if (message[0] === PARSE_TYPE) {
      connection.claimParsed = connection.executed && parsesClaim(message);
      if (connection.claimParsed) connection.claimDue = true;
    }
    const claimAfter = message[0] === EXECUTE_TYPE && connection.claimParsed;
    if (message[0] === EXECUTE_TYPE) {
      connection.executed = true;
      connection.claimParsed = false;
    }
    let head: Uint8Array | undefined;
    // The startup message's answer: this connection's own key, for its cancel requests.
    const startup = message[0] === 0;
    const send = (answer: Uint8Array) => {
      const data = startup ? withBackendKey(answer, { id, secret: connection.secret }) : answer;
      bytes += data.length;
      tail = lastBytes(tail, data, CLAIM_ANSWERED.length);
      if (claim && head === undefined) head = data.slice(0, 256);
      onData(data);
    };
    try {
      // PGlite keeps this callback installed after the exchange: this process's own calls must
      // parse their replies themselves (query, exec, execProtocolStream; never execProtocol or
      // execProtocolRaw, whose reply would come here, see PGliteDatabase.pipeline).
      connection.running = new AbortController();
      await this.pglite.execRaw(message, send, connection.running.signal);
    } catch (error) {
      if (error instanceof StatementTimeoutError || error instanceof StatementCancelledError) {
        // The store was reopened with a new session already (or, cancelled before PGlite ran it, the message never ran).
        connection.claimDue = false;
        await this.#ended(connection, holder, message, error, send);
      } else {
        // PGlite itself failed (not an SQL error, which is a reply): never keep the others waiting.
        this.#release();
        throw error;
      }
    } finally {
      connection.running = undefined;
    }
    if (head && isErrorWithCode(head, SESSION_TAKEN)) connection.renew = true;
    if (claimAfter && Buffer.from(tail.buffer, tail.byteOffset, tail.length).equals(CLAIM_ANSWERED)) connection.claimDue = false;
    const status = readyStatus(tail);
    holder.midExchange = status === undefined;
    if (status) holder.status = status;
    if (status) {
      connection.executed = false;
      connection.claimParsed = false;
      if (connection.claimDue) connection.renew = true;
      connection.claimDue = false;
    }
    if (connection.renew && status === 'I') {
      connection.renew = false;
      try {
        await this.pglite.renew(RENEW_REASON);
      } catch (error) {
        this.#release();
        throw error;
      }
    }
    if (!holder.midExchange && holder.status === 'I') {
      this.#release();
    } else {
      holder.idle = setTimeout(() => void connection.handler.detach(true), this.idleInTransactionMs);
    }
    return bytes;
  }

  /**
   * The client's statement was ended at its timeout, or at its cancel request, and the store reopened with a new session:
   * it is told as PostgreSQL tells it (the error; then ReadyForQuery at once for a simple query,
   * or after skipping to its Sync), and a transaction it had open is failed, as PostgreSQL's
   * would be, so that its next statements are refused until it rolls back rather than run alone.
   */
  async #ended(connection: Connection, holder: Holder, message: Uint8Array, error: StatementTimeoutError | StatementCancelledError, send: (data: Uint8Array) => void): Promise<void> {
    send(errorResponse(error));
    let status = 'I';
    if (holder.status !== 'I') status = (await this.#internal(FAILED_TRANSACTION)) ?? 'I';
    if (message[0] === QUERY_TYPE || message[0] === SYNC_TYPE) send(readyForQuery(status));
    else connection.skipToSync = true;
  }

  #release(): void {
    const holder = this.#holder;
    if (!holder) return;
    clearTimeout(holder.idle);
    this.#holder = undefined;
    holder.release();
  }

  /**
   * Runs a message of our own and returns the ReadyForQuery status. Through the stream API: PGlite
   * keeps the last stream's callback for its raw calls, which would send the reply to a client.
   */
  async #internal(message: Uint8Array): Promise<string | undefined> {
    let tail: Uint8Array = new Uint8Array(0);
    await this.pglite.execRaw(message, (data) => (tail = lastBytes(tail, data, 6)));
    return readyStatus(tail);
  }

  /** The client is gone: its queued messages are dropped. */
  clearQueueForHandler(handlerId: number): void {
    const connection = this.#connections.get(handlerId);
    if (connection) connection.gone = true;
  }

  /**
   * The client is gone: if it held the session, end what it left open (an exchange waiting for
   * Sync, a transaction) so that the next client starts clean, and pass the turn on.
   */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    const connection = this.#connections.get(handlerId);
    if (!connection) return;
    connection.gone = true;
    this.#connections.delete(handlerId);
    await connection.chain;
    if (!connection.queried) return;
    // A client that disconnects is the end of its session: what it SET does not outlive it
    // (as a server pooler resets a connection); while it is connected, its SETs are everyone's.
    const release = this.#holder?.id === handlerId ? () => this.#release() : await hold(this.turns);
    try {
      if (this.#holder?.id === handlerId) {
        // What it left must not commit, as a Sync alone would commit a Parse … Execute without
        // one: a failing statement aborts it first, the Sync ends the exchange (and its skip
        // till Sync), and ROLLBACK ends an explicit transaction.
        await this.#internal(ABORT);
        if ((await this.#internal(SYNC)) !== 'I') await this.#internal(ROLLBACK);
      }
      await this.#internal(RESET);
      // Its claim was refused, or not yet answered, and it left before its exchange ended: the session is replaced all the same.
      if (connection.renew || connection.claimDue) await this.pglite.renew(RENEW_REASON);
    } finally {
      release();
    }
  }
}

export interface SocketServerOptions {
  idleInTransactionMs?: number;
}

/**
 * Serves an open PGlite to other processes on a unix socket in `dir`, which is made private to
 * this user (0700). The caller holds the data directory's lock, so a socket file found there is
 * a dead owner's and is replaced.
 */
export class PGliteSocketServer {
  readonly #handlers = new Set<PGLiteSocketHandler>();

  private constructor(
    readonly socketPath: string,
    private readonly server: net.Server,
  ) {}

  static async listen(shared: { pglite: PGliteThread; turns: Mutex }, dir: string, options: SocketServerOptions = {}): Promise<PGliteSocketServer> {
    const socketPath = path.join(dir, SOCKET_FILE);
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
      throw new Error(
        `The socket path ${socketPath} is longer than the ${MAX_SOCKET_PATH_BYTES} bytes a unix socket path may have: ` +
          'use a shorter data directory (--data-dir or PG_WORKSPACE_DATA_DIR) to share the embedded store with other processes.',
      );
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    await rm(socketPath, { force: true });
    const turns = new SessionTurns(shared.pglite, shared.turns, options.idleInTransactionMs ?? IDLE_IN_TRANSACTION_MS);
    const server = net.createServer();
    const served = new PGliteSocketServer(socketPath, server);
    server.on('connection', (socket) => served.#accept(socket, turns));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // A listening server that fails later (it should not) must not crash the process.
    server.on('error', () => undefined);
    return served;
  }

  #accept(socket: net.Socket, turns: SessionTurns): void {
    const handler = new PGLiteSocketHandler({
      queryQueue: turns as unknown as ConstructorParameters<typeof PGLiteSocketHandler>[0]['queryQueue'],
      closeOnDetach: true,
    });
    turns.add(handler);
    this.#handlers.add(handler);
    // A cancel request comes alone on a connection of its own, which the handler reads and drops
    // (pglite-socket serves no cancel): heard here first, before the handler's own listener.
    socket.once('data', (first: Buffer) => {
      if (first.length === CANCEL_REQUEST.length && first.readInt32BE(0) === CANCEL_REQUEST.length && first.readInt32BE(4) === CANCEL_REQUEST.code) {
        turns.cancel(first.readInt32BE(8), first.readInt32BE(12));
      }
    });
    const forget = () => this.#handlers.delete(handler);
    handler.addEventListener('close', forget);
    handler.addEventListener('error', forget);
    void handler.attach(socket);
  }

  /**
   * Stops listening (the socket file goes away) and disconnects every client: their open
   * transactions roll back. Call before closing PGlite and before releasing the data-dir lock,
   * so that the next owner never finds this process still bound to the socket.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.all([...this.#handlers].map((handler) => handler.detach(true)));
    this.#handlers.clear();
    await closed;
  }
}
