import { validateProjectId } from '../workspaces/project-id.js';
import { checkChunkOptions, chunkText, contentHash, DEFAULT_CHUNK_OPTIONS, type Chunk, type ChunkOptions } from './chunking.js';
import {
  readStoredFiles,
  storedAsSent,
  storeFiles,
  type ChunkEmbeddings,
  type ChunkLoads,
  type FileOutcome,
  type PreparedFile,
  type Repository,
  type WorkspaceWriter,
} from './chunk-store.js';

/** add_documents writes into the codebase tables, under this one repository (a path no directory has). */
export const DOCUMENTS_REPOSITORY: Repository = { path: 'documents:', name: 'documents' };
export const MAX_DOCUMENTS_PER_CALL = 500;
export const MAX_DOCUMENT_CHARS = 2_000_000;
export const MAX_SOURCE_CHARS = 1024;

export interface DocumentInput {
  source: string;
  text: string;
  metadata?: Record<string, unknown> | undefined;
}

export interface AddDocumentsInput {
  projectId: string;
  documents: readonly DocumentInput[];
  chunkSize?: number | undefined;
  chunkOverlap?: number | undefined;
}

export interface AddDocumentsResult {
  documents: Array<{ source: string; status: 'added' | 'replaced' | 'unchanged'; chunks: number; added: number; removed: number; embedded: number }>;
  /** Chunks written. */
  added: number;
  /** Chunks already stored with this content (or repeated within a document): not written, not embedded. */
  skipped: number;
  /** Chunks of earlier versions of these sources, removed. */
  removed: number;
  /** Chunks sent to the embedding provider. */
  embedded: number;
  /** Chunks the provider cut to fit its input limit. */
  truncated: Array<{ source: string; start_line: number; end_line: number; input_chars: number; kept_chars: number }>;
  /** The embedding model, or null without a provider (then only full-text search finds these). */
  embedding_model: string | null;
  note?: string;
}

export class DocumentInputError extends RangeError {
  override name = 'DocumentInputError';
}

/**
 * Adds documents to a workspace: each is chunked (paragraph, then line boundaries), its chunks
 * stored under the `documents:` repository with the source as the file path; a source added
 * again with other text has its old chunks replaced, and chunks already stored are neither
 * written nor embedded again.
 */
export async function addDocuments(
  sandbox: WorkspaceWriter,
  embeddings: ChunkEmbeddings | undefined,
  input: AddDocumentsInput,
  signal?: AbortSignal,
  loads?: ChunkLoads,
): Promise<AddDocumentsResult> {
  const embedder = embeddings?.embedder;
  const projectId = validateProjectId(input.projectId);
  const options: ChunkOptions = { size: input.chunkSize ?? DEFAULT_CHUNK_OPTIONS.size, overlap: input.chunkOverlap ?? Math.min(DEFAULT_CHUNK_OPTIONS.overlap, Math.floor((input.chunkSize ?? DEFAULT_CHUNK_OPTIONS.size) / 4)) };
  checkChunkOptions(options);
  if (input.documents.length === 0 || input.documents.length > MAX_DOCUMENTS_PER_CALL) {
    throw new DocumentInputError(`documents must hold 1 to ${MAX_DOCUMENTS_PER_CALL} documents per call, got ${input.documents.length}.`);
  }
  const seen = new Set<string>();
  let duplicates = 0;
  const files = input.documents.map((doc, i) => {
    const source = doc.source.trim();
    if (source.length === 0 || source.length > MAX_SOURCE_CHARS) throw new DocumentInputError(`documents[${i}].source must be 1 to ${MAX_SOURCE_CHARS} characters (a path, URL or name that identifies the document).`);
    if (seen.has(source)) throw new DocumentInputError(`documents[${i}].source ${JSON.stringify(source)} appears twice in this call: send each source once.`);
    seen.add(source);
    if (doc.text.length > MAX_DOCUMENT_CHARS) {
      throw new DocumentInputError(`documents[${i}] (${JSON.stringify(source)}) has ${doc.text.length} characters, more than ${MAX_DOCUMENT_CHARS}: split it into several sources.`);
    }
    // A passage repeated within a document is stored once: its hash is the chunk's identity.
    const all = chunkText(doc.text, options, 'prose');
    const unique = new Map<string, Chunk>();
    for (const chunk of all) if (!unique.has(chunk.hash)) unique.set(chunk.hash, chunk);
    const chunks = [...unique.values()];
    duplicates += all.length - chunks.length;
    return { path: source, hash: contentHash(doc.text), sizeBytes: Buffer.byteLength(doc.text), language: null, metadata: doc.metadata ?? null, chunks };
  });
  const outcomes = await storeFiles(sandbox, embeddings, projectId, DOCUMENTS_REPOSITORY, files, signal, loads).catch(async (error: unknown) => {
    throw await sayWhatIsStored(error, sandbox, projectId, files, embedder !== undefined, signal);
  });
  const sum = (pick: (o: FileOutcome) => number) => outcomes.reduce((n, o) => n + pick(o), 0);
  const total = files.reduce((n, f) => n + f.chunks.length, 0);
  return {
    documents: outcomes.map((o, i) => ({
      source: o.path,
      status: o.unchanged ? 'unchanged' : o.existed ? 'replaced' : 'added',
      chunks: files[i]?.chunks.length ?? 0,
      added: o.added,
      removed: o.removed,
      embedded: o.embedded,
    })),
    added: sum((o) => o.added),
    skipped: total - sum((o) => o.added) + duplicates,
    removed: sum((o) => o.removed),
    embedded: sum((o) => o.embedded),
    truncated: outcomes.flatMap((o) => o.truncated.map((t) => ({ source: o.path, ...t }))),
    embedding_model: embedder?.space.model ?? null,
    ...(embedder ? {} : { note: 'No embedding provider is configured: the chunks are stored without embeddings and found by full-text search (search mode "text").' }),
  };
}

/**
 * A failed call may have stored part of its documents (each write group commits whole or not at
 * all, and a call's last group can be stored before its embeddings): its message then says how
 * many, so the agent knows what search finds now and that the same call again finishes the rest.
 * Said only when the workspace can still be read, and not for a cancelled call.
 */
async function sayWhatIsStored(
  error: unknown,
  sandbox: WorkspaceWriter,
  projectId: string,
  files: readonly PreparedFile[],
  embedding: boolean,
  signal: AbortSignal | undefined,
): Promise<unknown> {
  if (!(error instanceof Error) || signal?.aborted) return error;
  const stored = await readStoredFiles(sandbox, projectId, DOCUMENTS_REPOSITORY, files).catch(() => undefined);
  const asSent = files.filter((f) => {
    const s = stored?.get(f.path);
    return s !== undefined && storedAsSent(s, f);
  });
  if (asSent.length === 0) return error;
  const unembedded = embedding ? asSent.filter((f) => (stored?.get(f.path)?.unembedded ?? 0) > 0).length : 0;
  error.message +=
    ` ${asSent.length} of the call's ${files.length} documents are stored as sent` +
    (unembedded > 0 ? ` (${unembedded} of them without all their embeddings yet: search finds those by text only)` : '') +
    '; the same call again stores the rest, embedding only what is missing.';
  return error;
}
