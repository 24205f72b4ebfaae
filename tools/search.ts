import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { MAX_IDENTIFIER_BYTES } from '../src/db/identifiers.js';
import { CHUNKS_TEXT_LANGUAGE, SEARCH_DEFAULT_K, SEARCH_MODES, SEARCH_QUERY_MAX_CHARS, type SearchMode } from '../src/search/workspace-search.js';
import { SEARCH_K_MAX } from '../src/workspaces/vector-search.js';
import { projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const identifier = z.string().min(1).max(MAX_IDENTIFIER_BYTES);
const mode = z.enum(SEARCH_MODES as [SearchMode, ...SearchMode[]]);
const nullableNumber = z.number().nullable();

const output = {
  mode: mode.describe('the mode the search ran in'),
  table: z.string(),
  k: z.number().int(),
  language: z.string().describe('the text search configuration used'),
  note: z.string().optional().describe('present when the search did less than it could, e.g. text only because no embedding provider is configured'),
  results: z
    .array(
      z.object({
        score: z.number().describe('higher is better: hybrid, the reciprocal-rank-fusion score; text, ts_rank_cd; vector, 1 - cosine distance (or -distance)'),
        text_rank: nullableNumber.describe('place in the full-text ranking (1 = best), null if not among its candidates'),
        text_score: nullableNumber,
        vector_rank: nullableNumber.describe('place in the nearest-neighbour ranking, null if not among its candidates'),
        distance: nullableNumber,
        content: z.string().nullable().describe('the matching text'),
        source: z.object({
          table: z.string(),
          id: z.string().nullable(),
          path: z.string().nullable().describe("for chunks: the file path, or the document's source"),
          start_line: nullableNumber,
          end_line: nullableNumber,
          repository: z.string().nullable().describe('for chunks: the indexed directory, or "documents:" for add_documents'),
        }),
        metadata: z.unknown().describe("for chunks: the document's metadata"),
        row: z.record(z.string(), z.unknown()).optional().describe("for an agent's table: the row's other columns"),
      }),
    )
    .describe('best first'),
};

export function registerSearchTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'search',
    {
      title: 'Search by text',
      description:
        "Finds text in a project's workspace: by default the chunks that add_documents and index_directory stored, " +
        'each result with its file (or document source) and line range. mode "text" is PostgreSQL full-text search ' +
        '(websearch syntax: "quoted phrase", -excluded, or; plain words match any of them, best first); "vector" ' +
        'finds the nearest embeddings of the query; "hybrid" (the default when the server has an embedding provider) ' +
        'fuses both rankings. Without a provider every search is text only, and the result\'s note says so. ' +
        'Also searches your own table: pass table, and text_column / vector_column when it has several. filter ' +
        'keeps rows whose columns equal the given values (for chunks: path, language, repository, file_id). ' +
        "Read-only, as the workspace's own role.",
      inputSchema: {
        project_id: projectId,
        query: z.string().min(1).max(SEARCH_QUERY_MAX_CHARS).describe('what to look for, in words'),
        table: identifier.optional().describe('workspace table (default "chunks")'),
        text_column: identifier.optional().describe("your table's text column (default: its only text column)"),
        vector_column: identifier.optional().describe("your table's vector column (default: its only one, if any)"),
        k: z.number().int().min(1).max(SEARCH_K_MAX).optional().describe(`how many results (default ${SEARCH_DEFAULT_K}, at most ${SEARCH_K_MAX})`),
        filter: z
          .record(identifier, z.union([z.string(), z.number(), z.boolean(), z.null()]))
          .optional()
          .describe('equality conditions, all of which must hold, e.g. {"path": "src/main.ts"}'),
        mode: mode.optional().describe('hybrid, vector or text (default: hybrid with a provider, else text)'),
        language: z
          .string()
          .max(MAX_IDENTIFIER_BYTES)
          .optional()
          .describe(`text search configuration, e.g. "english" to match word forms (default "${CHUNKS_TEXT_LANGUAGE}", which chunks are indexed with)`),
      },
      outputSchema: output,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args, { signal }) =>
      runTool(deps, args.project_id, async () => {
        const r = await (await deps.search(signal, args.project_id, 'existing')).search(
          {
            projectId: args.project_id,
            query: args.query,
            table: args.table,
            textColumn: args.text_column,
            vectorColumn: args.vector_column,
            k: args.k,
            filter: args.filter,
            mode: args.mode,
            language: args.language,
          },
          signal,
        );
        return { ...r };
      }),
  );
}
