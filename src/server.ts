import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { registerDescribeWorkspaceTool } from '../tools/describe-workspace.js';
import { registerEnsureWorkspaceTool } from '../tools/ensure-workspace.js';
import { registerListWorkspacesTool } from '../tools/list-workspaces.js';
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

/** Builds the MCP server around an engine, whose boot never delays `initialize`. */
export function createServer({ engine, readyTimeoutMs = READY_TIMEOUT_MS }: ServerDeps) {
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
  const deps: ToolDeps = {
    workspaces: async () => (await engine.ready(readyTimeoutMs)).workspaces,
    fleet: async () => (await engine.ready(readyTimeoutMs)).fleet,
    explain: (error) => engine.explain(error),
  };
  registerEnsureWorkspaceTool(server, deps);
  registerListWorkspacesTool(server, deps);
  registerValidateColumnsTool(server, deps);
  registerWorkspaceStatusTool(server, deps);
  registerDescribeWorkspaceTool(server, deps);
  registerSearchVectorsTool(server, deps);
  // Boot begins once the client has finished the handshake, so loading the SQL parser and the
  // database driver never delays the `initialize` answer; a tool call made first starts it too.
  server.server.oninitialized = () => engine.start();
  return {
    server,
    async cleanup() {
      await server.close();
      await engine.close();
    },
  };
}
