import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseEmbeddingsConfig, type EmbeddingsConfig } from '../src/embeddings/embeddings-config.js';
import { HttpEmbedder } from '../src/embeddings/http-embedder.js';
import { EmbeddingInputError, EmbeddingProviderError } from '../src/embeddings/provider-errors.js';
import { createStderrLogger } from '../src/logger.js';
import { cosine, startEmbeddingStub, stubEmbedding, type EmbeddingStub } from './support/embedding-stub.js';

const KEY = 'sk-test-0123456789abcdefSECRET';
let stub: EmbeddingStub;
let logged: string[];

beforeAll(async () => {
  stub = await startEmbeddingStub();
});
afterAll(() => stub.close());
beforeEach(() => {
  stub.reset();
  logged = [];
});

/** An embedder on the stub, configured as the server would be from `env` (flags: none). */
function embedder(provider: 'openai' | 'ollama', env: Record<string, string> = {}, url?: string): HttpEmbedder {
  const config = parseEmbeddingsConfig(
    {},
    {
      PG_WORKSPACE_EMBEDDINGS: provider,
      PG_WORKSPACE_EMBEDDINGS_URL: url ?? (provider === 'openai' ? stub.openaiUrl : stub.ollamaUrl),
      PG_WORKSPACE_EMBEDDINGS_MODEL: 'nomic-embed-text',
      ...env,
    },
  ) as EmbeddingsConfig;
  return new HttpEmbedder(config, createStderrLogger('debug', (line) => logged.push(line) > 0), { retryBaseMs: 5 });
}

/** The EmbeddingProviderError `promise` rejects with. */
async function failure(promise: Promise<unknown>): Promise<EmbeddingProviderError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EmbeddingProviderError);
  return error as EmbeddingProviderError;
}

describe('OpenAI-compatible /embeddings', () => {
  it('sends model, input and encoding_format (no dimensions unless set), and orders the answer by index', async () => {
    const e = embedder('openai', { PG_WORKSPACE_EMBEDDINGS_API_KEY: KEY });
    const texts = ['alpha beta', 'gamma delta', 'epsilon'];
    const embeddings = await e.embedDocuments(texts);
    expect(stub.requests).toHaveLength(1);
    expect(stub.requests[0]?.body).toEqual({
      model: 'nomic-embed-text',
      input: texts.map((t) => `search_document: ${t}`),
      encoding_format: 'float',
    });
    expect(stub.requests[0]?.headers.authorization).toBe(`Bearer ${KEY}`);
    // The stub lists data last-first: input order comes from `index`.
    expect(embeddings.map((x) => x.vector)).toEqual(texts.map((t) => stubEmbedding(`search_document: ${t}`, 768)));
    expect(embeddings.every((x) => x.truncated === undefined)).toBe(true);
  });

  it('sends dimensions when they are configured, and the query prefix with a query', async () => {
    const e = embedder('openai', { PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '256', PG_WORKSPACE_EMBEDDINGS_QUERY_PREFIX: 'q: ' });
    const query = await e.embedQuery('where is the index');
    expect(stub.requests[0]?.body).toEqual({ model: 'nomic-embed-text', input: ['q: where is the index'], encoding_format: 'float', dimensions: 256 });
    expect(query.vector).toEqual(stubEmbedding('q: where is the index', 256));
    expect(stub.requests[0]?.headers.authorization).toBeUndefined();
  });
});

describe('Ollama /api/embed', () => {
  it('sends model, input and truncate: false; texts sharing words land near each other', async () => {
    const e = embedder('ollama');
    const docs = await e.embedDocuments(['the vector index of chunks', 'a recipe for apple pie']);
    const query = await e.embedQuery('vector index');
    expect(stub.requests.map((r) => r.body)).toEqual([
      { model: 'nomic-embed-text', input: ['search_document: the vector index of chunks', 'search_document: a recipe for apple pie'], truncate: false },
      { model: 'nomic-embed-text', input: ['search_query: vector index'], truncate: false },
    ]);
    expect(query.vector).toEqual(stubEmbedding('search_query: vector index', 768));
    const [near, far] = docs.map((d) => cosine(query.vector, d.vector)) as [number, number];
    expect(near).toBeGreaterThan(far + 0.2);
  });

  it('says which texts it cut to the maximum, never inside a surrogate pair', async () => {
    const e = embedder('ollama', { PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS: '10', PG_WORKSPACE_EMBEDDINGS_DOCUMENT_PREFIX: 'd: ' });
    const [short, long, emoji] = await e.embedDocuments(['short', 'abcdefghijKLMNOP', `abcdefghi😀tail`]);
    expect(short?.truncated).toBeUndefined();
    expect(long?.truncated).toEqual({ inputChars: 16, keptChars: 10 });
    expect(emoji?.truncated).toEqual({ inputChars: 15, keptChars: 9 });
    expect(stub.requests[0]?.body['input']).toEqual(['d: short', 'd: abcdefghij', 'd: abcdefghi']);
  });

  it('refuses an empty text before any request', async () => {
    await expect(embedder('ollama').embedDocuments(['ok', ''])).rejects.toThrow(new EmbeddingInputError('Text 2 of 2 is empty: there is nothing to embed.'));
    expect(stub.requests).toHaveLength(0);
  });
});

describe('batching and concurrency', () => {
  it('sends batches of the configured size and keeps the order', async () => {
    const e = embedder('openai', { PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: '3' });
    const texts = Array.from({ length: 10 }, (_, i) => `text number ${i}`);
    const embeddings = await e.embedDocuments(texts);
    expect(stub.requests.map((r) => (r.body['input'] as string[]).length)).toEqual([3, 3, 3, 1]);
    expect(stub.inputs).toBe(10);
    expect(embeddings.map((x) => x.vector)).toEqual(texts.map((t) => stubEmbedding(`search_document: ${t}`, 768)));
  });

  it('never has more requests in flight than the concurrency, across concurrent calls', async () => {
    const e = embedder('ollama', { PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: '1', PG_WORKSPACE_EMBEDDINGS_CONCURRENCY: '2' });
    stub.delayMs = 50;
    const texts = Array.from({ length: 6 }, (_, i) => `t${i}`);
    await Promise.all([e.embedDocuments(texts), e.embedDocuments(texts), e.embedQuery('q')]);
    expect(stub.requests).toHaveLength(13);
    expect(stub.maxInFlight).toBe(2);

    stub.reset();
    stub.delayMs = 50;
    const wide = embedder('ollama', { PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: '1', PG_WORKSPACE_EMBEDDINGS_CONCURRENCY: '5' });
    await wide.embedDocuments(texts);
    expect(stub.maxInFlight).toBe(5);
  });
});

describe('fair turns at the provider (issue 27, red team round 3)', () => {
  it("one workspace's queued batches hold neither another's search nor its documents: queries first, then workspaces in turn", async () => {
    const e = embedder('ollama', { PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: '1', PG_WORKSPACE_EMBEDDINGS_CONCURRENCY: '1' });
    stub.delayMs = 20;
    const flood = e.embedDocuments(Array.from({ length: 12 }, (_, i) => `alpha batch ${i}`), undefined, 'alpha');
    await new Promise((r) => setTimeout(r, 5));
    await Promise.all([flood, e.embedQuery('beta question'), e.embedDocuments(['beta note 0', 'beta note 1'], undefined, 'beta')]);
    const order = stub.requests.map((r) => (r.body['input'] as string[])[0]?.replace(/^search_(query|document): /, ''));
    // The first of alpha's was in flight; the query went next, then beta's documents took turns with alpha's.
    expect(order.slice(0, 6)).toEqual(['alpha batch 0', 'beta question', 'alpha batch 1', 'beta note 0', 'alpha batch 2', 'beta note 1']);
    expect(order).toHaveLength(15);
  });
});

describe('retries', () => {
  it('retries 5xx and dropped connections with backoff, then answers', async () => {
    const e = embedder('openai');
    stub.fail({ status: 503 }, { reset: true }, { status: 500 });
    const [embedding] = await e.embedDocuments(['survives']);
    expect(embedding?.vector).toEqual(stubEmbedding('search_document: survives', 768));
    expect(stub.requests).toHaveLength(4);
    expect(logged.filter((line) => line.includes('embedding request failed; retrying'))).toHaveLength(3);
  });

  it('gives up after the configured retries, saying what kept failing', async () => {
    const e = embedder('openai', { PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES: '2' });
    stub.fail({ status: 502, body: { error: { message: 'upstream overloaded' } } }, { status: 502 }, { status: 502 }, { status: 502 });
    const error = await failure(e.embedDocuments(['x']));
    expect(error.failure).toBe('unavailable');
    expect(error.message).toContain(`The embedding provider at ${stub.openaiUrl}/embeddings kept failing: HTTP 502`);
    expect(error.message).toContain('(3 attempts)');
    expect(stub.requests).toHaveLength(3);
  });

  it('honours Retry-After in seconds and as an HTTP date', async () => {
    const e = embedder('ollama');
    stub.fail({ status: 429, body: { error: 'rate limited' }, headers: { 'retry-after': '1' } });
    let started = Date.now();
    await e.embedQuery('patience');
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(stub.requests).toHaveLength(2);
    expect(logged.join('')).toContain('"waitMs":1000');

    stub.reset();
    // HTTP dates have whole seconds: two from now is at least one.
    stub.fail({ status: 429, headers: { 'retry-after': new Date(Date.now() + 2000).toUTCString() } });
    started = Date.now();
    await e.embedQuery('patience');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(stub.requests).toHaveLength(2);
  });

  it('does not wait out a Retry-After beyond its bound: fails at once, saying when to retry', async () => {
    const e = embedder('ollama');
    stub.fail({ status: 429, body: { error: 'rate limited' }, headers: { 'retry-after': '120' } });
    const error = await failure(e.embedQuery('later'));
    expect(error.message).toBe(
      `The embedding provider at ${stub.ollamaUrl}/api/embed answered HTTP 429: rate limited and asks to wait 120 s before trying again ` +
        '(Retry-After): retry the call then, or lower PG_WORKSPACE_EMBEDDINGS_CONCURRENCY.',
    );
    expect(stub.requests).toHaveLength(1);
  });

  it('times a request out, retries it, and names the timeout when every attempt is too slow', async () => {
    const e = embedder('ollama', { PG_WORKSPACE_EMBEDDINGS_TIMEOUT_MS: '200', PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES: '1' });
    stub.fail({ delayMs: 2000 });
    expect((await e.embedQuery('slow once')).vector).toHaveLength(768);
    expect(stub.requests).toHaveLength(2);

    stub.reset();
    stub.fail({ delayMs: 2000 }, { delayMs: 2000 });
    const error = await failure(e.embedQuery('slow always'));
    expect(error.failure).toBe('timeout');
    expect(error.message).toContain('did not answer in time: no answer within 200 ms (2 attempts)');
    expect(error.message).toContain('PG_WORKSPACE_EMBEDDINGS_TIMEOUT_MS (now 200)');
  });

  it("stops at once when the caller's signal aborts, without retrying", async () => {
    const e = embedder('ollama');
    stub.fail({ delayMs: 5000 });
    const reason = new Error('client cancelled');
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 100);
    await expect(e.embedQuery('cancel me', controller.signal)).rejects.toBe(reason);
    expect(stub.requests).toHaveLength(1);
  });
});

describe('errors that no retry mends', () => {
  it('unreachable: names the endpoint and says connection refused', async () => {
    const closed = await startEmbeddingStub();
    await closed.close();
    const e = embedder('ollama', { PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES: '1' }, closed.ollamaUrl);
    const error = await failure(e.embedQuery('anyone?'));
    expect(error.failure).toBe('unreachable');
    expect(error.message).toBe(
      `The embedding provider at ${closed.ollamaUrl}/api/embed is unreachable: connection refused: nothing listens there (2 attempts). ` +
        'Check that it is running (`ollama serve`) and that --embeddings-url / PG_WORKSPACE_EMBEDDINGS_URL points at it.',
    );
  });

  it('unreachable: a host that does not resolve', async () => {
    const e = embedder('openai', { PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES: '0' }, 'http://embeddings.invalid/v1');
    const error = await failure(e.embedQuery('anyone?'));
    expect(error.message).toMatch(/^The embedding provider at http:\/\/embeddings\.invalid\/v1\/embeddings is unreachable: (host not found \(DNS\)|.+) \(1 attempt\)/);
  });

  it('401: says to check the key variable, without the provider quoting the key', async () => {
    const locked = await startEmbeddingStub({ apiKey: 'the-right-key-000000' });
    try {
      const wrong = embedder('openai', { PG_WORKSPACE_EMBEDDINGS_API_KEY: KEY }, locked.openaiUrl);
      const error = await failure(wrong.embedDocuments(['x']));
      expect(error.failure).toBe('auth');
      expect(error.message).toBe(
        `The embedding provider at ${locked.openaiUrl}/embeddings refused the request (HTTP 401): check the API key in ` +
          'PG_WORKSPACE_EMBEDDINGS_API_KEY (wrong, expired, or without access to this model).',
      );
      const none = embedder('openai', {}, locked.openaiUrl);
      expect((await failure(none.embedDocuments(['x']))).message).toContain('it wants an API key: set PG_WORKSPACE_EMBEDDINGS_API_KEY.');
      const right = embedder('openai', { PG_WORKSPACE_EMBEDDINGS_API_KEY: 'the-right-key-000000' }, locked.openaiUrl);
      expect(await right.embedDocuments(['x'])).toHaveLength(1);
    } finally {
      await locked.close();
    }
  });

  it('unknown model: names it and says how to get it, in each format', async () => {
    const ollama = await failure(embedder('ollama', { PG_WORKSPACE_EMBEDDINGS_MODEL: 'mxbai-embed-large' }).embedQuery('x'));
    expect(ollama.failure).toBe('model');
    expect(ollama.message).toBe(
      `The embedding provider at ${stub.ollamaUrl}/api/embed does not know the model "mxbai-embed-large" ` +
        '(HTTP 404: model "mxbai-embed-large" not found, try pulling it first): pull it on the Ollama host: `ollama pull mxbai-embed-large`.',
    );
    const openai = await failure(embedder('openai', { PG_WORKSPACE_EMBEDDINGS_MODEL: 'text-embedding-3-large' }).embedQuery('x'));
    expect(openai.message).toContain('does not know the model "text-embedding-3-large" (HTTP 404: The model `text-embedding-3-large` does not exist');
    expect(openai.message).toContain('GET /models lists them');
    expect(stub.requests).toHaveLength(2);
  });

  it('a base URL without the embeddings route: says to check the URL', async () => {
    const error = await failure(embedder('openai', {}, stub.ollamaUrl).embedQuery('x'));
    expect(error.failure).toBe('endpoint');
    expect(error.message).toContain(`no OpenAI-compatible /embeddings endpoint at ${stub.ollamaUrl}/embeddings (HTTP 404`);
    expect(error.message).toContain('usually want it to end in /v1');
  });

  it('wrong number of dimensions: names what was configured and what came', async () => {
    stub.fail({ dimensions: 384 });
    const error = await failure(embedder('ollama').embedQuery('x'));
    expect(error.failure).toBe('dimensions');
    expect(error.message).toBe(
      `The model "nomic-embed-text" at ${stub.ollamaUrl}/api/embed made vectors of 384 dimensions, but 768 are configured ` +
        '(--embeddings-dimensions / PG_WORKSPACE_EMBEDDINGS_DIMENSIONS): set it to 384, or choose a model that makes 768.',
    );
  });

  it('malformed answers: not JSON, or not the format', async () => {
    stub.fail({ malformed: 'json' }, { malformed: 'shape' }, { malformed: 'shape' });
    const e = embedder('openai');
    expect((await failure(e.embedQuery('x'))).message).toBe(
      `The embedding provider at ${stub.openaiUrl}/embeddings answered with something that is not a OpenAI-compatible /embeddings response ` +
        '(not JSON): check that --embeddings openai is the format the server at --embeddings-url speaks.',
    );
    expect((await failure(e.embedQuery('x'))).message).toContain('(no "data" array)');
    expect((await failure(embedder('ollama').embedQuery('x'))).message).toContain('(no "embeddings" array)');
    expect(stub.requests).toHaveLength(3);
  });

  it('a text longer than the model takes: says to lower the maximum', async () => {
    const short = await startEmbeddingStub({ contextChars: 20 });
    try {
      const error = await failure(embedder('ollama', {}, short.ollamaUrl).embedQuery('x'.repeat(100)));
      expect(error.failure).toBe('too-long');
      expect(error.message).toContain('lower PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS (now 8000)');
    } finally {
      await short.close();
    }
  });

  it('the API key appears in no error and no log line, even when the provider quotes it', async () => {
    const e = embedder('openai', { PG_WORKSPACE_EMBEDDINGS_API_KEY: KEY, PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES: '1' });
    const quoting = { error: { message: `bad request for key ${KEY}` } };
    stub.fail({ status: 500, body: quoting }, { status: 500, body: quoting }, { status: 400, body: quoting }, { status: 401, body: quoting }, { status: 403, body: quoting });
    const messages: string[] = [];
    for (let i = 0; i < 4; i++) messages.push((await failure(e.embedQuery('x'))).message);
    expect(messages[0]).toContain('bad request for key [redacted]');
    expect(messages[1]).toContain('refused the request (HTTP 400: bad request for key [redacted])');
    for (const text of [...messages, ...logged]) expect(text).not.toContain(KEY);
    expect(logged.length).toBeGreaterThan(0);
  });
});
