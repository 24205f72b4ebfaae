import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { registerDescribeWorkspaceTool } from '../tools/describe-workspace.js';
import { registerEnsureWorkspaceTool } from '../tools/ensure-workspace.js';
import { registerListWorkspacesTool } from '../tools/list-workspaces.js';
import { strictToolCalls } from '../tools/strict-tool-calls.js';
import { registerSearchVectorsTool } from '../tools/search-vectors.js';
import type { ToolDeps } from '../tools/tool-result.js';
import { registerValidateColumnsTool } from '../tools/validate-columns.js';
import { registerWorkspaceStatusTool } from '../tools/workspace-status.js';
import type { ProvisioningEngine } from './engine.js';
import { packageVersion } from './package-info.js';

/** Below the 60 s request timeout of the SDK's clients, so a slow boot gives our message, not theirs. */
const READY_TIMEOUT_MS = 45_000;

export interface ServerDeps {
  engine: ProvisioningEngine;
  readyTimeoutMs?: number;
}

/**
 * One MCP server (one client session) around an engine, whose boot never delays `initialize`.
 * Closing it leaves the engine alone: over HTTP many sessions share one engine.
 */
export function createSessionServer({ engine, readyTimeoutMs = READY_TIMEOUT_MS }: ServerDeps): McpServer {
  const server = new McpServer(
    { name: 'pg-workspace-mcp', version: packageVersion },
    {
      instructions:
        'Each project gets its own PostgreSQL schema ("workspace"). Call ensure_workspace with the project id ' +
        'before using a project; list_workspaces shows existing ones; describe_workspace shows its tables, columns ' +
        'and indexes; search_vectors finds the rows nearest to an embedding you pass; validate_columns checks a ' +
        'table\'s shape; workspace_status shows which workspace migrations are applied or pending.',
    },
  );
  const ready = async (signal: AbortSignal | undefined) => {
    const services = await engine.ready(readyTimeoutMs);
    // A call the client cancelled while boot was running starts no work.
    signal?.throwIfAborted();
    return services;
  };
  const deps: ToolDeps = {
    workspaces: async (signal) => (await ready(signal)).workspaces,
    fleet: async (signal) => (await ready(signal)).fleet,
    explain: (error) => engine.explain(error),
  };
  registerEnsureWorkspaceTool(server, deps);
  registerListWorkspacesTool(server, deps);
  registerValidateColumnsTool(server, deps);
  registerWorkspaceStatusTool(server, deps);
  registerDescribeWorkspaceTool(server, deps);
  registerSearchVectorsTool(server, deps);
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
