import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { failureOf, type ToolDeps } from '../../tools/tool-result.js';
import { isStoreHandover } from '../db/sql-errors.js';
import { EmbeddingsNotConfiguredError } from '../embeddings/provider-errors.js';
import type { WorkspaceUse } from '../databases/member-databases.js';
import type { ProvisioningEngine } from '../engine.js';
import { packageVersion } from '../package-info.js';
import { ProjectAccess } from '../project-access.js';
import { strictToolCalls } from './strict-tool-calls.js';
import { TOOLS } from './tool-registry.js';

/** Below the 60 s request timeout of the SDK's clients, so a slow boot gives our message, not theirs. */
const READY_TIMEOUT_MS = 45_000;

export interface ServerDeps {
  /** What the server uses of the engine: a tools/list needs none of it, so a unit test can pass a stand-in. */
  engine: Pick<ProvisioningEngine, 'start' | 'ready' | 'readyFor' | 'list' | 'readEach' | 'readyForFork' | 'explainFailedCall' | 'close'>;
  readyTimeoutMs?: number;
  /** Only these project ids are served (unset: any). */
  allowedProjects?: readonly string[] | undefined;
  /** The client may be on another machine (HTTP); stdio's client started this process, on its own. */
  clientElsewhere: boolean;
}

/**
 * One MCP server (one client session) around an engine, whose boot never delays `initialize`.
 * Closing it leaves the engine alone: over HTTP many sessions share one engine.
 */
export function createSessionServer({ engine, readyTimeoutMs = READY_TIMEOUT_MS, allowedProjects, clientElsewhere }: ServerDeps): McpServer {
  const server = new McpServer(
    { name: 'pg-workspace-mcp', version: packageVersion },
    {
      instructions:
        'Each project gets its own PostgreSQL schema ("workspace"). Call ensure_workspace with the project id ' +
        'before using a project; list_workspaces shows existing ones; describe_workspace shows its tables, columns ' +
        'and indexes; add_documents stores texts and index_directory indexes a local directory (index_status ' +
        'follows it) so that search finds them by words, with file and line references; search_vectors finds the ' +
        'rows nearest to an embedding you pass; query reads and execute ' +
        'changes a workspace with SQL (unqualified names are the workspace\'s tables); validate_columns checks a ' +
        'table\'s shape; workspace_status shows which workspace migrations are applied or pending; drop_workspace ' +
        'deletes a workspace for good.',
    },
  );
  const access = new ProjectAccess(allowedProjects);
  repeatAfterHandover(server);
  enforceAllowlist(server, access);
  const ready = async (signal: AbortSignal | undefined, projectId?: string, use: WorkspaceUse = 'existing') => {
    const services = await engine.readyFor(projectId, use, readyTimeoutMs);
    // A call the client cancelled while boot was running starts no work.
    signal?.throwIfAborted();
    return services;
  };
  const deps: ToolDeps = {
    workspaces: async (signal, projectId, use) => (await ready(signal, projectId, use)).workspaces,
    fleet: async (signal, projectId, use) => (await ready(signal, projectId, use)).fleet,
    sandbox: async (signal, projectId, use) => (await ready(signal, projectId, use)).sandbox,
    search: async (signal, projectId, use) => (await ready(signal, projectId, use)).search,
    list: (signal, options) => engine.list(options, readyTimeoutMs, signal),
    readEach: (signal, read) =>
      engine.readEach((r) => {
        // A call the client cancelled reads no more databases.
        signal?.throwIfAborted();
        return read({ workspaces: r.workspaces, fleet: r.fleet });
      }, readyTimeoutMs),
    forkServices: async (from, to, signal) => {
      const r = await engine.readyForFork(from, to, readyTimeoutMs);
      signal?.throwIfAborted();
      return { workspaces: r.workspaces, search: r.search };
    },
    embedder: async (signal) => {
      const { embedder } = await ready(signal);
      if (!embedder) throw new EmbeddingsNotConfiguredError();
      return embedder;
    },
    access,
    clientElsewhere,
    explain: (error, projectId) => engine.explainFailedCall(error, projectId),
  };
  for (const tool of TOOLS) tool.register(server, deps);
  strictToolCalls(server);
  // Boot begins once the client has finished the handshake, so loading the SQL parser and the
  // database driver never delays the `initialize` answer; a tool call made first starts it too.
  server.server.oninitialized = () => engine.start();
  return server;
}

/** A server that owns its engine (stdio: one client, one engine): cleanup closes both. */
export function createServer(deps: ServerDeps) {
  const server = createSessionServer(deps);
  return {
    server,
    async cleanup() {
      await server.close();
      await deps.engine.close();
    },
  };
}

/**
 * Every tool registered on this server refuses a project_id outside the allowlist before its
 * handler runs: one place, so a tool added later cannot forget it.
 */
function enforceAllowlist(server: McpServer, access: ProjectAccess): void {
  const register = server.registerTool.bind(server) as (...args: unknown[]) => unknown;
  (server as { registerTool: unknown }).registerTool = (name: string, config: unknown, handler: (...args: unknown[]) => unknown) =>
    register(name, config, (args: unknown, extra: unknown) => {
      const projectId = (args as { project_id?: unknown } | undefined)?.project_id;
      if (typeof projectId === 'string' && !access.allows(projectId)) {
        try {
          access.check(projectId);
        } catch (error) {
          return { isError: true, content: [{ type: 'text', text: (error as Error).message }] };
        }
      }
      return handler(args, extra);
    });
}

/**
 * A call cut off because the process serving the embedded store died is made once more, after
 * another process has taken the store over (the store waits for it), when the tool is safe to
 * repeat by its own annotations: read-only, or idempotent and not destructive. Others (execute,
 * drop_workspace) report it, since they cannot know whether what they did was committed.
 */
function repeatAfterHandover(server: McpServer): void {
  const register = server.registerTool.bind(server) as (...args: unknown[]) => unknown;
  (server as { registerTool: unknown }).registerTool = (
    name: string,
    config: { annotations?: ToolAnnotations },
    handler: (...args: unknown[]) => Promise<unknown>,
  ) => {
    const { readOnlyHint, idempotentHint, destructiveHint } = config.annotations ?? {};
    if (!(readOnlyHint === true || (idempotentHint === true && destructiveHint === false))) return register(name, config, handler);
    return register(name, config, async (args: unknown, extra: unknown) => {
      const result = await handler(args, extra);
      return isStoreHandover(failureOf(result)) ? handler(args, extra) : result;
    });
  };
}
