import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { MAX_IDENTIFIER_BYTES, MAX_TABLE_COLUMNS } from '../src/db/identifiers.js';
import {
  METRICS,
  SEARCH_K_DEFAULT,
  SEARCH_K_MAX,
  VECTOR_MAX_DIMENSIONS,
  type Metric,
} from '../src/workspaces/vector-search.js';
import { projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const metric = z.enum(Object.keys(METRICS) as [Metric, ...Metric[]]);
const identifier = z.string().min(1).max(MAX_IDENTIFIER_BYTES);

const output = {
  table: z.string(),
  column: z.string(),
  metric,
  metric_source: z.enum(['index', 'argument', 'default']).describe("index: the metric of the column's vector index"),
  k: z.number().int(),
  columns: z.array(z.string()).describe('the columns each row carries'),
  matches: z
    .array(z.object({ distance: z.number(), row: z.record(z.string(), z.unknown()) }))
    .describe('nearest first'),
  truncated_reason: z.string().optional().describe("present when fewer than k rows came back because they reached the server's byte budget"),
};

export function registerSearchVectorsTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'search_vectors',
    {
      title: 'Search vectors',
      description:
        "Nearest-neighbour search on a pgvector column of a project's workspace table, without writing SQL: " +
        'pass the query embedding as an array of numbers (its length must match the column, e.g. 768 for ' +
        'chunks.embedding). Returns up to k rows, nearest first, each with its distance. The metric defaults ' +
        "to the one of the column's vector index (cosine for chunks.embedding), else l2; inner_product " +
        'distances are the negated inner product, so smaller is nearer. filter keeps rows whose columns equal ' +
        'the given values (null matches NULL). Rows carry every column except vector and tsvector columns unless columns ' +
        'lists them; bigint and numeric values come back as strings, timestamps as ISO 8601. Runs like query: ' +
        "read-only, as the workspace's own role, under the same statement timeout.",
      inputSchema: {
        project_id: projectId,
        table: identifier.describe('workspace table, e.g. "chunks"'),
        column: identifier.describe('its vector (or halfvec) column, e.g. "embedding"'),
        vector: z.array(z.number()).min(1).max(VECTOR_MAX_DIMENSIONS).describe('the query embedding'),
        k: z.number().int().min(1).max(SEARCH_K_MAX).optional().describe(`how many rows (default ${SEARCH_K_DEFAULT}, at most ${SEARCH_K_MAX})`),
        metric: metric.optional().describe("l2, cosine or inner_product; default: the column index's metric, else l2"),
        filter: z
          .record(identifier, z.union([z.string(), z.number(), z.boolean(), z.null()]))
          .optional()
          .describe('equality conditions {column: value}, all of which must hold, e.g. {"file_id": 3}'),
        columns: z.array(identifier).min(1).max(MAX_TABLE_COLUMNS).optional().describe('the columns to return (default: all but vector and tsvector columns)'),
      },
      outputSchema: output,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args, { signal }) =>
      runTool(
        deps,
        args.project_id,
        async () => {
          await (await deps.search(signal, args.project_id, 'existing')).restoreStoppedLoad(args.project_id, args.table);
          const r = await (await deps.workspaces(signal, args.project_id, 'existing')).searchVectors({
            projectId: args.project_id,
            table: args.table,
            column: args.column,
            vector: args.vector,
            k: args.k,
            metric: args.metric,
            filter: args.filter,
            columns: args.columns,
          });
          return { ...r };
        },
      ),
  );
}
