import type { Database } from '../db/database.js';
import type { Embedder } from '../embeddings/embedder.js';
import type { WorkspaceSql } from '../sandbox/workspace-sql.js';
import { addDocuments, type AddDocumentsInput, type AddDocumentsResult } from './document-ingest.js';
import { searchWorkspace, type SearchInput, type SearchResult } from './workspace-search.js';

/**
 * Text in, knowledge out: search by text and ingest of documents (and directories) into the
 * workspaces' codebase tables. Every read and write of a workspace table runs as the
 * workspace's role in its sandbox (WorkspaceSql). `embedder` is undefined when no provider is
 * configured: then chunks are stored without embeddings and search is full-text only.
 */
export class SearchService {
  constructor(
    private readonly db: Database,
    private readonly sandbox: WorkspaceSql,
    readonly embedder: Embedder | undefined,
  ) {}

  search(input: SearchInput, signal?: AbortSignal): Promise<SearchResult> {
    return searchWorkspace(this.db, this.sandbox, this.embedder, input, signal);
  }

  addDocuments(input: AddDocumentsInput, signal?: AbortSignal): Promise<AddDocumentsResult> {
    return addDocuments(this.sandbox, this.embedder, input, signal);
  }
}
