import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { CHUNK_SIZE_RANGE, DEFAULT_CHUNK_OPTIONS } from '../src/search/chunking.js';
import { MAX_DOCUMENT_CHARS, MAX_DOCUMENTS_PER_CALL, MAX_SOURCE_CHARS } from '../src/search/document-ingest.js';
import { projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const count = z.number().int();

const output = {
  documents: z.array(
    z.object({
      source: z.string(),
      status: z.enum(['added', 'replaced', 'unchanged']),
      chunks: count,
      added: count,
      removed: count,
      embedded: count,
    }),
  ),
  added: count.describe('chunks written'),
  skipped: count.describe('chunks already stored with this content: neither written nor embedded again'),
  removed: count.describe("chunks of these sources' earlier text, removed"),
  embedded: count.describe('chunks sent to the embedding provider'),
  truncated: z
    .array(z.object({ source: z.string(), start_line: count, end_line: count, input_chars: count, kept_chars: count }))
    .describe('chunks the embedding provider cut to its input limit'),
  embedding_model: z.string().nullable(),
  note: z.string().optional(),
};

export function registerAddDocumentsTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'add_documents',
    {
      title: 'Add documents',
      description:
        "Stores texts in a project's workspace so that search finds them: each document is cut into chunks at " +
        'paragraph and line boundaries (chunk_size characters, the next chunk repeating chunk_overlap of them), ' +
        'embedded when the server has an embedding provider, and written into the workspace\'s files/chunks tables ' +
        'under the repository "documents:" with the source as the path. Adding a source again replaces its chunks; ' +
        'chunks whose content is already stored are skipped (not embedded again), so re-adding the same text costs nothing. ' +
        'Creates the workspace if needed.',
      inputSchema: {
        project_id: projectId,
        documents: z
          .array(
            z.object({
              source: z.string().min(1).max(MAX_SOURCE_CHARS).describe('what identifies the document (a path, URL or title); adding it again replaces it'),
              text: z.string().max(MAX_DOCUMENT_CHARS),
              metadata: z.record(z.string(), z.unknown()).optional().describe('any JSON object, returned with search results'),
            }),
          )
          .min(1)
          .max(MAX_DOCUMENTS_PER_CALL),
        chunk_size: z
          .number()
          .int()
          .min(CHUNK_SIZE_RANGE.min)
          .max(CHUNK_SIZE_RANGE.max)
          .optional()
          .describe(`most characters per chunk (default ${DEFAULT_CHUNK_OPTIONS.size})`),
        chunk_overlap: z.number().int().min(0).optional().describe(`characters the next chunk repeats (default ${DEFAULT_CHUNK_OPTIONS.overlap}, less than half of chunk_size)`),
      },
      outputSchema: output,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (args, { signal }) =>
      runTool(deps, args.project_id, async () => {
        const r = await (await deps.search(signal, args.project_id, 'create')).addDocuments(
          { projectId: args.project_id, documents: args.documents, chunkSize: args.chunk_size, chunkOverlap: args.chunk_overlap },
          signal,
        );
        return { ...r };
      }),
  );
}
