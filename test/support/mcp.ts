import { rm } from 'node:fs/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { Ajv } from 'ajv';
import { expect } from 'vitest';
import { DEFAULT_LOCK_TIMEOUT_MS } from '../../src/config.js';
import { ProvisioningEngine } from '../../src/engine.js';
import { silentLogger } from '../../src/logger.js';
import { createServer } from '../../src/mcp/server.js';
import { tempDir } from './fixtures.js';

/** Calls a tool and, on success, checks structuredContent against the tool's declared output schema. */
export async function callTool(client: Client, tools: Tool[], name: string, args: Record<string, unknown>) {
  const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
  const text = result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
  if (!result.isError) {
    const tool = tools.find((t) => t.name === name);
    const validate = new Ajv({ strict: false }).compile(tool?.outputSchema ?? {});
    expect(validate(result.structuredContent), JSON.stringify(validate.errors)).toBe(true);
    expect(text.length).toBeGreaterThan(0);
  }
  return { isError: result.isError === true, text, data: result.structuredContent as Record<string, unknown> };
}

/** Our server on an embedded store of its own (or on `databaseUrl`), with the SDK client over an in-memory transport. */
export async function connectInProcess(
  options: {
    extensionDirs?: string[];
    databaseUrl?: string;
    disabledExtensions?: string[];
    allowedProjects?: string[];
    statementTimeoutMs?: number;
    maintenanceIdleMs?: number;
  } = {},
) {
  const dataDir = await tempDir('pgw-mcp-');
  const engine = new ProvisioningEngine(
    {
      databaseUrl: options.databaseUrl,
      dataDir,
      extensionDirs: options.extensionDirs ?? [],
      disabledExtensions: options.disabledExtensions ?? [],
      lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS,
      ...(options.statementTimeoutMs ? { statementTimeoutMs: options.statementTimeoutMs } : {}),
      ...(options.maintenanceIdleMs ? { maintenanceIdleMs: options.maintenanceIdleMs } : {}),
    },
    silentLogger,
  );
  const { server, cleanup } = createServer({ engine, allowedProjects: options.allowedProjects });
  const client = new Client({ name: 'test', version: '1' });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  await client.connect(clientSide);
  const statusAfterInitialize = engine.status.state;
  const { tools } = await client.listTools();
  return {
    client,
    tools,
    engine,
    statusAfterInitialize,
    async close() {
      await client.close();
      await cleanup();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
