import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import * as z from 'zod';
import { rootPathsOf } from '../src/search/allowed-roots.js';
import type { IndexJobStatus } from '../src/search/directory-index.js';
import { DEFAULT_MAX_FILE_BYTES } from '../src/search/directory-index.js';
import { indexRun } from './index-schemas.js';
import { projectId } from './schemas.js';
import { runTool, type ToolDeps } from './tool-result.js';

const patterns = z.array(z.string().min(1).max(1000)).max(1000);

export function registerIndexDirectoryTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool(
    'index_directory',
    {
      title: 'Index a directory',
      description:
        "Indexes a local directory of code or text into a project's workspace so that search finds it with file " +
        'paths and line ranges. Only inside the roots your client shared (or the server\'s --allow-root directories); ' +
        '.gitignore is honoured, binary and oversized files are skipped, symlinks leading out of the directory are ' +
        'not followed. Incremental: a run re-reads every file but chunks, embeds and writes only new and changed ones, ' +
        'and removes files that are gone. Runs in the background: without a progress token the call returns at once ' +
        'with the run (poll index_status); with one it reports progress and returns when the run ends.',
      inputSchema: {
        project_id: projectId,
        path: z.string().min(1).max(4096).describe('absolute path of the directory'),
        include: patterns.optional().describe('gitignore-style patterns: index only matching files, e.g. ["src/**", "*.md"]'),
        exclude: patterns.optional().describe('gitignore-style patterns to leave out, besides .gitignore, e.g. ["dist/"]'),
        max_file_bytes: z.number().int().min(1).max(64 * 1024 * 1024).optional().describe(`skip larger files (default ${DEFAULT_MAX_FILE_BYTES})`),
      },
      outputSchema: indexRun.shape,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (args, extra) =>
      runTool(deps, args.project_id, async () => {
        const service = await deps.search(extra.signal, args.project_id, 'create');
        // The client's roots, asked for each call: a client may change them at any time.
        const clientRoots = server.server.getClientCapabilities()?.roots
          ? rootPathsOf((await server.server.listRoots(undefined, { signal: extra.signal })).roots.map((r) => r.uri))
          : undefined;
        const progressToken = extra._meta?.progressToken;
        const report =
          progressToken === undefined
            ? undefined
            : (status: IndexJobStatus) => {
                void extra
                  .sendNotification({
                    method: 'notifications/progress',
                    params: {
                      progressToken,
                      progress: status.files_done,
                      total: Math.max(status.files_total, status.files_done),
                      message: `${status.phase}: ${status.files_done}/${status.files_total} files (${status.files_changed} changed, ${status.files_removed} removed)`,
                    },
                  })
                  .catch(() => undefined);
              };
        const { status, done } = await service.indexDirectory(
          { projectId: args.project_id, path: args.path, include: args.include, exclude: args.exclude, maxFileBytes: args.max_file_bytes },
          { roots: clientRoots, elsewhere: deps.clientElsewhere },
          report,
        );
        if (progressToken === undefined) return { ...status };
        // The run goes on if this call is cancelled; index_status follows it then.
        const stopped = new Promise<IndexJobStatus>((resolve) => extra.signal.addEventListener('abort', () => resolve(status), { once: true }));
        return { ...(await Promise.race([done, stopped])) };
      }),
  );
}
