import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { describe, expect, it } from 'vitest';
import { createSessionServer } from '../../src/mcp/server.js';
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
    // Listing tools touches no engine; one that booted or served a call would fail this test.
    const engine = {
      start() {},
      ready: () => Promise.reject(new Error('tools/list needs no engine')),
      explainFailedCall: async (error: unknown) => String(error),
      close: async () => {},
    };
    const server = createSessionServer({ engine });
    const client = new Client({ name: 'registry-test', version: '1' });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    await client.connect(clientSide);
    try {
      const { tools } = await client.listTools();
      expect(tools.map((tool) => tool.name)).toEqual(TOOL_NAMES);
    } finally {
      await client.close();
      await server.close();
    }
  });
});
