import type { Database } from '../db/database.js';
import type { Embedder } from '../embeddings/embedder.js';
import type { Logger } from '../logger.js';
import type { WorkspaceSandbox } from '../sandbox/workspace-sandbox.js';
import { pin, spaceOf } from '../embeddings/embedding-spaces.js';
import { holdPinStatement } from '../registry/embedding-space-sql.js';
import type { AllowedRoots } from './allowed-roots.js';
import type { ChunkEmbeddings } from './chunk-store.js';
import { DEFAULT_UPGRADE_TIMEOUT_MS } from '../config.js';
import { IndexDeferral } from './index-deferral.js';
import { ReadBudget } from './read-budget.js';
import { DirectoryIndexer, type IndexDirectoryInput, type IndexJobStatus, type ProgressListener } from './directory-index.js';
import { validateProjectId } from '../workspaces/project-id.js';
import { WorkspaceNotFoundError } from '../workspaces/workspace-errors.js';
import { lookupWorkspace } from '../registry/registry-sql.js';
import { REPOSITORY_SUMMARY } from './ingest-sql.js';
import { addDocuments, type AddDocumentsInput, type AddDocumentsResult } from './document-ingest.js';
import { searchWorkspace, type SearchInput, type SearchResult } from './workspace-search.js';

const REPOSITORIES_LISTED = 100;
/** The vector column ingest fills, and its pin. */
const CHUNKS_EMBEDDING = { table: 'chunks', column: 'embedding' };

export interface RepositorySummary {
  path: string;
  indexed_at: string | null;
  files: number;
  chunks: number;
  chunks_without_embedding: number;
}

/**
 * Text in, knowledge out: search by text and ingest of documents (and directories) into the
 * workspaces' codebase tables. Every read and write of a workspace table runs as the
 * workspace's role in its sandbox (WorkspaceSandbox). `embedder` is undefined when no provider is
 * configured: then chunks are stored without embeddings and search is full-text only.
 */
export class SearchService {
  readonly #directories: DirectoryIndexer;
  readonly #embeddings: ChunkEmbeddings | undefined;
  /** Large loads defer the chunks table's vector indexes: with a provider (without one no vector is written). */
  readonly #deferral: IndexDeferral | undefined;

  constructor(
    private readonly db: Database,
    private readonly sandbox: WorkspaceSandbox,
    readonly embedder: Embedder | undefined,
    /** --allow-root: where index_directory may read for clients without MCP roots (and a bound on those with them). */
    readonly serverRoots: readonly string[],
    log: Logger,
    options: { deferralLeaseMs?: number; rebuildTimeoutMs?: number; indexBuildMemoryKb?: number; readBudgetBytes?: number } = {},
  ) {
    this.#embeddings = embedder && {
      embedder,
      // Its own short transaction: the sandbox writes that follow run on another session.
      pin: (projectId) => db.transaction((tx) => pin(tx, { projectId, ...CHUNKS_EMBEDDING, textColumn: 'content' }, embedder.space)),
      hold: (projectId) => holdPinStatement({ projectId, ...CHUNKS_EMBEDDING }, spaceOf(embedder.space)),
    };
    // On Citus too: the drop and the build, as the workspace's role, reach the workspace's shard (tested).
    this.#deferral = embedder ? new IndexDeferral(
          db,
          sandbox,
          log,
          { statementMs: options.rebuildTimeoutMs ?? DEFAULT_UPGRADE_TIMEOUT_MS, maintenanceWorkMemKb: options.indexBuildMemoryKb },
          options.deferralLeaseMs,
        ) : undefined;
    this.#directories = new DirectoryIndexer(sandbox, this.#embeddings, log, this.#deferral, new ReadBudget(options.readBudgetBytes));
  }

  async search(input: SearchInput, signal?: AbortSignal): Promise<SearchResult> {
    await this.restoreStoppedLoad(input.projectId, input.table ?? 'chunks');
    return searchWorkspace(this.db, this.sandbox, this.embedder, input, signal);
  }

  /**
   * A load that stopped (a crash) left the chunks' vector indexes deferred, and searches of the
   * table were exact meanwhile: once its lease has run out, the first search of the table
   * (search, search_vectors) builds them again. Never throws (logged).
   */
  async restoreStoppedLoad(projectId: string, table: string): Promise<void> {
    if (table === 'chunks') await this.#deferral?.restoreExpired(projectId);
  }

  addDocuments(input: AddDocumentsInput, signal?: AbortSignal): Promise<AddDocumentsResult> {
    return addDocuments(this.sandbox, this.#embeddings, input, signal, this.#deferral);
  }

  /**
   * Starts indexing a directory in the background. `client.roots`: the MCP client's roots,
   * undefined if it has none; `client.elsewhere`: the client may be on another machine (HTTP).
   */
  indexDirectory(input: IndexDirectoryInput, client: { roots: readonly string[] | undefined; elsewhere: boolean }, listener?: ProgressListener) {
    const roots: AllowedRoots = { client: client.roots, server: this.serverRoots, clientElsewhere: client.elsewhere };
    return this.#directories.start(input, roots, listener);
  }

  /**
   * This server's runs for a workspace, and what its tables hold per repository (which survives
   * restarts). Makes nothing: an id with no workspace is WorkspaceNotFoundError, unless a run of
   * index_directory (which makes it) is under way for it here; a schema dropped by hand holds nothing.
   */
  async indexStatus(projectId: string, jobId?: string): Promise<{ runs: IndexJobStatus[]; repositories: RepositorySummary[] }> {
    const id = validateProjectId(projectId);
    const runs = this.#directories.status(id, jobId);
    const registered = await lookupWorkspace(this.db, id);
    if (!registered?.schema_exists) {
      if (!registered && runs.length === 0) throw new WorkspaceNotFoundError(id);
      return { runs, repositories: [] };
    }
    const { rows } = await this.sandbox.readExisting(id, REPOSITORY_SUMMARY, [REPOSITORIES_LISTED], REPOSITORIES_LISTED);
    const repositories = rows.map(([path, indexedAt, files, chunks, unembedded]) => ({
      path: path as string,
      indexed_at: indexedAt === null ? null : new Date(indexedAt as string).toISOString(),
      files: Number(files),
      chunks: Number(chunks),
      chunks_without_embedding: Number(unembedded),
    }));
    return { runs, repositories };
  }

  /** Settles once the vector index builds that loads' ends started (of workspace `projectId`, or all) have ended (index-deferral.ts). */
  settled(projectId?: string): Promise<void> {
    return this.#deferral?.settled(projectId) ?? Promise.resolve();
  }

  /** Stops the directory runs, then cancels the index builds (IndexDeferral.close). */
  async close(): Promise<void> {
    await this.#directories.close();
    await this.#deferral?.close();
  }
}
