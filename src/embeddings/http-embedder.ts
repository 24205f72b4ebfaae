import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../logger.js';
import type { Embedder, Embedding, EmbeddingSpace } from './embedder.js';
import type { EmbeddingsConfig } from './embeddings-config.js';
import { EmbeddingInputError, EmbeddingProviderError, networkProblem, scrubbed, shownEndpoint } from './provider-errors.js';
import { providerMessage, saysModelUnknown, WIRE_FORMATS, type WireFormat } from './provider-wire.js';
import { backoffMs, isRetriedStatus, MAX_RETRY_AFTER_MS, retryAfterMs } from './retry-policy.js';
import { FairLimit } from '../fair-limit.js';

/** The server's one embedder, or none when `--embeddings none`. */
export function createEmbedder(config: EmbeddingsConfig | undefined, log: Logger): Embedder | undefined {
  return config ? new HttpEmbedder(config, log) : undefined;
}

/** A failure worth another attempt (rate limit, server error, timeout, network), and how long the provider asked us to wait. */
interface Transient {
  problem: string;
  failure: 'unreachable' | 'timeout' | 'unavailable';
  retryAfterMs?: number | undefined;
}

const GAVE_UP: Record<Transient['failure'], string> = {
  unreachable: 'is unreachable',
  timeout: 'did not answer in time',
  unavailable: 'kept failing',
};

/**
 * An embedding provider over HTTP, in either wire format. Texts go in batches of `batchSize`;
 * every caller's batches share one limiter, so the server never has more than `concurrency`
 * requests in flight, whatever the number of tool calls; queries go first, and workspaces'
 * document batches take turns (src/fair-limit.ts).
 */
export class HttpEmbedder implements Embedder {
  readonly space: EmbeddingSpace;
  readonly #config: EmbeddingsConfig;
  readonly #wire: WireFormat;
  readonly #endpoint: URL;
  readonly #shown: string;
  readonly #limit: FairLimit;
  readonly #retryBaseMs: number;

  constructor(
    config: EmbeddingsConfig,
    private readonly log: Logger,
    /** Tests shorten the backoff; the server uses the default. */
    options: { retryBaseMs?: number } = {},
  ) {
    this.space = config.space;
    this.#config = config;
    this.#wire = WIRE_FORMATS[config.space.provider];
    this.#endpoint = new URL(config.url);
    this.#endpoint.pathname = `${this.#endpoint.pathname.replace(/\/+$/, '')}${this.#wire.path}`;
    this.#shown = shownEndpoint(this.#endpoint);
    this.#limit = new FairLimit(config.concurrency);
    this.#retryBaseMs = options.retryBaseMs ?? 500;
  }

  async embedQuery(text: string, signal?: AbortSignal): Promise<Embedding> {
    const [embedding] = await this.#embed([text], this.space.queryPrefix, { urgent: true }, signal);
    return embedding as Embedding;
  }

  embedDocuments(texts: readonly string[], signal?: AbortSignal, workspace = ''): Promise<Embedding[]> {
    return this.#embed(texts, this.space.documentPrefix, { workspace }, signal);
  }

  async #embed(texts: readonly string[], prefix: string, lane: { urgent: true } | { workspace: string }, signal: AbortSignal | undefined): Promise<Embedding[]> {
    if (texts.length === 0) return [];
    const empty = texts.findIndex((t) => t.length === 0);
    if (empty >= 0) throw new EmbeddingInputError(`Text ${empty + 1} of ${texts.length} is empty: there is nothing to embed.`);
    const cut = texts.map((text) => this.#cut(text));
    const inputs = cut.map((c) => prefix + c.text);
    const batches: string[][] = [];
    for (let i = 0; i < inputs.length; i += this.#config.batchSize) batches.push(inputs.slice(i, i + this.#config.batchSize));
    // The first batch to fail stops its siblings: the call has failed, their answers would be thrown away.
    const siblings = new AbortController();
    const stop = signal ? AbortSignal.any([signal, siblings.signal]) : siblings.signal;
    try {
      const answers = await Promise.all(batches.map((batch) => this.#limit.run(lane, () => this.#request(batch, stop))));
      return answers.flat().map((vector, i) => ({ vector, truncated: cut[i]?.truncated }));
    } catch (error) {
      siblings.abort();
      if (signal?.aborted) throw signal.reason;
      throw error;
    }
  }

  /** The text, cut to the configured maximum (never inside a surrogate pair), and what was cut. */
  #cut(text: string): { text: string; truncated: Embedding['truncated'] } {
    const max = this.#config.maxInputChars;
    if (text.length <= max) return { text, truncated: undefined };
    const end = /[\uD800-\uDBFF]/.test(text.charAt(max - 1)) ? max - 1 : max;
    return { text: text.slice(0, end), truncated: { inputChars: text.length, keptChars: end } };
  }

  /** One batch, retried on transient failures; the vectors in input order. */
  async #request(inputs: string[], signal: AbortSignal): Promise<number[][]> {
    const { space, maxRetries } = this.#config;
    const body = JSON.stringify(this.#wire.body(space.model, inputs, this.#config.sendDimensions ? space.dimensions : undefined));
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted();
      const outcome = await this.#attempt(body, inputs.length, signal);
      if (Array.isArray(outcome)) return outcome;
      const attempts = `${attempt} attempt${attempt === 1 ? '' : 's'}`;
      if (outcome.retryAfterMs !== undefined && outcome.retryAfterMs > MAX_RETRY_AFTER_MS) {
        throw new EmbeddingProviderError(
          outcome.failure,
          `The embedding provider at ${this.#shown} answered ${outcome.problem} and asks to wait ${Math.ceil(outcome.retryAfterMs / 1000)} s ` +
            'before trying again (Retry-After): retry the call then, or lower PG_WORKSPACE_EMBEDDINGS_CONCURRENCY.',
        );
      }
      if (attempt > maxRetries) throw this.#gaveUp(outcome, attempts);
      const waitMs = outcome.retryAfterMs ?? backoffMs(attempt, this.#retryBaseMs);
      this.log.warn('embedding request failed; retrying', { endpoint: this.#shown, problem: outcome.problem, attempt, waitMs });
      await delay(waitMs, undefined, { signal }).catch(() => signal.throwIfAborted());
    }
  }

  #gaveUp(outcome: Transient, attempts: string): EmbeddingProviderError {
    const provider = this.#config.space.provider;
    const advice =
      outcome.failure === 'unavailable'
        ? 'Retry the call later; if it keeps happening, lower PG_WORKSPACE_EMBEDDINGS_CONCURRENCY or PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE.'
        : outcome.failure === 'timeout'
          ? `A slow model may need a longer PG_WORKSPACE_EMBEDDINGS_TIMEOUT_MS (now ${this.#config.timeoutMs}) or a smaller PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE (now ${this.#config.batchSize}).`
          : `Check that it is running${provider === 'ollama' ? ' (`ollama serve`)' : ''} and that --embeddings-url / PG_WORKSPACE_EMBEDDINGS_URL points at it.`;
    return new EmbeddingProviderError(
      outcome.failure,
      `The embedding provider at ${this.#shown} ${GAVE_UP[outcome.failure]}: ${outcome.problem} (${attempts}). ${advice}`,
    );
  }

  /** One HTTP exchange: the vectors, a transient failure to retry, or a throw for a failure no retry mends. */
  async #attempt(body: string, count: number, signal: AbortSignal): Promise<number[][] | Transient> {
    const key = this.#config.apiKey?.reveal();
    const timeout = AbortSignal.timeout(this.#config.timeoutMs);
    let status: number;
    let text: string;
    let retryAfter: string | null;
    try {
      const response = await fetch(this.#endpoint, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          ...(key ? { authorization: `Bearer ${key}` } : {}),
        },
        body,
        signal: AbortSignal.any([signal, timeout]),
      });
      status = response.status;
      retryAfter = response.headers.get('retry-after');
      text = await response.text();
    } catch (error) {
      signal.throwIfAborted();
      if (timeout.aborted) return { failure: 'timeout', problem: `no answer within ${this.#config.timeoutMs} ms` };
      return { failure: 'unreachable', problem: networkProblem(error) };
    }
    if (status >= 200 && status < 300) return this.#vectors(text, count);
    const said = status === 401 || status === 403 ? '' : providerMessage(scrubbed(text, key));
    const http = `HTTP ${status}${said ? `: ${said}` : ''}`;
    if (isRetriedStatus(status)) {
      return { failure: 'unavailable', problem: http, retryAfterMs: retryAfterMs(retryAfter) };
    }
    const model = this.#config.space.model;
    if (status === 401 || status === 403) {
      throw new EmbeddingProviderError(
        'auth',
        `The embedding provider at ${this.#shown} refused the request (HTTP ${status}): ` +
          (key
            ? 'check the API key in PG_WORKSPACE_EMBEDDINGS_API_KEY (wrong, expired, or without access to this model).'
            : 'it wants an API key: set PG_WORKSPACE_EMBEDDINGS_API_KEY.'),
      );
    }
    if (saysModelUnknown(status, text)) {
      throw new EmbeddingProviderError(
        'model',
        `The embedding provider at ${this.#shown} does not know the model "${model}" (${http}): ${this.#wire.pullAdvice(model)}.`,
      );
    }
    if (status === 404) {
      throw new EmbeddingProviderError(
        'endpoint',
        `The embedding provider has no ${this.#wire.name} endpoint at ${this.#shown} (${http}): check --embeddings-url / ` +
          `PG_WORKSPACE_EMBEDDINGS_URL${this.#config.space.provider === 'openai' ? ' (OpenAI-compatible servers usually want it to end in /v1)' : ''} ` +
          'and that --embeddings names the right format.',
      );
    }
    if (/context length|too long|maximum context|exceeds/i.test(said)) {
      throw new EmbeddingProviderError(
        'too-long',
        `The embedding provider at ${this.#shown} refused a text longer than the model "${model}" takes (${http}): ` +
          `lower PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS (now ${this.#config.maxInputChars}), and texts are cut to it (results say which).`,
      );
    }
    throw new EmbeddingProviderError('refused', `The embedding provider at ${this.#shown} refused the request (${http}).`);
  }

  #vectors(text: string, count: number): number[][] {
    const malformed = (what: string) =>
      new EmbeddingProviderError(
        'malformed',
        `The embedding provider at ${this.#shown} answered with something that is not a ${this.#wire.name} response (${what}): ` +
          `check that --embeddings ${this.#config.space.provider} is the format the server at --embeddings-url speaks.`,
      );
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw malformed('not JSON');
    }
    const vectors = this.#wire.vectors(answer, count);
    if (typeof vectors === 'string') throw malformed(vectors);
    const { dimensions, model } = this.#config.space;
    const wrong = vectors.find((v) => v.length !== dimensions);
    if (wrong) {
      throw new EmbeddingProviderError(
        'dimensions',
        `The model "${model}" at ${this.#shown} made vectors of ${wrong.length} dimensions, but ${dimensions} are configured ` +
          `(--embeddings-dimensions / PG_WORKSPACE_EMBEDDINGS_DIMENSIONS): set it to ${wrong.length}, or choose a model that makes ${dimensions}.`,
      );
    }
    return vectors;
  }
}
