import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { callTool } from './mcp.js';

export const MAIN = path.resolve('dist/server/main.js');

export interface ServerProcess {
  client: Client;
  tools: Tool[];
  pid: number;
  stderr(): string;
  call(name: string, args: Record<string, unknown>): ReturnType<typeof callTool>;
  close(): Promise<void>;
}

/** A command of the built CLI (doctor, repair, reembed, ...) run to its end: its exit code and output, whatever the code. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [MAIN, ...args], {
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: unknown; stdout?: string; stderr?: string };
    // A command that could not start at all (no node, no file) is the test's failure, not an exit code.
    if (typeof e.code !== 'number') throw error;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** The built server as a child process, driven over stdio by the SDK client. */
export function startServerProcess(args: string[], env: Record<string, string>): Promise<ServerProcess> {
  return startCommand(process.execPath, [MAIN, ...args], env);
}

/** Any command that serves MCP on stdio (e.g. an installed bin), driven by the SDK client. */
export async function startCommand(command: string, args: string[], env: Record<string, string>): Promise<ServerProcess> {
  const transport = new StdioClientTransport({
    command,
    args,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const client = new Client({ name: 'reliability-test', version: '1' });
  await client.connect(transport);
  const { tools } = await client.listTools();
  return {
    client,
    tools,
    pid: transport.pid as number,
    stderr: () => stderr,
    call: (name, toolArgs) => callTool(client, tools, name, toolArgs),
    close: () => client.close(),
  };
}
