import type { Embedder, Embedding } from '../embeddings/embedder.js';
import type { AgentParam } from '../sandbox/agent-statement.js';
import { EmbeddingSpaceError } from '../embeddings/embedding-spaces.js';
import { encodeCopyBinary, type CopyField } from '../db/copy-binary.js';
import { WriteGuardError, type ExecuteResult, type RowsResult, type StagedRows, type WriteSettings } from '../sandbox/workspace-sandbox.js';
import type { Chunk } from './chunking.js';
import {
  CLEAR_STAGED_CHUNKS,
  EMBEDDED_HASHES,
  ENSURE_REPOSITORY,
  FILL_EMBEDDINGS,
  INSERT_NEW_CHUNKS,
  REMOVE_FILES,
  REMOVE_STALE_CHUNKS,
  STAGE_CHUNKS,
  STORED_FILES,
  UPDATE_KEPT_CHUNKS,
  WRITE_FILES,
  WRITE_REPOSITORY,
} from './ingest-sql.js';

/** The SQL sandbox as ingest uses it: every read and write runs as the workspace's role. */
export interface WorkspaceWriter {
  readonly maxRowsCap: number;
  readAsWorkspace(projectId: string, sql: string, params: readonly AgentParam[], maxRows: number): Promise<RowsResult>;
  execute(projectId: string, sql: string, params: readonly AgentParam[], maxRows?: number): Promise<ExecuteResult>;
  writeAsWorkspace(
    projectId: string,
    statements: ReadonlyArray<{ sql: string; params: readonly AgentParam[] }>,
    guard?: { sql: string; params: readonly string[] },
    settings?: WriteSettings,
    staged?: StagedRows,
  ): Promise<number[]>;
}

/** A load of chunks (index-deferral.ts): `end` starts creating again the indexes deferred for it (the build runs on after it), and never throws. */
export interface ChunkLoad {
  end(): Promise<void>;
}

export interface ChunkLoads {
  /** Before writing about `incoming` new chunks into the workspace's chunks table. */
  begin(projectId: string, incoming: number): Promise<ChunkLoad>;
}

/**
 * A storeFiles call running before this one over other files of the same run (index_directory's
 * batches): this call embeds while that one writes, and writes once it is done. A hash it
 * claimed is not embedded again here: the row it writes carries the vector, which this call's
 * insert copies (INSERT_NEW_CHUNKS).
 */
export interface EarlierStore {
  /** Settles when the earlier call has ended (rejects when it failed). */
  written: Promise<unknown>;
  /** Hashes claimed for embedding by the calls of the run so far; this call adds its own. */
  claimed: Set<string>;
}

/** The provider, and the pin of `chunks.embedding` to its space (embedding-spaces.ts) taken before vectors are written. */
export interface ChunkEmbeddings {
  embedder: Embedder;
  /** Records or checks the pin (its own transaction): refuses another space before anything is embedded. */
  pin(projectId: string): Promise<void>;
  /** The statement each write transaction starts with: the pin checked again and held until the write commits. */
  hold(projectId: string): { sql: string; params: readonly string[] };
}

export interface Repository {
  /** `documents:` for add_documents; the directory's real path for index_directory. */
  path: string;
  name: string;
}

export interface PreparedFile {
  path: string;
  /** sha256 of the whole text. */
  hash: string;
  sizeBytes: number;
  language: string | null;
  metadata: Record<string, unknown> | null;
  chunks: Chunk[];
}

export interface FileOutcome {
  path: string;
  added: number;
  removed: number;
  kept: number;
  /** Chunks sent to the embedding provider for this file. */
  embedded: number;
  /** Nothing changed: the file was stored exactly so already. */
  unchanged: boolean;
  /** The file was stored before this call. */
  existed: boolean;
  /** Chunks the provider cut to fit its input limit. */
  truncated: Array<{ start_line: number; end_line: number; input_chars: number; kept_chars: number }>;
}

/** How many hashes one lookup of stored embeddings carries (its answer stays well under the byte budget). */
const HASHES_PER_LOOKUP = 2000;
/** Files whose stored state one read returns. */
const FILES_PER_LOOKUP = 200;
/**
 * Chunks written per transaction at most: what the provider answers in one round of requests at
 * the default batch size and concurrency (4 × 64), whose answers come back together: fewer,
 * larger transactions. Against groups of one batch (64) the bench's ingest at 50 ms a request went
 * from 0.63 to 0.73 times the floor (medians, higher in each of 8 alternating pairs), alike at
 * once (docs/search.md, "The stub in its own process").
 */
export const CHUNKS_PER_GROUP = 256;
/**
 * Groups embedded or being embedded beyond those written (the provider's concurrency limit bounds
 * the requests; this bounds the vectors held): with the writers' groups, more batches than the
 * provider's default concurrency, so its requests keep coming while groups are written.
 */
const EMBEDDING_LOOKAHEAD = 3;
/**
 * Groups written at once, each in its own transaction on its own session, so PostgreSQL writes
 * one while the next is built and sent, or on another core: its part of the bench's load took a
 * third less time on two sessions, three no better. (Ingest as a whole measured alike with one
 * and two on the loaded development machine: docs/search.md, "Writes alone".)
 */
const WRITERS = 2;

/**
 * Stores files and their chunks into a workspace's codebase tables: a file whose text, chunks
 * and metadata are stored already is left alone; a chunk whose hash some chunk of the workspace
 * already carries an embedding for is not embedded again; each file is then written in one
 * transaction (see ingest-sql.ts), so it is replaced whole or not at all. Files go in groups of
 * at most CHUNKS_PER_GROUP chunks (a larger file alone); the next groups are embedded while
 * groups are written, WRITERS groups at once. When a write fails, no group starts after it and
 * the ones running end as they do (each commits whole or not at all), then the failure is thrown.
 */
export async function storeFiles(
  sandbox: WorkspaceWriter,
  embeddings: ChunkEmbeddings | undefined,
  projectId: string,
  repository: Repository,
  files: readonly PreparedFile[],
  signal?: AbortSignal,
  loads?: ChunkLoads,
  after?: EarlierStore,
): Promise<FileOutcome[]> {
  const embedder = embeddings?.embedder;
  const stored = await readStoredFiles(sandbox, projectId, repository, files);
  const changed = files.filter((file) => {
    const before = stored.get(file.path);
    return !(before && storedAsSent(before, file) && (before.unembedded === 0 || !embedder) && sameJson(before.metadata, file.metadata));
  });

  // What needs an embedding: a chunk no chunk of the workspace has one for yet, once per hash.
  const known = new Set<string>();
  if (embeddings && changed.length > 0) {
    // Refused here, before anything is embedded, when the column holds vectors of another space.
    await embeddings.pin(projectId);
    const wanted = [...new Set(changed.flatMap((f) => f.chunks.map((c) => c.hash)))];
    for (let at = 0; at < wanted.length; at += HASHES_PER_LOOKUP) {
      const { rows } = await sandbox.readAsWorkspace(projectId, EMBEDDED_HASHES, [wanted.slice(at, at + HASHES_PER_LOOKUP)], 1);
      for (const hash of (rows[0]?.[0] as string[] | undefined) ?? []) known.add(hash);
    }
  }

  const vectors = new Map<string, Vector>();
  const embeddedBy = new Map<string, number>();
  const outcomes = new Map<string, FileOutcome>();
  const groups = groupsOf(changed, CHUNKS_PER_GROUP);
  const isStored = (f: PreparedFile, c: Chunk) => stored.get(f.path)?.chunkHashes.includes(c.hash) ?? false;
  const claimed = after?.claimed ?? new Set<string>();
  const stop = new AbortController();
  const embedSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  const embedding: Array<Promise<void>> = [];
  /** Starts embedding the groups up to EMBEDDING_LOOKAHEAD beyond `written` (those whose writes have started). */
  const embedAhead = (written: number) => {
    while (embedding.length < Math.min(groups.length, written + EMBEDDING_LOOKAHEAD)) {
      const todo: Chunk[] = [];
      for (const file of groups[embedding.length] as PreparedFile[]) {
        for (const chunk of file.chunks) {
          if (!embedder || known.has(chunk.hash) || claimed.has(chunk.hash)) continue;
          claimed.add(chunk.hash);
          todo.push(chunk);
          embeddedBy.set(file.path, (embeddedBy.get(file.path) ?? 0) + 1);
        }
      }
      const done = embedder && todo.length > 0 ? embedChunks(embedder, projectId, todo, vectors, embedSignal) : Promise.resolve();
      // Awaited in its turn; until then a failure must not count as unhandled.
      done.catch(() => undefined);
      embedding.push(done);
    }
  };
  const writing = new Set<Promise<void>>();
  let failed: { error: unknown } | undefined;
  let load: ChunkLoad | undefined;
  try {
    // The provider's first requests go out before the deferral's round trips, which they need not wait for.
    embedAhead(0);
    if (loads && changed.length > 0) load = await loads.begin(projectId, changed.reduce((n, f) => n + f.chunks.filter((c) => !isStored(f, c)).length, 0));
    await after?.written;
    // Groups making the repository's row at once would wait for each other's commit (its unique key): made first, alone.
    if (groups.length > 1) await sandbox.execute(projectId, ENSURE_REPOSITORY, [repository.path, repository.name]);
    const start = (write: Promise<void>) => {
      const settled = write.catch((error: unknown) => {
        failed ??= { error };
      });
      writing.add(settled);
      void settled.finally(() => writing.delete(settled));
      return settled;
    };
    // The last group's write is what is left to do once the provider's last answer is in. In a
    // call of several groups its rows go in now, while the provider answers the groups before,
    // and only their vectors after its last answer (an UPDATE of those rows: about a third of the
    // insert, whose generated tsvector is most of its cost). Rows written twice: at most one
    // group's, under half the call's; never in a call of one group (most agent calls, and each
    // batch of index_directory, whose writes hide under the next batch's embedding).
    const last = groups.length - 1;
    const lastToEmbed = embedder !== undefined && last > 0 && (groups[last]?.some((f) => f.chunks.some((c) => !known.has(c.hash))) ?? false);
    const early = lastToEmbed ? start(writeGroup(groups[last] as PreparedFile[], 'text', false)) : undefined;
    for (const [g, group] of groups.entries()) {
      // A chunk's vector comes from the group that claimed its hash, this one or an earlier one
      // (or the earlier call's, copied from its rows: written by now).
      await Promise.all(embedding.slice(0, g + 1));
      if (g === last && early) await early;
      while (writing.size >= WRITERS) await Promise.race(writing);
      if (failed) break;
      start(writeGroup(group, g === last && early ? 'vectors' : 'whole', g === last));
      embedAhead(g + 1);
    }
    await Promise.all(writing);
    if (failed) throw failed.error;
  } finally {
    // A failure stops the embeddings still running, and they and the writes running settle before
    // it is thrown: nothing runs on after the call returns.
    stop.abort();
    await Promise.allSettled([...embedding, ...writing]);
    await load?.end();
  }

  /**
   * One group in one transaction: `whole` its files and chunks with their vectors; `text` the
   * same without vectors (but those the workspace has for their hashes), `vectors` then the
   * vectors of those rows. The last write also records when the repository was written (the
   * others leave its row unlocked for each other).
   */
  async function writeGroup(group: readonly PreparedFile[], part: 'whole' | 'text' | 'vectors', last: boolean): Promise<void> {
    signal?.throwIfAborted();
    const repositoryRow = { sql: last ? WRITE_REPOSITORY : ENSURE_REPOSITORY, params: [repository.path, repository.name] };
    if (part === 'vectors') {
      const rows = group.flatMap((f) =>
        f.chunks.flatMap((c): CopyField[][] => {
          const vector = vectors.get(c.hash)?.vector;
          return vector ? [[{ text: f.path }, { text: null }, { int4: c.startLine }, { int4: c.endLine }, { text: c.hash }, { float4s: vector }]] : [];
        }),
      );
      const fill = rows.length > 0 ? [{ sql: FILL_EMBEDDINGS, params: [repository.path] }] : [];
      const staged = rows.length > 0 ? { copy: STAGE_CHUNKS, data: encodeCopyBinary(rows), clear: CLEAR_STAGED_CHUNKS } : undefined;
      await guarded(() => sandbox.writeAsWorkspace(projectId, [repositoryRow, ...fill], embeddings?.hold(projectId), {}, staged));
      recordOutcomes(group);
      return;
    }
    const paths = group.map((f) => ({ path: f.path }));
    // Every chunk of the group's files, staged once for the statements below (STAGE_CHUNKS):
    // the text of new ones only (null marks one the file keeps), and its vector when there is one.
    const staged = encodeCopyBinary(
      group.flatMap((f) =>
        f.chunks.map((c): CopyField[] => [
          { text: f.path },
          { text: isStored(f, c) ? null : c.content },
          { int4: c.startLine },
          { int4: c.endLine },
          { text: c.hash },
          { float4s: part === 'whole' ? (vectors.get(c.hash)?.vector ?? null) : null },
        ]),
      ),
    );
    const statements = [
      repositoryRow,
      {
        sql: WRITE_FILES,
        params: [repository.path, group.map((f) => ({ path: f.path, hash: f.hash, size: f.sizeBytes, language: f.language, metadata: f.metadata }))],
      },
      // Only for files stored before: each scans the staged rows once per file of the repository (a few ms a group).
      ...(group.some((f) => stored.has(f.path)) ? [{ sql: REMOVE_STALE_CHUNKS, params: [repository.path, paths] }] : []),
      ...(group.some((f) => f.chunks.some((c) => isStored(f, c))) ? [{ sql: UPDATE_KEPT_CHUNKS, params: [repository.path] }] : []),
      { sql: INSERT_NEW_CHUNKS, params: [repository.path] },
    ];
    await guarded(() =>
      sandbox.writeAsWorkspace(projectId, statements, embeddings?.hold(projectId), {}, { copy: STAGE_CHUNKS, data: staged, clear: CLEAR_STAGED_CHUNKS }),
    );
    if (part === 'whole') recordOutcomes(group);
  }

  /** Per file, from what was stored before: its group's write (and for the last, the vectors' write) made it so. */
  function recordOutcomes(group: readonly PreparedFile[]): void {
    for (const file of group) {
      const before = new Set(stored.get(file.path)?.chunkHashes ?? []);
      const now = new Set(file.chunks.map((c) => c.hash));
      const kept = [...now].filter((h) => before.has(h)).length;
      outcomes.set(file.path, {
        path: file.path,
        added: now.size - kept,
        removed: [...before].filter((h) => !now.has(h)).length,
        kept,
        embedded: embeddedBy.get(file.path) ?? 0,
        unchanged: false,
        existed: stored.has(file.path),
        truncated: file.chunks.flatMap((c) => vectors.get(c.hash)?.truncated ?? []),
      });
    }
  }

  /** A `reembed` may have begun moving the column since the pin was checked: the write then stops, saying why. */
  async function guarded(write: () => Promise<unknown>): Promise<void> {
    try {
      await write();
    } catch (error) {
      if (!(error instanceof WriteGuardError) || !embeddings) throw error;
      await embeddings.pin(projectId);
      throw new EmbeddingSpaceError(`The embedding space of workspace "${projectId}"'s chunks changed while this call ran (${error.message}): retry it.`);
    }
  }

  return files.map(
    (file) =>
      outcomes.get(file.path) ?? { path: file.path, added: 0, removed: 0, kept: file.chunks.length, embedded: 0, unchanged: true, existed: true, truncated: [] },
  );
}

export interface StoredFile {
  hash: string;
  metadata: unknown;
  chunkHashes: string[];
  /** Its chunks without an embedding. */
  unembedded: number;
}

/** What is stored of these files of the repository, by path (a file not stored is absent). */
export async function readStoredFiles(
  sandbox: WorkspaceWriter,
  projectId: string,
  repository: Repository,
  files: ReadonlyArray<{ path: string }>,
): Promise<Map<string, StoredFile>> {
  const stored = new Map<string, StoredFile>();
  for (let at = 0; at < files.length; at += FILES_PER_LOOKUP) {
    const paths = files.slice(at, at + FILES_PER_LOOKUP).map((f) => f.path);
    const { rows } = await sandbox.readAsWorkspace(projectId, STORED_FILES, [repository.path, paths], sandbox.maxRowsCap);
    for (const [path, hash, metadata, chunkHashes, unembedded] of rows) {
      stored.set(path as string, { hash: hash as string, metadata, chunkHashes: chunkHashes as string[], unembedded: Number(unembedded) });
    }
  }
  return stored;
}

/** The file's text, cut into these chunks, is what is stored (its metadata and embeddings aside). */
export function storedAsSent(stored: StoredFile, file: PreparedFile): boolean {
  return stored.hash === file.hash && stored.chunkHashes.join() === file.chunks.map((c) => c.hash).join();
}

type Vector = { vector: number[]; truncated: FileOutcome['truncated'][number] | undefined };

async function embedChunks(embedder: Embedder, projectId: string, chunks: readonly Chunk[], into: Map<string, Vector>, signal: AbortSignal | undefined): Promise<void> {
  const embeddings = await embedder.embedDocuments(chunks.map((c) => c.content), signal, projectId);
  if (embeddings.length !== chunks.length) throw new Error(`the embedding provider returned ${embeddings.length} embeddings for ${chunks.length} texts`);
  chunks.forEach((chunk, i) => {
    const { vector, truncated } = embeddings[i] as Embedding;
    into.set(chunk.hash, {
      vector,
      truncated: truncated && { start_line: chunk.startLine, end_line: chunk.endLine, input_chars: truncated.inputChars, kept_chars: truncated.keptChars },
    });
  });
}

/** Consecutive files of at most `chunks` chunks per group (a file is never split: one larger goes alone). */
function groupsOf(files: readonly PreparedFile[], chunks: number): PreparedFile[][] {
  const groups: PreparedFile[][] = [];
  let group: PreparedFile[] = [];
  let size = 0;
  for (const file of files) {
    if (group.length > 0 && size + file.chunks.length > chunks) {
      groups.push(group);
      group = [];
      size = 0;
    }
    group.push(file);
    size += file.chunks.length;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/** Removes files of a repository and their chunks; answers how many files went. */
export async function removeFiles(sandbox: WorkspaceWriter, projectId: string, repository: Repository, paths: readonly string[]): Promise<number> {
  if (paths.length === 0) return 0;
  const { affected } = await sandbox.execute(projectId, REMOVE_FILES, [repository.path, [...paths]]);
  return affected;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a ?? null)) === JSON.stringify(canonical(b ?? null));
}

/** jsonb orders object keys its own way: compare with keys sorted. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, canonical(v)]));
  }
  return value;
}
