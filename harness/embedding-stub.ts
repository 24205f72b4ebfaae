import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

/*
 * A loopback embedding provider for tests: a real HTTP server on 127.0.0.1 that speaks both wire
 * formats (OpenAI-compatible POST /v1/embeddings, Ollama POST /api/embed) as the providers do,
 * errors included, with deterministic vectors in which texts sharing words are near each other.
 */

const WORD = /[\p{L}\p{N}]+/gu;

/** FNV-1a, 32 bits: cheap, stable across runs and platforms. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/**
 * The stub's embedding of `text`: its lower-cased words (weight 1) and their character trigrams
 * (weight 0.5, so "index" is near "indexes") hashed into `dimensions` signed buckets, L2-normalised.
 * Texts sharing words have a high cosine similarity; unrelated texts are near 0. Tests compute
 * expected vectors and rankings with this same function.
 */
export function stubEmbedding(text: string, dimensions: number): number[] {
  const vector = new Array<number>(dimensions).fill(0);
  const add = (feature: string, weight: number) => {
    const hash = fnv1a(feature);
    vector[hash % dimensions] = (vector[hash % dimensions] ?? 0) + (hash & 0x80000000 ? -weight : weight);
  };
  for (const word of text.toLowerCase().match(WORD) ?? []) {
    add(`w:${word}`, 1);
    const padded = `#${word}#`;
    for (let i = 0; i + 3 <= padded.length; i++) add(`t:${padded.slice(i, i + 3)}`, 0.5);
  }
  const norm = Math.hypot(...vector);
  if (norm === 0) return vector.map((_, i) => (i === 0 ? 1 : 0));
  return vector.map((v) => v / norm);
}

export function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += (a[i] ?? 0) * (b[i] ?? 0);
  return dot / (Math.hypot(...a) * Math.hypot(...b));
}

/** What the next request gets instead of (or before) its answer; queued, one per request. */
export type StubFault =
  | { status: number; body?: unknown; headers?: Record<string, string> }
  | { delayMs: number }
  | { dimensions: number }
  | { malformed: 'json' | 'shape' }
  | { reset: true };

export interface StubRequest {
  format: 'openai' | 'ollama';
  body: Record<string, unknown>;
  headers: IncomingHttpHeaders;
  /** When it arrived (Date.now()). */
  at: number;
}

export interface EmbeddingStub {
  /** Base URL for `--embeddings openai` (ends in /v1). */
  readonly openaiUrl: string;
  /** Base URL for `--embeddings ollama`. */
  readonly ollamaUrl: string;
  /** Every request that reached an embeddings route, in arrival order. */
  readonly requests: StubRequest[];
  /** Texts embedded in answered requests. */
  inputs: number;
  /** The most requests in flight at once. */
  maxInFlight: number;
  /** Every request waits this long before its answer (to see concurrency). */
  delayMs: number;
  /** Queues faults: the next request gets the first, and so on. */
  fail(...faults: StubFault[]): void;
  /** Forgets requests, counters and queued faults. */
  reset(): void;
  close(): Promise<void>;
}

export interface StubOptions {
  /** Length of every vector unless the request asks for `dimensions` (default 768). */
  dimensions?: number;
  /** Models it serves (default: nomic-embed-text, text-embedding-3-small, stub-embed). */
  models?: string[];
  /** When set, requests must carry "Authorization: Bearer <apiKey>". */
  apiKey?: string;
  /** Ollama with `truncate: false` refuses inputs longer than this (default: no limit). */
  contextChars?: number;
}

export async function startEmbeddingStub(options: StubOptions = {}): Promise<EmbeddingStub> {
  const models = new Set(options.models ?? ['nomic-embed-text', 'text-embedding-3-small', 'stub-embed']);
  const faults: StubFault[] = [];
  let inFlight = 0;
  const stub = {
    requests: [] as StubRequest[],
    inputs: 0,
    maxInFlight: 0,
    delayMs: 0,
    fail: (...more: StubFault[]) => void faults.push(...more),
    reset() {
      stub.requests.length = 0;
      stub.inputs = 0;
      stub.maxInFlight = 0;
      stub.delayMs = 0;
      faults.length = 0;
    },
  };

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    if (res.destroyed) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(text);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const format = req.method === 'POST' && req.url === '/v1/embeddings' ? 'openai' : req.method === 'POST' && req.url === '/api/embed' ? 'ollama' : undefined;
      if (!format) return send(res, 404, req.url?.startsWith('/api') ? '404 page not found' : { error: { message: 'Not Found' } });
      inFlight++;
      stub.maxInFlight = Math.max(stub.maxInFlight, inFlight);
      res.on('close', () => inFlight--);
      void answer(format, Buffer.concat(chunks).toString('utf8'), req.headers, res).catch(() => res.destroy());
    });
  });

  async function answer(format: 'openai' | 'ollama', raw: string, headers: IncomingHttpHeaders, res: ServerResponse) {
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return send(res, 400, format === 'openai' ? { error: { message: 'We could not parse the JSON body of your request.', type: 'invalid_request_error' } } : { error: 'invalid character' });
    }
    stub.requests.push({ format, body, headers, at: Date.now() });
    const fault = faults.shift();
    const wait = stub.delayMs + (fault && 'delayMs' in fault ? fault.delayMs : 0);
    if (wait > 0) await delay(wait);
    if (fault && 'reset' in fault) return res.destroy();
    if (fault && 'status' in fault) return send(res, fault.status, fault.body ?? { error: { message: `stub fault ${fault.status}` } }, fault.headers);

    if (options.apiKey !== undefined && headers.authorization !== `Bearer ${options.apiKey}`) {
      const given = headers.authorization?.replace(/^Bearer /, '') ?? '';
      // OpenAI quotes the key it was given back (masked); the stub quotes it whole, the worse case.
      return send(res, 401, { error: { message: `Incorrect API key provided: ${given}.`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
    }
    const model = String(body['model']);
    if (!models.has(model)) {
      return format === 'openai'
        ? send(res, 404, { error: { message: `The model \`${model}\` does not exist or you do not have access to it.`, type: 'invalid_request_error', param: null, code: 'model_not_found' } })
        : send(res, 404, { error: `model "${model}" not found, try pulling it first` });
    }
    const input = typeof body['input'] === 'string' ? [body['input']] : (body['input'] as string[]);
    if (format === 'ollama' && body['truncate'] === false && options.contextChars !== undefined && input.some((t) => t.length > options.contextChars!)) {
      return send(res, 400, { error: 'the input length exceeds the context length' });
    }
    const dimensions = fault && 'dimensions' in fault ? fault.dimensions : typeof body['dimensions'] === 'number' ? body['dimensions'] : (options.dimensions ?? 768);
    const vectors = input.map((text) => stubEmbedding(text, dimensions));
    if (fault && 'malformed' in fault) {
      return fault.malformed === 'json' ? send(res, 200, '{"data": [') : send(res, 200, format === 'openai' ? { embeddings: vectors } : { data: [] });
    }
    stub.inputs += input.length;
    if (format === 'ollama') return send(res, 200, { model, embeddings: vectors, total_duration: 1000, load_duration: 10, prompt_eval_count: input.length });
    // Listed last first: clients must order by `index`, which the format carries for that.
    const data = vectors.map((embedding, index) => ({ object: 'embedding', index, embedding })).reverse();
    const tokens = input.reduce((n, text) => n + (text.match(WORD)?.length ?? 0), 0);
    return send(res, 200, { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(stub, {
    openaiUrl: `http://127.0.0.1:${port}/v1`,
    ollamaUrl: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
