/**
 * The embedded store's PGlite, in a worker thread of its own (pglite-thread.ts starts it and is
 * the only code that talks to it). Plain JavaScript: Node runs a worker from a file as it is,
 * from the sources (tests) as from the package (scripts/bundle.js copies it beside the server).
 *
 * PGlite runs PostgreSQL without signals: a statement timeout arms PostgreSQL's timer (its
 * setitimer, which Emscripten turns into a JavaScript setTimeout) but the timer's callback can
 * only run once the statement has returned. This thread reports every arming of that timer to
 * the owner as it happens (a worker's postMessage is delivered while the worker is still busy),
 * and the owner ends this thread when the timer falls due before the call returned.
 *
 * PostgreSQL does not re-arm the timer for a new timeout while an earlier alarm is pending, so
 * the alarm left pending by the last call is delivered before each call. When the session is
 * idle (no transaction), only idle-time timeouts can be active (the statistics flush): it is
 * delivered with the clock moved to its due time, so they fire rather than re-arm, and the
 * call's own statement timeout is then seen when armed. Inside a transaction the pending alarm
 * is delivered as it is (a timeout armed by an earlier message of the same statement re-arms).
 */
/* global WebAssembly, performance */
import { parentPort, workerData } from 'node:worker_threads';

const ITIMER_REAL = 0;
/** The most of a reply held back to go with the call's end. */
const HELD_BYTES = 256 * 1024;

/** @type {undefined | ((which: number, ms: number) => number)} */
let setitimer;
/** @type {undefined | ((which: number, now: number) => void)} */
let deliverAlarm;
let clockShift = 0;
/** When the pending alarm falls due (performance.now()), or undefined. */
let alarmDue;
/** The call running now: the owner's id, to which timer arming is reported. */
let current = 0;
/** Shared with the owner: the id of the call running here, 0 once it returned (see pglite-thread.ts). */
const running = workerData.running;
/** PostgreSQL's WebAssembly memory: it grows as a statement needs and never shrinks (see pglite-thread.ts). */
let wasmMemory;

// Emscripten instantiates PGlite's module through WebAssembly.instantiate with its imports:
// the first module with a setitimer import is PostgreSQL's (its dynamic libraries come later).
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = async function (source, imports) {
  const env = imports?.env;
  const hook = setitimer === undefined && typeof env?._setitimer_js === 'function' && typeof env.emscripten_date_now === 'function';
  if (hook) {
    const armTimer = env._setitimer_js;
    setitimer = armTimer;
    const now = env.emscripten_date_now;
    env.emscripten_date_now = () => now() + clockShift;
    env._setitimer_js = (which, ms) => {
      if (which === ITIMER_REAL) {
        alarmDue = ms > 0 ? performance.now() + ms : undefined;
        if (current !== 0) parentPort.postMessage({ id: current, timer: ms });
      }
      return armTimer(which, ms);
    };
  }
  const result = await instantiate.call(this, source, imports);
  if (hook) {
    const exports = (result.instance ?? result).exports;
    deliverAlarm = exports._emscripten_timeout;
    wasmMemory = env.memory ?? exports.memory;
  }
  return result;
};

const { PGlite } = await import('@electric-sql/pglite');
const { vector } = await import('@electric-sql/pglite-pgvector');
const pgvector = (await import('pgvector')).default;

/** What crosses to the owner of an error: its name, message and PostgreSQL's fields. */
function plainError(error) {
  const plain = { name: error?.name ?? 'Error', message: error instanceof Error ? error.message : String(error) };
  if (error && typeof error === 'object') {
    for (const [key, value] of Object.entries(error)) {
      if (value === undefined || typeof value === 'string' || typeof value === 'number') plain[key] = value;
    }
  }
  return plain;
}

/** Delivers the pending alarm before a call (see the module comment). */
function deliverPending(idle) {
  if (alarmDue === undefined || !setitimer || !deliverAlarm) return;
  const due = alarmDue;
  setitimer(ITIMER_REAL, 0);
  alarmDue = undefined;
  clockShift = idle ? Math.max(0, Math.ceil(due - performance.now())) + 1 : 0;
  try {
    deliverAlarm(ITIMER_REAL, performance.now() + clockShift);
  } finally {
    clockShift = 0;
  }
}

let pglite;
try {
  pglite = await PGlite.create({
    dataDir: workerData.dataDir,
    extensions: { vector },
    startParams: workerData.startParams,
    // Compiled once by the owner's thread for all of its engine threads (pglite-thread.ts).
    pgliteWasmModule: workerData.wasm,
  });
  if (!setitimer) throw new Error('this PGlite build has no setitimer import to watch: statement timeouts cannot be enforced');
  parentPort.postMessage({ ready: true });
} catch (error) {
  parentPort.postMessage({ failed: plainError(error) });
}

/** The transaction status of the last call's ReadyForQuery ('I' idle). */
let status = 'I';
let tail = new Uint8Array(0);

async function run(request) {
  switch (request.op) {
    case 'query':
      return (await pglite.query(request.sql, request.params)).rows;
    case 'exec':
      await pglite.exec(request.sql);
      return undefined;
    case 'raw': {
      tail = new Uint8Array(0);
      // Small replies go with the call's end, one message instead of two; a large one streams
      // in pieces of at most HELD_BYTES, so neither thread holds it whole.
      let held = [];
      let heldBytes = 0;
      const flush = () => {
        if (heldBytes === 0) return undefined;
        let data = held[0];
        if (held.length > 1) {
          // Each piece an ArrayBuffer of its own, as a transfer needs (never Node's shared pool).
          data = new Uint8Array(heldBytes);
          let at = 0;
          for (const part of held) {
            data.set(part, at);
            at += part.length;
          }
        }
        held = [];
        heldBytes = 0;
        return data;
      };
      await pglite.execProtocolRawStream(request.bytes, {
        onRawData: (chunk) => {
          // A copy: the chunk is a view of PGlite's memory.
          const data = chunk.slice();
          if (data.length >= 6) tail = data.subarray(data.length - 6);
          else tail = Uint8Array.from([...tail, ...data].slice(-6));
          held.push(data);
          heldBytes += data.length;
          if (heldBytes >= HELD_BYTES) {
            const piece = flush();
            parentPort.postMessage({ id: request.id, data: piece }, [piece.buffer]);
          }
        },
      });
      const t = tail;
      // ReadyForQuery: 'Z', length 5, status.
      if (t.length === 6 && t[0] === 0x5a && t[4] === 5) status = String.fromCharCode(t[5]);
      else status = 'busy';
      return flush();
    }
    case 'vector':
      for (const oid of request.oids) pglite.parsers[oid] = (text) => pgvector.fromSql(text);
      return undefined;
    case 'close':
      await pglite.close();
      return undefined;
    default:
      throw new Error(`unknown request ${request.op}`);
  }
}

/** The engine's memory now, and whether the session is outside a transaction (a new one loses nothing then). */
function heap() {
  return { heap: wasmMemory?.buffer.byteLength ?? 0, idle: status === 'I' };
}

function finished() {
  current = 0;
  Atomics.store(running, 0, 0);
}

parentPort.on('message', async (request) => {
  try {
    // Re-armed inside a transaction, the alarm is a timeout of this session's (say, the statement
    // timeout a Parse armed for the Execute that follows): it is this call's to watch too.
    const idle = status === 'I';
    if (!idle) current = request.id;
    Atomics.store(running, 0, request.id);
    deliverPending(idle);
    current = request.id;
    const value = await run(request);
    finished();
    if (request.op === 'query' || request.op === 'exec') status = pglite.isInTransaction() ? 'T' : 'I';
    parentPort.postMessage({ id: request.id, done: true, value, ...heap() }, value instanceof Uint8Array ? [value.buffer] : []);
  } catch (error) {
    finished();
    parentPort.postMessage({ id: request.id, done: true, error: plainError(error), ...heap() });
  }
});
