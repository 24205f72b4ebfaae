import { readFile } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { PGLITE_START_PARAMS } from './pglite-store.js';
import { StatementCancelledError } from '../statement-cancelled.js';

/** PostgreSQL's error (SQLSTATE 57014, its words) for a statement the embedded store's watch ended at its timeout. */
export class StatementTimeoutError extends Error {
  override name = 'StatementTimeoutError';
  readonly code = '57014';
  readonly severity = 'ERROR';
  readonly detail =
    'The embedded store (PGlite) cannot interrupt a statement: it stopped its engine, rolled the transaction back and reopened the store.';

  constructor() {
    super('canceling statement due to statement timeout');
  }
}

interface Request {
  id: number;
  op: 'query' | 'exec' | 'raw' | 'vector' | 'close';
  sql?: string;
  params?: readonly unknown[];
  bytes?: Uint8Array;
  oids?: number[];
}

interface Pending {
  request: Request;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  onData?: (data: Uint8Array) => void;
  /** Stops listening to the caller's signal. */
  settled?: () => void;
}

type Reply =
  | { ready: true }
  | { failed: Record<string, unknown> }
  | { id: number; timer: number }
  | { id: number; data: Uint8Array }
  | { id: number; done: true; value?: unknown; error?: Record<string, unknown>; heap?: number; idle?: boolean };

/**
 * PostgreSQL's WebAssembly memory grows as a statement needs, up to PGlite's 2 GiB, and never
 * shrinks: one agent statement (array_agg of millions of rows, a sort under a work_mem it raised)
 * left the process holding 2 GiB more for as long as the engine ran (red team round 4). Past this,
 * the engine is reopened after the call, when no transaction is open, which gives it back.
 */
export const ENGINE_HEAP_RESTART_BYTES = 1024 * 1024 * 1024;

/** The worker's error as an Error with PostgreSQL's fields (code, detail, …), as PGlite threw it. */
function revive(plain: Record<string, unknown>): Error {
  const error = new Error(String(plain['message']));
  Object.assign(error, plain);
  return error;
}

const WORKER_URL = new URL('./pglite-thread-worker.js', import.meta.url);

/** Node's (the ES library this compiles against does not declare it). */
declare const WebAssembly: { compile(bytes: Uint8Array): Promise<object> };

let compiled: Promise<object> | undefined;

/**
 * PostgreSQL's WebAssembly, compiled once in this process and handed to each engine thread
 * (a compiled module crosses to a worker without a copy). PGlite keeps its compiled module per
 * thread, so each new thread compiled the 9 MB module again and optimised it in the background:
 * measured here, a thread's start took 0.6-0.7 s of CPU and 0.25-0.3 s with the module handed
 * over, and its end waited less for the optimiser. A reopen after a statement timeout pays
 * that; so do tests, which open stores by the dozen.
 */
function pgliteWasm(): Promise<object> {
  compiled ??= readFile(new URL('./pglite.wasm', import.meta.resolve('@electric-sql/pglite'))).then((bytes) => WebAssembly.compile(bytes));
  return compiled;
}

/**
 * PGlite in a worker thread, one call at a time, with PostgreSQL's statement timeout enforced:
 * PGlite cannot interrupt a running statement (pg_sleep, a cross join by mistake), which held
 * the store and every process sharing it. The worker reports when PostgreSQL arms its timer; if
 * the timer falls due before the call returned, the call fails with PostgreSQL's own timeout
 * error (57014), the worker is ended and the store reopened: PostgreSQL's recovery keeps what was
 * committed and drops the transaction that was running (0.2-0.75 s in all, docs/benchmarks.md),
 * and the calls waiting meanwhile then run. A new session: what the old one had SET is gone.
 */
export class PGliteThread {
  #worker: Worker | undefined;
  /** The worker whose PGlite is open: its crash reopens the store. */
  #live: Worker | undefined;
  #ready!: Promise<void>;
  readonly #queue: Pending[] = [];
  #running: Pending | undefined;
  #nextId = 1;
  #watch: NodeJS.Timeout | undefined;
  #vectorOids: number[] = [];
  /**
   * The id of the call the worker is running now, 0 once it returned: the watch reads it, since
   * the replies of a call that just finished (a large one) may still be queued for this thread.
   */
  readonly #inWorker = new Int32Array(new SharedArrayBuffer(4));
  #closed = false;

  private constructor(
    private readonly dataDir: string,
    private readonly onRestart: (reason: string) => void,
  ) {}

  /** `onRestart` is told why, each time the store is reopened (a statement timeout, a crash). */
  static async start(dataDir: string, onRestart: (reason: string) => void = () => undefined): Promise<PGliteThread> {
    const thread = new PGliteThread(dataDir, onRestart);
    thread.#ready = thread.#spawn();
    try {
      await thread.#ready;
    } catch (error) {
      thread.#closed = true;
      await thread.#worker?.terminate();
      throw error;
    }
    return thread;
  }

  query<R>(sql: string, params?: readonly unknown[]): Promise<R[]> {
    return this.#call({ op: 'query', sql, ...(params ? { params } : {}) }) as Promise<R[]>;
  }

  async exec(sql: string): Promise<void> {
    await this.#call({ op: 'exec', sql });
  }

  /**
   * Protocol messages in, the backend's bytes out to `onData` in order (a large reply in pieces as
   * it comes). `signal` aborted while they run ends the engine as a timeout does (the transaction
   * rolled back, the store reopened) and fails the call with StatementCancelledError; aborted
   * while the call waits, it never runs.
   */
  async execRaw(bytes: Uint8Array, onData: (data: Uint8Array) => void, signal?: AbortSignal): Promise<void> {
    const rest = (await this.#call({ op: 'raw', bytes }, onData, signal)) as Uint8Array | undefined;
    if (rest) onData(rest);
  }

  /** pgvector's parser for these type OIDs (kept across a restart). */
  async parseVectors(oids: number[]): Promise<void> {
    this.#vectorOids = oids;
    await this.#call({ op: 'vector', oids });
  }

  /**
   * A new session: the engine is ended and the store reopened, as after a timeout (what was
   * committed stays). For a session that holds another workspace's custom settings
   * (session-claims.ts); the caller holds the session's turn, so no call is running.
   */
  async renew(reason: string): Promise<void> {
    this.#restart(undefined, new Error(reason));
    await this.#ready;
  }

  async close(): Promise<void> {
    try {
      await this.#call({ op: 'close' });
    } finally {
      this.#closed = true;
      await this.#worker?.terminate();
    }
  }

  async #spawn(): Promise<void> {
    const wasm = await pgliteWasm();
    const worker = new Worker(WORKER_URL, { workerData: { dataDir: this.dataDir, startParams: PGLITE_START_PARAMS, running: this.#inWorker, wasm } });
    this.#worker = worker;
    const ready = new Promise<void>((resolve, reject) => {
      const failed = (error: unknown) => {
        worker.off('message', first);
        reject(error);
      };
      const first = (reply: Reply) => {
        if ('ready' in reply) {
          this.#live = worker;
          this.#holdOpen();
          resolve();
        }
        else if ('failed' in reply) reject(revive(reply.failed));
        else return;
        worker.off('message', first);
        worker.off('error', failed);
      };
      worker.on('message', first);
      worker.once('error', failed);
    });
    this.#holdOpen();
    worker.on('message', (reply: Reply) => this.#onReply(reply));
    // A crash of the thread itself (not an SQL error): the call fails and the store is reopened.
    worker.on('error', (error) => this.#lost(worker, error));
    worker.on('exit', () => this.#lost(worker, new Error("the embedded store's engine stopped")));
    return ready;
  }

  #call(request: Omit<Request, 'id'>, onData?: (data: Uint8Array) => void, signal?: AbortSignal): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error('the embedded store is closed'));
    if (signal?.aborted) return Promise.reject(new StatementCancelledError());
    return new Promise((resolve, reject) => {
      const pending: Pending = { request: { ...request, id: this.#nextId++ }, resolve, reject, ...(onData ? { onData } : {}) };
      const cancel = () => this.#cancel(pending);
      signal?.addEventListener('abort', cancel, { once: true });
      pending.settled = () => signal?.removeEventListener('abort', cancel);
      this.#queue.push(pending);
      this.#next();
    });
  }

  /** The caller gave `pending` up: taken from the queue, or, running, ended with the engine as at a timeout. */
  #cancel(pending: Pending): void {
    const queued = this.#queue.indexOf(pending);
    if (queued >= 0) {
      this.#queue.splice(queued, 1);
      pending.settled?.();
      pending.reject(new StatementCancelledError());
    } else if (this.#running === pending) {
      this.#restart(pending, new StatementCancelledError());
    }
  }

  #next(): void {
    this.#holdOpen();
    if (this.#running) return;
    const pending = this.#queue.shift();
    if (!pending) return;
    this.#running = pending;
    this.#ready.then(
      () => {
        if (this.#running === pending) this.#worker?.postMessage(pending.request);
      },
      (error: unknown) => this.#finish(pending, error),
    );
  }

  #onReply(reply: Reply): void {
    if (!('id' in reply)) return;
    const pending = this.#running;
    if (!pending || pending.request.id !== reply.id) return;
    if ('timer' in reply) {
      // PostgreSQL (re)armed its one timer: the earliest of its active timeouts falls due then.
      clearTimeout(this.#watch);
      this.#watch = reply.timer > 0 ? setTimeout(() => this.#timedOut(pending), reply.timer) : undefined;
    } else if ('data' in reply) {
      pending.onData?.(reply.data);
    } else {
      // The call is answered after the new engine is on its way, so the calls waiting go to it.
      if ((reply.heap ?? 0) > ENGINE_HEAP_RESTART_BYTES && reply.idle) {
        this.#restart(undefined, new Error(`its memory grew to ${Math.round((reply.heap ?? 0) / 1024 ** 2)} MiB, which it never gives back`));
      }
      if (reply.error) this.#finish(pending, revive(reply.error));
      else this.#finish(pending, undefined, reply.value);
    }
  }

  #finish(pending: Pending, error: unknown, value?: unknown): void {
    if (this.#running !== pending) return;
    clearTimeout(this.#watch);
    this.#watch = undefined;
    this.#running = undefined;
    pending.settled?.();
    if (error === undefined) pending.resolve(value);
    else pending.reject(error);
    this.#next();
  }

  /**
   * The thread keeps the process alive while it opens the store and while a call runs or waits,
   * and only then: an idle store
   * left open must not keep a finished command from exiting, as PGlite in process never did.
   */
  #holdOpen(): void {
    if (this.#running || this.#queue.length > 0 || !this.#live) this.#worker?.ref();
    else this.#worker?.unref();
  }

  /** The call's timeout fell due while it ran: end the engine, fail the call, reopen. */
  #timedOut(pending: Pending): void {
    // Returned in the worker already (its last replies are on their way): it finished in time.
    if (this.#running !== pending || Atomics.load(this.#inWorker, 0) !== pending.request.id) return;
    this.#restart(pending, new StatementTimeoutError());
  }

  #lost(worker: Worker, error: unknown): void {
    if (this.#live !== worker || this.#closed) return;
    this.#restart(this.#running, error);
  }

  #restart(pending: Pending | undefined, error: unknown): void {
    const old = this.#worker;
    this.#live = undefined;
    this.#worker = undefined;
    this.onRestart(error instanceof Error ? error.message : String(error));
    // Never two PGlites on one directory: the new one opens it once the old thread is gone.
    this.#ready = Promise.resolve(old?.terminate()).then(() => this.#spawn());
    // Told to whoever calls next; not an unhandled rejection meanwhile.
    this.#ready.catch(() => undefined);
    if (pending) this.#finish(pending, error);
    // The new session's parsers, before the calls waiting run.
    if (this.#vectorOids.length > 0) {
      const oids = this.#vectorOids;
      this.#queue.unshift({ request: { id: this.#nextId++, op: 'vector', oids }, resolve: () => undefined, reject: () => undefined });
    }
    this.#next();
  }
}
