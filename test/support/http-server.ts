import { spawn, type ChildProcess } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { MAIN } from './server-process.js';

export interface HttpServerProcess {
  /** http://127.0.0.1:PORT/mcp, with the port the server chose. */
  url: URL;
  child: ChildProcess;
  stderr(): string;
  /** An SDK client connected over Streamable HTTP (headers: e.g. the bearer token). */
  connect(headers?: Record<string, string>): Promise<Client>;
  /** Sends the signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The built server serving HTTP on a port of its choosing (`--http 127.0.0.1:0`). */
export async function startHttpServer(args: string[], env: Record<string, string>): Promise<HttpServerProcess> {
  const child = spawn(process.execPath, [MAIN, '--http', '127.0.0.1:0', ...args], {
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<URL>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /"url":"(http:[^"]+)"/.exec(stderr);
      if (match?.[1]) resolve(new URL(match[1]));
    });
    void exited.then((code) => reject(new Error(`server exited (${code}) before listening:\n${stderr}`)));
  });
  return {
    url,
    child,
    stderr: () => stderr,
    async connect(headers = {}) {
      const client = new Client({ name: 'http-test', version: '1' });
      await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers } }));
      return client;
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}
