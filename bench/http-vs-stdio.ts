import { spawn } from 'node:child_process';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { sampleInterleaved } from './stats.js';

const MAIN = path.resolve('dist/server/main.js');

/**
 * Scenario 8: the same cached ensure_workspace, one server over stdio and one over Streamable
 * HTTP (SSE answers), on the same database, taking turns.
 */
export async function httpVsStdio(args: string[], env: Record<string, string>, iterations: number) {
  const childEnv = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', PG_WORKSPACE_LOG_LEVEL: 'info', ...env };
  const httpChild = spawn(process.execPath, [MAIN, '--http', '127.0.0.1:0', ...args], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  const url = await new Promise<URL>((resolve, reject) => {
    let stderr = '';
    httpChild.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /"url":"(http:[^"]+)"/.exec(stderr);
      if (match?.[1]) resolve(new URL(match[1]));
    });
    httpChild.once('exit', (code) => reject(new Error(`HTTP server exited (${code}):\n${stderr}`)));
  });
  const overHttp = new Client({ name: 'bench', version: '1' });
  const overStdio = new Client({ name: 'bench', version: '1' });
  try {
    await overHttp.connect(new StreamableHTTPClientTransport(url));
    await overStdio.connect(
      new StdioClientTransport({ command: process.execPath, args: [MAIN, ...args], env: { ...childEnv, PG_WORKSPACE_LOG_LEVEL: 'warn' }, stderr: 'ignore' }),
    );
    const call = (client: Client) => async () => {
      const result = await client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'bench-transport' } });
      if (result.isError) throw new Error(`bench: ensure_workspace failed: ${JSON.stringify(result.content)}`);
    };
    await call(overStdio)();
    await call(overHttp)();
    return await sampleInterleaved(iterations, { http: call(overHttp), stdio: call(overStdio) }, 50);
  } finally {
    await overHttp.close();
    await overStdio.close();
    httpChild.kill('SIGTERM');
  }
}
