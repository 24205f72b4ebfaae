/**
 * Why an embedding request failed, worded for the agent or operator who must act on it. Messages
 * name the endpoint without credentials or query string, and never carry the API key: a
 * provider's own words are scrubbed of it, and left out entirely when it rejected the key (OpenAI
 * quotes part of a wrong key back).
 */
export type ProviderFailure =
  | 'unreachable'
  | 'timeout'
  | 'auth'
  | 'model'
  | 'endpoint'
  | 'dimensions'
  | 'malformed'
  | 'too-long'
  | 'refused'
  | 'unavailable';

export class EmbeddingProviderError extends Error {
  override name = 'EmbeddingProviderError';
  constructor(
    readonly failure: ProviderFailure,
    message: string,
  ) {
    super(message);
  }
}

/** The caller asked for something the provider cannot be asked (an empty text). */
export class EmbeddingInputError extends Error {
  override name = 'EmbeddingInputError';
}

export class EmbeddingsNotConfiguredError extends Error {
  override name = 'EmbeddingsNotConfiguredError';
  constructor() {
    super(
      'This server has no embedding provider, so it cannot turn text into vectors. Start it with --embeddings openai ' +
        '(any OpenAI-compatible /embeddings endpoint, with --embeddings-url and PG_WORKSPACE_EMBEDDINGS_API_KEY) or ' +
        '--embeddings ollama (a local Ollama); see docs/embeddings.md. Searching with a vector of your own needs none.',
    );
  }
}

/** Where a request went, for messages and logs: scheme, host, port and path; no user, password or query string. */
export function shownEndpoint(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** `text` without the key in it. */
export function scrubbed(text: string, key: string | undefined): string {
  return key ? text.split(key).join('[redacted]') : text;
}

/** Node's fetch fails with a TypeError whose `cause` carries the socket's error code. */
export function networkProblem(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused: nothing listens there';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found (DNS)';
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
    case 'EPIPE':
      return 'the connection was closed before an answer';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'the connection timed out';
    default:
      return code ?? (error instanceof Error ? error.message : String(error));
  }
}
