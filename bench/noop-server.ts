import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { parseCommand } from '../src/config.js';
import { ProvisioningEngine } from '../src/engine.js';
import { createStderrLogger } from '../src/logger.js';
import { createServer } from '../src/mcp/server.js';

/**
 * The real server plus a `noop` tool, so the benchmark can compare a cached ensure_workspace
 * with the cheapest possible tool call over the same process and transport.
 */
const command = parseCommand(process.argv.slice(2), process.env);
if (command.kind !== 'serve') throw new Error('noop-server only serves');
const engine = new ProvisioningEngine(command.config, createStderrLogger(command.config.logLevel));
const { server, cleanup } = createServer({ engine, clientElsewhere: false });
server.registerTool('noop', { description: 'Does nothing (benchmark baseline).' }, async () => ({ content: [{ type: 'text', text: 'ok' }] }));
process.stdin.on('close', () => void cleanup().then(() => process.exit(0)));
await server.connect(new StdioServerTransport());
