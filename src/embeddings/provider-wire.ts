import type { EmbeddingsProvider } from './embeddings-config.js';

/**
 * What differs between the two wire formats, as one table read by the embedder: where to send,
 * what to send, how to read the answer and how the provider says it does not know the model.
 */
export interface WireFormat {
  /** Appended to the base URL's path. */
  path: string;
  /** What `docs/embeddings.md` and the errors call the format. */
  name: string;
  body(model: string, inputs: readonly string[], dimensions: number | undefined): Record<string, unknown>;
  /** The vectors, in input order; a string saying what is wrong when the answer is not of this format. */
  vectors(answer: unknown, count: number): number[][] | string;
  /** What to tell the user when the model is unknown. */
  pullAdvice(model: string): string;
}

const isVector = (value: unknown): value is number[] =>
  Array.isArray(value) && value.length > 0 && value.every((n) => typeof n === 'number' && Number.isFinite(n));

/**
 * POST {base}/embeddings: `{ model, input: [...], encoding_format: "float", dimensions? }` →
 * `{ data: [{ index, embedding }], model, usage }`. The data are ordered by `index`, which the
 * specification does not promise to be input order.
 */
const openai: WireFormat = {
  path: '/embeddings',
  name: 'OpenAI-compatible /embeddings',
  body: (model, input, dimensions) => ({ model, input, encoding_format: 'float', ...(dimensions ? { dimensions } : {}) }),
  vectors(answer, count) {
    const data = (answer as { data?: unknown } | null)?.data;
    if (!Array.isArray(data)) return 'no "data" array';
    if (data.length !== count) return `${data.length} embeddings for ${count} inputs`;
    const vectors: number[][] = new Array<number[]>(count);
    for (const item of data as Array<{ index?: unknown; embedding?: unknown } | null>) {
      const index = item?.index;
      if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= count || vectors[index]) {
        return `data[].index ${JSON.stringify(index)} is not a distinct input position from 0 to ${count - 1}`;
      }
      if (typeof item?.embedding === 'string') return 'the embeddings are base64 strings, not the floats asked for (encoding_format: "float")';
      if (!isVector(item?.embedding)) return `data[${index}].embedding is not an array of numbers`;
      vectors[index] = item.embedding;
    }
    return vectors;
  },
  pullAdvice: (model) =>
    `check --embeddings-model / PG_WORKSPACE_EMBEDDINGS_MODEL ("${model}") against the models this server serves (GET /models lists them)`,
};

/**
 * POST {base}/api/embed: `{ model, input: [...], truncate: false, dimensions? }` →
 * `{ model, embeddings: [[...]] }`. `truncate: false` makes Ollama refuse an input longer than
 * the model's context instead of cutting it silently; the embedder cuts first, and says so.
 */
const ollama: WireFormat = {
  path: '/api/embed',
  name: 'Ollama /api/embed',
  body: (model, input, dimensions) => ({ model, input, truncate: false, ...(dimensions ? { dimensions } : {}) }),
  vectors(answer, count) {
    const embeddings = (answer as { embeddings?: unknown } | null)?.embeddings;
    if (!Array.isArray(embeddings)) return 'no "embeddings" array';
    if (embeddings.length !== count) return `${embeddings.length} embeddings for ${count} inputs`;
    const bad = embeddings.findIndex((e) => !isVector(e));
    if (bad >= 0) return `embeddings[${bad}] is not an array of numbers`;
    return embeddings as number[][];
  },
  pullAdvice: (model) => `pull it on the Ollama host: \`ollama pull ${model}\``,
};

export const WIRE_FORMATS: Readonly<Record<EmbeddingsProvider, WireFormat>> = { openai, ollama };

/** The provider's own words from an error body: OpenAI's `{ error: { message } }`, Ollama's `{ error: "..." }`, else the text. */
export function providerMessage(body: string): string {
  let message = body;
  try {
    const parsed = JSON.parse(body) as { error?: unknown; message?: unknown; detail?: unknown } | null;
    const error = parsed?.error;
    const found =
      typeof error === 'string' ? error
      : typeof (error as { message?: unknown } | undefined)?.message === 'string' ? (error as { message: string }).message
      : typeof parsed?.message === 'string' ? parsed.message
      : typeof parsed?.detail === 'string' ? parsed.detail
      : undefined;
    if (found !== undefined) message = found;
  } catch {
    // Not JSON (an HTML error page from a proxy, say): the text itself.
  }
  message = message.replace(/\s+/g, ' ').trim();
  return message.length > 300 ? `${message.slice(0, 300)}…` : message;
}

/** OpenAI's `model_not_found`, Ollama's `model "x" not found, try pulling it first`, vLLM's "does not exist". */
export function saysModelUnknown(status: number, body: string): boolean {
  if (status !== 404 && status !== 400) return false;
  return /model_not_found/.test(body) || (/model/i.test(body) && /not found|does not exist|not exist|unknown|no such/i.test(body));
}
