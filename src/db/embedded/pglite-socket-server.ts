import { chmod, mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { PGLiteSocketHandler } from '@electric-sql/pglite-socket';
import type { Mutex } from '../mutex.js';
import { StatementTimeoutError, type PGliteThread } from './pglite-thread.js';
import { SESSION_TAKEN } from '../session-claims.js';

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
const RENEW_REASON = "a new session: the last one held another workspace's custom settings";
const ERROR_TYPE = 0x45;
const TERMINATE = 0x58;

/** An ErrorResponse with PostgreSQL's fields for `error` (severity, SQLSTATE, message, detail). */
function errorResponse(error: StatementTimeoutError): Buffer {
  const field = (code: string, value: string) => Buffer.concat([Buffer.from(code), Buffer.from(value), Buffer.from([0])]);
  const body = Buffer.concat([
    field('S', error.severity),
    field('V', error.severity),
    field('C', error.code),
    field('M', error.message),
    field('D', error.detail),
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
  if (tail.length < 6 || tail[0] !== 0x5a || tail[1] !== 0 || tail[2] !== 0 || tail[3] !== 0 || tail[4] !== 5) return undefined;
  return String.fromCharCode(tail[5] as number);
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
    this.#connections.set(handler.handlerId, { handler, chain: Promise.resolve(), gone: false, queried: false, skipToSync: false, executed: false, renew: false });
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
    if (message[0] === EXECUTE_TYPE) connection.executed = true;
    let head: Uint8Array | undefined;
    const send = (data: Uint8Array) => {
      bytes += data.length;
      tail = lastBytes(tail, data, 6);
      if (claim && head === undefined) head = data.slice(0, 256);
      onData(data);
    };
    try {
      // PGlite keeps this callback installed after the exchange: this process's own calls must
      // parse their replies themselves (query, exec, execProtocolStream; never execProtocol or
      // execProtocolRaw, whose reply would come here, see PGliteDatabase.pipeline).
      await this.pglite.execRaw(message, send);
    } catch (error) {
      if (error instanceof StatementTimeoutError) {
        await this.#timedOut(connection, holder, message, error, send);
      } else {
        // PGlite itself failed (not an SQL error, which is a reply): never keep the others waiting.
        this.#release();
        throw error;
      }
    }
    if (head && isErrorWithCode(head, SESSION_TAKEN)) connection.renew = true;
    const status = readyStatus(tail);
    holder.midExchange = status === undefined;
    if (status) holder.status = status;
    if (status) connection.executed = false;
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
   * The client's statement was ended at its timeout and the store reopened with a new session:
   * it is told as PostgreSQL tells it (the error; then ReadyForQuery at once for a simple query,
   * or after skipping to its Sync), and a transaction it had open is failed, as PostgreSQL's
   * would be, so that its next statements are refused until it rolls back rather than run alone.
   */
  async #timedOut(connection: Connection, holder: Holder, message: Uint8Array, error: StatementTimeoutError, send: (data: Uint8Array) => void): Promise<void> {
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
      // Its claim was refused and it left before its exchange ended: the session is replaced all the same.
      if (connection.renew) await this.pglite.renew(RENEW_REASON);
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
