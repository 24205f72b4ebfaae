import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { indexRun } from './index-schemas.js';
import { projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

export function registerIndexStatusTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'index_status',
    {
      title: 'Index status',
      description:
        "The index_directory runs of a project's workspace on this server (newest first; with job_id, that one), and " +
        'what its tables hold per repository (files, chunks, chunks still without an embedding), which a restart keeps. ' +
        'Read-only: makes nothing; a workspace that does not exist (and has no run here) is an error.',
      inputSchema: {
        project_id: projectId,
        job_id: z.string().uuid().optional().describe('the job_id index_directory returned'),
      },
      outputSchema: {
        runs: z.array(indexRun),
        repositories: z.array(
          z.object({
            path: z.string().describe('the indexed directory, or "documents:" for add_documents'),
            indexed_at: z.string().nullable(),
            files: z.number().int(),
            chunks: z.number().int(),
            chunks_without_embedding: z.number().int(),
          }),
        ),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args, { signal }) =>
      runTool(deps, args.project_id, async () => ({ ...(await (await deps.search(signal, args.project_id, 'existing')).indexStatus(args.project_id, args.job_id)) })),
  );
}
