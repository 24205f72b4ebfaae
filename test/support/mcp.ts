import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { Ajv } from 'ajv';
import { expect } from 'vitest';

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
