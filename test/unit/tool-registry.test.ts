import { describe, expect, it } from 'vitest';
import { listTools } from '../../scripts/tools-doc.js';
import { TOOL_NAMES } from '../../src/mcp/tool-registry.js';

describe('tool registry', () => {
  it('holds exactly the tools the server is documented to offer', () => {
    // The one place the set is written out: a tool that disappears from the registry fails here.
    expect([...TOOL_NAMES].sort()).toEqual([
      'add_documents',
      'describe_workspace',
      'drop_snapshot',
      'drop_workspace',
      'ensure_workspace',
      'execute',
      'fork_workspace',
      'index_directory',
      'index_status',
      'list_snapshots',
      'list_workspaces',
      'query',
      'restore_workspace',
      'search',
      'search_vectors',
      'snapshot_workspace',
      'validate_columns',
      'workspace_status',
    ]);
  });

  it('names each tool as its file registers it, in the order tools/list shows them', async () => {
    // Listing tools touches no engine: listTools gives an engine that fails any boot or call.
    expect((await listTools()).map((tool) => tool.name)).toEqual(TOOL_NAMES);
  });
});
