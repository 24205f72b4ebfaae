import { rm } from 'node:fs/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ListRootsRequestSchema, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { pathToFileURL } from 'node:url';
import { parseEmbeddingsConfig, type EmbeddingsConfig } from '../../src/embeddings/embeddings-config.js';
import { Ajv, type ValidateFunction } from 'ajv';
import { expect } from 'vitest';
import { DEFAULT_LOCK_TIMEOUT_MS } from '../../src/config.js';
import { ProvisioningEngine } from '../../src/engine.js';
import { silentLogger } from '../../src/logger.js';
import { createServer } from '../../src/mcp/server.js';
import { tempDir } from './fixtures.js';

/**
 * The server's provider configuration for the loopback stub (test/support/embedding-stub.ts):
 * OpenAI-compatible, a model without prefixes, the codebase extension's 768 dimensions.
 */
export function embeddingsAt(openaiUrl: string): EmbeddingsConfig {
  const config = parseEmbeddingsConfig(
    {},
    { PG_WORKSPACE_EMBEDDINGS: 'openai', PG_WORKSPACE_EMBEDDINGS_URL: openaiUrl, PG_WORKSPACE_EMBEDDINGS_MODEL: 'stub-embed', PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '768' },
  );
  if (!config) throw new Error('expected an embeddings configuration');
  return config;
}

/**
 * Output-schema validators by the schema's text: compiling one took 10-50 ms, more than most
 * calls it checks, and every successful call is checked.
 */
const validators = new Map<string, ValidateFunction>();
function validatorFor(schema: object): ValidateFunction {
  const key = JSON.stringify(schema);
  let validate = validators.get(key);
  if (!validate) {
    validate = new Ajv({ strict: false }).compile(schema);
    validators.set(key, validate);
  }
  return validate;
}

/** Calls a tool and, on success, checks structuredContent against the tool's declared output schema. */
export async function callTool(client: Client, tools: Tool[], name: string, args: Record<string, unknown>) {
  const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
  const text = result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
  if (!result.isError) {
    const tool = tools.find((t) => t.name === name);
    const validate = validatorFor(tool?.outputSchema ?? {});
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
    /** The client declares these directories as its MCP roots (unset: no roots capability). */
    roots?: string[];
    /** --allow-root */
    allowedRoots?: string[];
    /** An embedded store to reuse (kept on close); default a fresh one, removed on close. */
    dataDir?: string;
    /** An embedding provider, e.g. embeddingsAt(stub.openaiUrl). */
    embeddings?: EmbeddingsConfig;
    maintenanceIdleMs?: number;
    /** Also the embedded store's maintenance statements' timeout. */
    upgradeTimeoutMs?: number;
    /** --workspaces-per-database */
    workspacesPerDatabase?: number;
  } = {},
) {
  const dataDir = options.dataDir ?? (await tempDir('pgw-mcp-'));
  const engine = new ProvisioningEngine(
    {
      databaseUrl: options.databaseUrl,
      dataDir,
      extensionDirs: options.extensionDirs ?? [],
      disabledExtensions: options.disabledExtensions ?? [],
      lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS,
      ...(options.statementTimeoutMs ? { statementTimeoutMs: options.statementTimeoutMs } : {}),
      allowedRoots: options.allowedRoots ?? [],
      embeddings: options.embeddings,
      ...(options.maintenanceIdleMs ? { maintenanceIdleMs: options.maintenanceIdleMs } : {}),
      ...(options.upgradeTimeoutMs ? { upgradeTimeoutMs: options.upgradeTimeoutMs } : {}),
      ...(options.workspacesPerDatabase ? { workspacesPerDatabase: options.workspacesPerDatabase } : {}),
    },
    silentLogger,
  );
  const { server, cleanup } = createServer({ engine, allowedProjects: options.allowedProjects, clientElsewhere: false });
  const client = new Client({ name: 'test', version: '1' }, options.roots ? { capabilities: { roots: {} } } : {});
  if (options.roots) {
    const roots = options.roots.map((dir) => ({ uri: pathToFileURL(dir).href }));
    client.setRequestHandler(ListRootsRequestSchema, () => ({ roots }));
  }
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
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
