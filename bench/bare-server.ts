import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

/** The smallest SDK stdio server: the floor for "spawn to initialize" on this machine. */
const server = new McpServer({ name: 'bare', version: '0' });
server.registerTool('noop', { description: 'Does nothing.' }, async () => ({ content: [{ type: 'text', text: 'ok' }] }));
process.stdin.on('close', () => process.exit(0));
await server.connect(new StdioServerTransport());
