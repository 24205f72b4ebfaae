import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { registerEnsureWorkspaceTool } from '../tools/ensure-workspace.js';
import { registerListWorkspacesTool } from '../tools/list-workspaces.js';
import type { ToolDeps } from '../tools/tool-result.js';
import { registerValidateColumnsTool } from '../tools/validate-columns.js';
import { registerWorkspaceStatusTool } from '../tools/workspace-status.js';
import { registerExecuteTool } from '../tools/execute.js';
import { registerQueryTool } from '../tools/query.js';
import type { ProvisioningEngine } from './engine.js';
import { ProjectAccess } from './project-access.js';
import { packageVersion } from './package-info.js';

/** Below the 60 s request timeout of the SDK's clients, so a slow boot gives our message, not theirs. */
const READY_TIMEOUT_MS = 45_000;

export interface ServerDeps {
  engine: ProvisioningEngine;
  readyTimeoutMs?: number;
  /** Only these project ids are served (unset: any). */
  allowedProjects?: readonly string[] | undefined;
}

/** Builds the MCP server around an engine, whose boot never delays `initialize`. */
export function createServer({ engine, readyTimeoutMs = READY_TIMEOUT_MS, allowedProjects }: ServerDeps) {
  const server = new McpServer(
    { name: 'pg-workspace-mcp', version: packageVersion },
    {
      instructions:
        'Each project gets its own PostgreSQL schema ("workspace"). Call ensure_workspace with the project id ' +
        'before using a project; list_workspaces shows existing ones; validate_columns checks a table\'s shape; ' +
        'workspace_status shows which workspace migrations are applied or pending; query reads and execute ' +
        'changes a workspace with SQL (unqualified names are the workspace\'s tables).',
    },
  );
  const access = new ProjectAccess(allowedProjects);
  enforceAllowlist(server, access);
  const deps: ToolDeps = {
    workspaces: async () => (await engine.ready(readyTimeoutMs)).workspaces,
    fleet: async () => (await engine.ready(readyTimeoutMs)).fleet,
    sql: async () => (await engine.ready(readyTimeoutMs)).sql,
    access,
    explain: (error) => engine.explain(error),
  };
  registerEnsureWorkspaceTool(server, deps);
  registerListWorkspacesTool(server, deps);
  registerValidateColumnsTool(server, deps);
  registerWorkspaceStatusTool(server, deps);
  registerQueryTool(server, deps);
  registerExecuteTool(server, deps);
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
