/**
 * docs/tools.md, generated: each tool's reference (title, description, arguments, result,
 * hints) comes from what `tools/list` says, so from the zod schemas and descriptions the
 * server registers; the hand-written part (examples, errors, limits) from docs/tools/<name>.md.
 * test/unit/tools-doc.test.ts fails while the file is stale; `npm run docs:tools` rewrites it.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { createSessionServer } from '../src/mcp/server.js';

export const TOOLS_DOC = 'docs/tools.md';
const NOTES_DIR = 'docs/tools';

interface JsonSchema {
  type?: string | string[];
  description?: string;
  enum?: unknown[];
  const?: unknown;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  default?: unknown;
}

/** The tools as a client sees them, through an engine that fails any boot or call: listing them needs none. */
export async function listTools(): Promise<Tool[]> {
  const engine = {
    start() {},
    ready: () => Promise.reject(new Error('listing tools needs no engine')),
    readyFor: () => Promise.reject(new Error('listing tools needs no engine')),
    list: () => Promise.reject(new Error('listing tools needs no engine')),
    readEach: () => Promise.reject(new Error('listing tools needs no engine')),
    readyForFork: () => Promise.reject(new Error('listing tools needs no engine')),
    explainFailedCall: async (error: unknown) => String(error),
    close: async () => {},
  };
  const server = createSessionServer({ engine, clientElsewhere: false });
  const client = new Client({ name: 'tools-doc', version: '1' });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  await client.connect(clientSide);
  try {
    return (await client.listTools()).tools;
  } finally {
    await client.close();
    await server.close();
  }
}

function typeOf(schema: JsonSchema): string {
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) return alternatives.map(typeOf).join(' \\| ');
  if (schema.const !== undefined) return `\`${JSON.stringify(schema.const)}\``;
  if (schema.enum) return schema.enum.map((value) => `\`${JSON.stringify(value)}\``).join(' \\| ');
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  const named = types.map((type) => (type === 'array' ? `${schema.items ? typeOf(schema.items) : 'any'}[]` : type));
  return named.length > 0 ? named.join(' \\| ') : 'any';
}

/** Bounds and patterns, the parts of a schema a caller trips over. */
function limitsOf(schema: JsonSchema): string[] {
  const limits: string[] = [];
  const range = (low: number | undefined, high: number | undefined, unit: string) => {
    if (low !== undefined && high !== undefined) limits.push(`${low}–${high}${unit}`);
    else if (low !== undefined) limits.push(`≥ ${low}${unit}`);
    else if (high !== undefined) limits.push(`≤ ${high}${unit}`);
  };
  range(schema.minimum, schema.maximum, '');
  range(schema.minLength, schema.maxLength, ' characters');
  range(schema.minItems, schema.maxItems, ' items');
  if (schema.pattern) limits.push(`pattern \`${schema.pattern}\``);
  if (schema.default !== undefined) limits.push(`default \`${JSON.stringify(schema.default)}\``);
  return limits;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

function fieldTable(schema: JsonSchema | undefined, heading: string, withRequired: boolean): string[] {
  const properties = Object.entries(schema?.properties ?? {});
  if (properties.length === 0) return [`${heading}: none.`, ''];
  const required = new Set(schema?.required ?? []);
  const lines = [
    `${heading}:`,
    '',
    withRequired ? '| Name | Type | Required | Description |' : '| Field | Type | Description |',
    withRequired ? '| --- | --- | --- | --- |' : '| --- | --- | --- |',
  ];
  for (const [name, field] of properties) {
    const description = cell([(field.description ?? '').replace(/\.$/, ''), ...limitsOf(field)].filter(Boolean).join('; '));
    lines.push(
      withRequired
        ? `| \`${name}\` | ${typeOf(field)} | ${required.has(name) ? 'yes' : 'no'} | ${description} |`
        : `| \`${name}\`${required.has(name) ? '' : ' (optional)'} | ${typeOf(field)} | ${description} |`,
    );
  }
  return [...lines, ''];
}

function hintsOf(tool: Tool): string {
  const hints = tool.annotations ?? {};
  const said = [
    hints.readOnlyHint ? 'read-only' : 'changes data',
    hints.destructiveHint ? 'destructive' : undefined,
    hints.idempotentHint ? 'idempotent' : undefined,
    hints.openWorldHint === false ? 'closed world' : undefined,
  ].filter(Boolean);
  return `Hints: ${said.join(', ')}.`;
}

async function notes(name: string, root: string): Promise<string | undefined> {
  return readFile(path.join(root, NOTES_DIR, `${name}.md`), 'utf8').then(
    (text) => text.trim(),
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    },
  );
}

/** The page, from the running code's tool list and the notes under `root`. */
export async function renderToolsDoc(root: string): Promise<string> {
  const tools = await listTools();
  const intro = (await notes('_intro', root)) ?? '';
  const lines = [
    '# Tools',
    '',
    '<!-- Generated by `npm run docs:tools` from the tools\' schemas and descriptions and from docs/tools/*.md: edit those, not this file. -->',
    '',
    intro,
    '',
    ...tools.map((tool) => `- [\`${tool.name}\`](#${tool.name}): ${tool.title ?? ''}`),
    '',
  ];
  for (const tool of tools) {
    lines.push(`## ${tool.name}`, '', `**${tool.title ?? tool.name}.** ${tool.description ?? ''}`, '');
    lines.push(...fieldTable(tool.inputSchema as JsonSchema, 'Arguments', true));
    lines.push(...fieldTable(tool.outputSchema as JsonSchema | undefined, 'Result', false));
    lines.push(hintsOf(tool), '');
    const extra = await notes(tool.name, root);
    if (extra) lines.push(extra, '');
  }
  return `${lines.join('\n').trimEnd()}\n`;
}
