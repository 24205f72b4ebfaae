import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ErrorCode } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod';
import { nullAsAbsent } from './null-as-absent.js';

type RequestHandler = (request: { method: string; params?: unknown }, extra: unknown) => Promise<unknown>;

const callParams = z.object({
  name: z.string({ error: 'params.name must be the tool name, a string' }),
  arguments: z.record(z.string(), z.unknown()).optional(),
});

/**
 * The SDK sends a thrown error's `code` and `message` as the JSON-RPC error; an McpError would
 * prefix its message with "MCP error -32602:", which the client's McpError then prefixes again.
 */
class InvalidParamsError extends Error {
  readonly code = ErrorCode.InvalidParams;
}

const describeValue = (value: unknown) =>
  value === undefined ? 'nothing' : value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;

/**
 * SDK 1.32 answers a call to an unknown tool with an `isError` result, and malformed params
 * (e.g. `arguments` sent as a string) with a raw zod dump. The spec wants a JSON-RPC -32602
 * error for both, with a message a person can act on. This puts a check in front of the SDK's
 * own `tools/call` handler (its request validation included), which still does the rest
 * (argument validation, output schema). It also reads `null` as "not given" for optional
 * arguments (`nullAsAbsent`), for every tool, before the SDK validates them. The SDK exposes
 * neither its handler table nor its tool table, hence the two private reads: setRequestHandler
 * would put the SDK's validation first.
 */
export function strictToolCalls(server: McpServer): void {
  const internals = server as unknown as { _registeredTools: Record<string, { enabled: boolean; inputSchema?: unknown }> };
  const handlers = (server.server as unknown as { _requestHandlers: Map<string, RequestHandler> })._requestHandlers;
  const sdkHandler = handlers.get('tools/call');
  if (!sdkHandler) throw new Error('strictToolCalls: register the tools first');
  handlers.set('tools/call', async (request, extra) => {
    const params = callParams.safeParse(request.params);
    if (!params.success) {
      const raw = (request.params ?? {}) as Record<string, unknown>;
      const problem =
        typeof raw['name'] !== 'string'
          ? `params.name must be the tool name, a string (got ${describeValue(raw['name'])})`
          : `params.arguments must be a JSON object of the tool's arguments (got ${describeValue(raw['arguments'])})`;
      throw new InvalidParamsError(`Invalid tools/call request: ${problem}.`);
    }
    const { name, arguments: args } = params.data;
    const tool = internals._registeredTools[name];
    if (!tool?.enabled) {
      const known = Object.keys(internals._registeredTools).filter((n) => internals._registeredTools[n]?.enabled);
      throw new InvalidParamsError(`Unknown tool: ${name}. This server's tools: ${known.join(', ')}.`);
    }
    if (!args) return sdkHandler(request, extra);
    return sdkHandler({ ...request, params: { ...(request.params as object), arguments: nullAsAbsent(tool.inputSchema, args) } }, extra);
  });
}
