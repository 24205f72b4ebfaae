import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { registerAddDocumentsTool } from '../../tools/add-documents.js';
import { registerDescribeWorkspaceTool } from '../../tools/describe-workspace.js';
import { registerDropWorkspaceTool } from '../../tools/drop-workspace.js';
import { registerEnsureWorkspaceTool } from '../../tools/ensure-workspace.js';
import { registerDropSnapshotTool } from '../../tools/drop-snapshot.js';
import { registerExecuteTool } from '../../tools/execute.js';
import { registerForkWorkspaceTool } from '../../tools/fork-workspace.js';
import { registerIndexDirectoryTool } from '../../tools/index-directory.js';
import { registerIndexStatusTool } from '../../tools/index-status.js';
import { registerListSnapshotsTool } from '../../tools/list-snapshots.js';
import { registerListWorkspacesTool } from '../../tools/list-workspaces.js';
import { registerQueryTool } from '../../tools/query.js';
import { registerRestoreWorkspaceTool } from '../../tools/restore-workspace.js';
import { registerSearchTool } from '../../tools/search.js';
import { registerSearchVectorsTool } from '../../tools/search-vectors.js';
import { registerSnapshotWorkspaceTool } from '../../tools/snapshot-workspace.js';
import type { ToolDeps } from '../../tools/tool-result.js';
import { registerValidateColumnsTool } from '../../tools/validate-columns.js';
import { registerWorkspaceStatusTool } from '../../tools/workspace-status.js';

export interface ToolEntry {
  /** The name the tool's file registers (test/unit/tool-registry.test.ts checks they agree). */
  readonly name: string;
  readonly register: (server: McpServer, deps: ToolDeps) => void;
}

/**
 * Every tool the server offers, declared once: `createSessionServer` registers them from here,
 * in this order (the order of `tools/list`), and tests read the names from here. A new tool is
 * a file in `tools/` and a line here.
 */
export const TOOLS = [
  { name: 'ensure_workspace', register: registerEnsureWorkspaceTool },
  { name: 'list_workspaces', register: registerListWorkspacesTool },
  { name: 'validate_columns', register: registerValidateColumnsTool },
  { name: 'workspace_status', register: registerWorkspaceStatusTool },
  { name: 'describe_workspace', register: registerDescribeWorkspaceTool },
  { name: 'search', register: registerSearchTool },
  { name: 'add_documents', register: registerAddDocumentsTool },
  { name: 'index_directory', register: registerIndexDirectoryTool },
  { name: 'index_status', register: registerIndexStatusTool },
  { name: 'search_vectors', register: registerSearchVectorsTool },
  { name: 'query', register: registerQueryTool },
  { name: 'execute', register: registerExecuteTool },
  { name: 'drop_workspace', register: registerDropWorkspaceTool },
  { name: 'snapshot_workspace', register: registerSnapshotWorkspaceTool },
  { name: 'list_snapshots', register: registerListSnapshotsTool },
  { name: 'restore_workspace', register: registerRestoreWorkspaceTool },
  { name: 'drop_snapshot', register: registerDropSnapshotTool },
  { name: 'fork_workspace', register: registerForkWorkspaceTool },
] as const satisfies readonly ToolEntry[];

/** A test keyed by `ToolName` (e.g. `Record<ToolName, args>`) stops compiling until it covers a new tool. */
export type ToolName = (typeof TOOLS)[number]['name'];

export const TOOL_NAMES: readonly ToolName[] = TOOLS.map((tool) => tool.name);
