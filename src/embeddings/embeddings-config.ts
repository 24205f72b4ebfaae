import { inspect } from 'node:util';
import type { EmbeddingSpace } from './embedder.js';

/** How the server reaches its embedding provider; absent (`--embeddings none`): no text in or out. */
export interface EmbeddingsConfig {
  space: EmbeddingSpace;
  /** The provider's base URL: `{url}/embeddings` (openai) or `{url}/api/embed` (ollama). */
  url: string;
  /**
   * The user set the dimensions: they are sent (`dimensions`), so a model that can shorten its
   * vectors (text-embedding-3-*) does. Otherwise the model's own length is only checked, since
   * many OpenAI-compatible servers refuse a `dimensions` they do not support.
   */
  sendDimensions: boolean;
  apiKey: Secret | undefined;
  batchSize: number;
  concurrency: number;
  timeoutMs: number;
  maxRetries: number;
  maxInputChars: number;
}

/** The API key, kept out of every JSON.stringify, console.log and util.inspect of the config. */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toJSON(): string {
    return '[redacted]';
  }
  toString(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return 'Secret([redacted])';
  }
}

export type EmbeddingsProvider = EmbeddingSpace['provider'];

interface KnownModel {
  dimensions: number;
  queryPrefix?: string;
  documentPrefix?: string;
}

/**
 * Models whose length (and task prefixes, from their model cards) need not be configured. Any
 * other model needs --embeddings-dimensions: a wrong guess would pin a space no vector fits.
 */
const KNOWN_MODELS: Readonly<Record<string, KnownModel>> = {
  'text-embedding-3-small': { dimensions: 1536 },
  'text-embedding-3-large': { dimensions: 3072 },
  'text-embedding-ada-002': { dimensions: 1536 },
  'nomic-embed-text': { dimensions: 768, queryPrefix: 'search_query: ', documentPrefix: 'search_document: ' },
  'mxbai-embed-large': { dimensions: 1024, queryPrefix: 'Represent this sentence for searching relevant passages: ' },
  'all-minilm': { dimensions: 384 },
  'bge-m3': { dimensions: 1024 },
};

/** nomic-embed-text makes 768 numbers: the codebase extension's chunks.embedding is vector(768). */
const DEFAULT_MODEL: Record<EmbeddingsProvider, string> = { openai: 'text-embedding-3-small', ollama: 'nomic-embed-text' };
const DEFAULT_URL: Record<EmbeddingsProvider, string> = { openai: 'https://api.openai.com/v1', ollama: 'http://127.0.0.1:11434' };

export const EMBEDDINGS_DEFAULTS = {
  batchSize: 64,
  concurrency: 4,
  timeoutMs: 60_000,
  maxRetries: 5,
  maxInputChars: 8000,
} as const;

/** pgvector's limit on a vector's dimensions. */
const MAX_DIMENSIONS = 16_000;

/** The command-line flags that configure embeddings (every other setting is an environment variable). */
export const EMBEDDINGS_FLAGS = {
  embeddings: { type: 'string' },
  'embeddings-url': { type: 'string' },
  'embeddings-model': { type: 'string' },
  'embeddings-dimensions': { type: 'string' },
  'embeddings-query-prefix': { type: 'string' },
  'embeddings-document-prefix': { type: 'string' },
} as const;

export type EmbeddingsFlags = Partial<Record<keyof typeof EMBEDDINGS_FLAGS, string>>;

export class EmbeddingsConfigError extends Error {
  override name = 'EmbeddingsConfigError';
}

/** The model's entry in KNOWN_MODELS, ignoring Ollama's `:latest`-style tag. */
function knownModel(model: string): KnownModel | undefined {
  return KNOWN_MODELS[model.replace(/:latest$/, '')] ?? KNOWN_MODELS[model.split(':')[0] ?? model];
}

/** Flags win over the environment; an empty variable is unset. Undefined: embeddings are off. */
export function parseEmbeddingsConfig(flags: EmbeddingsFlags, env: NodeJS.ProcessEnv): EmbeddingsConfig | undefined {
  const setting = (flag: keyof EmbeddingsFlags, variable: string) => flags[flag] ?? (env[variable] || undefined);
  const provider = setting('embeddings', 'PG_WORKSPACE_EMBEDDINGS') ?? 'none';
  if (provider === 'none') {
    const stray = Object.keys(flags).find((flag) => flag !== 'embeddings' && flags[flag as keyof EmbeddingsFlags] !== undefined);
    if (stray) throw new EmbeddingsConfigError(`--${stray} configures an embedding provider: give --embeddings openai|ollama too (or PG_WORKSPACE_EMBEDDINGS).`);
    return undefined;
  }
  if (provider !== 'openai' && provider !== 'ollama') {
    throw new EmbeddingsConfigError(`--embeddings / PG_WORKSPACE_EMBEDDINGS: must be none, openai or ollama, got "${provider}".`);
  }
  const model = setting('embeddings-model', 'PG_WORKSPACE_EMBEDDINGS_MODEL') ?? DEFAULT_MODEL[provider];
  const known = knownModel(model);
  const givenDimensions = setting('embeddings-dimensions', 'PG_WORKSPACE_EMBEDDINGS_DIMENSIONS');
  if (givenDimensions === undefined && !known) {
    throw new EmbeddingsConfigError(
      `--embeddings-dimensions / PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: required for the model "${model}" ` +
        '(how many numbers each of its vectors has, e.g. 768; its model card says).',
    );
  }
  const dimensions = wholeNumber(
    '--embeddings-dimensions / PG_WORKSPACE_EMBEDDINGS_DIMENSIONS',
    givenDimensions,
    known?.dimensions ?? 0,
    1,
    MAX_DIMENSIONS,
  );
  const number = (variable: string, fallback: number, min: number, max: number) =>
    wholeNumber(variable, env[variable] || undefined, fallback, min, max);
  const apiKey = env['PG_WORKSPACE_EMBEDDINGS_API_KEY'] || undefined;
  return {
    space: {
      provider,
      model,
      dimensions,
      queryPrefix: setting('embeddings-query-prefix', 'PG_WORKSPACE_EMBEDDINGS_QUERY_PREFIX') ?? known?.queryPrefix ?? '',
      documentPrefix: setting('embeddings-document-prefix', 'PG_WORKSPACE_EMBEDDINGS_DOCUMENT_PREFIX') ?? known?.documentPrefix ?? '',
    },
    url: baseUrl(setting('embeddings-url', 'PG_WORKSPACE_EMBEDDINGS_URL') ?? DEFAULT_URL[provider]),
    sendDimensions: givenDimensions !== undefined,
    apiKey: apiKey === undefined ? undefined : new Secret(apiKey),
    batchSize: number('PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE', EMBEDDINGS_DEFAULTS.batchSize, 1, 2048),
    concurrency: number('PG_WORKSPACE_EMBEDDINGS_CONCURRENCY', EMBEDDINGS_DEFAULTS.concurrency, 1, 64),
    timeoutMs: number('PG_WORKSPACE_EMBEDDINGS_TIMEOUT_MS', EMBEDDINGS_DEFAULTS.timeoutMs, 100, 600_000),
    maxRetries: number('PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES', EMBEDDINGS_DEFAULTS.maxRetries, 0, 20),
    maxInputChars: number('PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS', EMBEDDINGS_DEFAULTS.maxInputChars, 1, 1_000_000),
  };
}

function wholeNumber(setting: string, given: string | undefined, fallback: number, min: number, max: number): number {
  const value = given === undefined ? fallback : Number(given);
  if (given !== undefined && !/^\d+$/.test(given.trim())) {
    throw new EmbeddingsConfigError(`${setting}: must be a whole number from ${min} to ${max}, got "${given}".`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new EmbeddingsConfigError(`${setting}: must be a whole number from ${min} to ${max}, got "${given ?? fallback}".`);
  }
  return value;
}

/** An http(s) URL without credentials (fetch refuses them; the key has its own variable), no trailing slash. */
function baseUrl(given: string): string {
  const name = '--embeddings-url / PG_WORKSPACE_EMBEDDINGS_URL';
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    throw new EmbeddingsConfigError(`${name}: must be an http:// or https:// URL, e.g. http://127.0.0.1:11434.`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new EmbeddingsConfigError(`${name}: must be an http:// or https:// URL, got a ${url.protocol} URL.`);
  }
  if (url.username || url.password) {
    throw new EmbeddingsConfigError(`${name}: must not carry a user name or password; put the API key in PG_WORKSPACE_EMBEDDINGS_API_KEY.`);
  }
  url.pathname = url.pathname.replace(/\/+$/, '');
  url.hash = '';
  return url.toString();
}
