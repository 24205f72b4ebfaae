/**
 * The contract between embedding providers (`src/embeddings/`) and what uses them (the `search`
 * tool, document and directory ingest, `reembed`). Vectors from two spaces are not comparable,
 * so every vector a workspace stores or searches with is tagged with the space that made it.
 */

/** Everything that decides where a text lands: any difference makes another space. */
export interface EmbeddingSpace {
  provider: 'openai' | 'ollama';
  model: string;
  dimensions: number;
  /** Prepended to search queries (nomic-embed-text: `search_query: `); empty for none. */
  queryPrefix: string;
  /** Prepended to stored documents (nomic-embed-text: `search_document: `); empty for none. */
  documentPrefix: string;
}

export interface Embedding {
  vector: number[];
  /** Set when the input was longer than the provider takes: what was cut, for the caller's result. */
  truncated?: { inputChars: number; keptChars: number } | undefined;
}

/** A configured provider. Batching, bounded concurrency, timeouts and retries happen inside. */
export interface Embedder {
  readonly space: EmbeddingSpace;
  /**
   * One embedding per text, in order, each with the document prefix. `workspace`: whose
   * documents these are (workspaces' batches take turns at the provider).
   */
  embedDocuments(texts: readonly string[], signal?: AbortSignal, workspace?: string): Promise<Embedding[]>;
  /** The query's embedding, with the query prefix. */
  embedQuery(text: string, signal?: AbortSignal): Promise<Embedding>;
}
