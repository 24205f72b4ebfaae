import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ErrorCode, McpError, type CallToolRequest, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod';

type CallToolHandler = (request: CallToolRequest, extra: unknown) => Promise<CallToolResult>;

/** Only the method: the params are checked below, so a bad one gets a readable -32602. */
const looseCallTool = z.object({ method: z.literal('tools/call'), params: z.unknown() });

const callParams = z.object({
  name: z.string({ error: 'params.name must be the tool name, a string' }),
  arguments: z.record(z.string(), z.unknown(), { error: 'params.arguments must be a JSON object of the tool\'s arguments' }).optional(),
});

/**
 * SDK 1.32 answers a call to an unknown tool with an `isError` result, and malformed params
 * (e.g. `arguments` sent as a string) with -32603 and a raw zod dump. The spec wants a JSON-RPC
 * -32602 error for both, which clients of other SDKs rely on. This puts a check in front of the
 * SDK's own `tools/call` handler, which still does the rest (argument validation, output
 * schema). The SDK exposes neither its handler nor its tool table, hence the two private reads.
 */
export function strictToolCalls(server: McpServer): void {
  const internals = server as unknown as { _registeredTools: Record<string, { enabled: boolean }> };
  const protocol = server.server as unknown as { _requestHandlers: Map<string, CallToolHandler> };
  const sdkHandler = protocol._requestHandlers.get('tools/call');
  if (!sdkHandler) throw new Error('strictToolCalls: register the tools first');
  server.server.removeRequestHandler('tools/call');
  server.server.setRequestHandler(looseCallTool, (request, extra) => {
    const params = callParams.safeParse(request.params);
    if (!params.success) {
      throw new McpError(ErrorCode.InvalidParams, `Invalid tools/call params: ${params.error.issues.map((i) => i.message).join('; ')}`);
    }
    const { name } = params.data;
    if (!internals._registeredTools[name]?.enabled) {
      const known = Object.keys(internals._registeredTools).filter((n) => internals._registeredTools[n]?.enabled);
      throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}. This server's tools: ${known.join(', ')}.`);
    }
    return sdkHandler(request as CallToolRequest, extra);
  });
}
