import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

/**
 * The engine (src/ outside src/mcp/) never imports the MCP SDK or the MCP layer: the lint rule
 * in eslint.config.js says so, and this proves the rule catches it, with the project's config.
 */
const eslint = new ESLint();

async function restrictedImports(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(`${code}\nexport {};\n`, { filePath });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax')
    .map((m) => m.message);
}

describe('MCP boundary lint rule', () => {
  it('refuses the MCP SDK in the engine, statically or lazily', async () => {
    const engineFile = 'src/workspaces/boundary-probe.ts';
    expect(await restrictedImports(engineFile, "import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';\nvoid McpServer;"))
      .toEqual([expect.stringContaining('The engine never imports the MCP SDK')]);
    expect(await restrictedImports(engineFile, "import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';\nexport type R = CallToolResult;"))
      .toHaveLength(1);
    expect(await restrictedImports('src/engine.ts', "await import('@modelcontextprotocol/sdk/server/mcp.js');")).toEqual([
      expect.stringContaining('lazily or not'),
    ]);
  });

  it('refuses tools/ and src/mcp/ in the engine, and src/mcp/ in tools/', async () => {
    expect(await restrictedImports('src/workspaces/boundary-probe.ts', "import type { ToolDeps } from '../../tools/tool-result.js';\nexport type D = ToolDeps;"))
      .toEqual([expect.stringContaining('never imports the MCP layer')]);
    expect(await restrictedImports('src/boot.ts', "import { TOOLS } from './mcp/tool-registry.js';\nvoid TOOLS;")).toEqual([
      expect.stringContaining('never imports the MCP layer'),
    ]);
    expect(await restrictedImports('tools/boundary-probe.ts', "import { TOOLS } from '../src/mcp/tool-registry.js';\nvoid TOOLS;")).toEqual([
      expect.stringContaining('src/mcp/ imports them'),
    ]);
  });

  it('lets the MCP layer use the SDK and the engine, and the engine use itself', async () => {
    const mcpLayer = [
      "import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';",
      "import type { ToolDeps } from '../../tools/tool-result.js';",
      "import { ProvisioningEngine } from '../engine.js';",
      'void McpServer; void ProvisioningEngine; export type D = ToolDeps;',
    ];
    expect(await restrictedImports('src/mcp/boundary-probe.ts', mcpLayer.join('\n'))).toEqual([]);
    expect(await restrictedImports('src/workspaces/boundary-probe.ts', "import { WorkspaceManager } from './workspace-manager.js';\nvoid WorkspaceManager;")).toEqual([]);
    expect(await restrictedImports('src/main.ts', "import { serveStdio } from './mcp/serve-stdio.js';\nvoid serveStdio;")).toEqual([]);
  });
});
