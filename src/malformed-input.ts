import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from './logger.js';

/**
 * The SDK's stdio transport reports a line it cannot read through `onerror` and carries on, but
 * says nothing to the peer. JSON-RPC 2.0 wants an error response with a null id (-32700 for
 * unparsable JSON, -32600 for JSON that is not a JSON-RPC message), so a buggy client learns
 * what it sent wrong. Set before `connect`, which chains its own handler after this one.
 */
export function answerMalformedInput(transport: Transport, log: Logger): void {
  transport.onerror = (error: Error) => {
    const unparsable = error instanceof SyntaxError;
    const notJsonRpc = error.name === 'ZodError';
    log.warn('unreadable message on stdin', { error: error.message.slice(0, 500) });
    if (!unparsable && !notJsonRpc) return;
    const reply = {
      jsonrpc: '2.0',
      id: null,
      error: unparsable
        ? { code: -32700, message: `Parse error: ${error.message}` }
        : { code: -32600, message: 'Invalid Request: not a JSON-RPC 2.0 message' },
    } as unknown as JSONRPCMessage;
    transport.send(reply).catch(() => undefined);
  };
}
