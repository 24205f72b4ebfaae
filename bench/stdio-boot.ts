import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { distribution, sampleInterleaved, type Distribution } from './stats.js';

export const MAIN = path.resolve('dist/server/main.js');
export const NOOP_SERVER = path.resolve('dist/bench-servers/noop-server.js');
const BARE_SERVER = path.resolve('dist/bench-servers/bare-server.js');

export function transport(entry: string, args: string[], env: Record<string, string>) {
  return new StdioClientTransport({
    command: process.execPath,
    args: [entry, ...args],
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', PG_WORKSPACE_LOG_LEVEL: 'warn', ...env },
    stderr: 'ignore',
  });
}

/** Scenario 2: a cached ensure_workspace against a no-op tool, same server, real stdio. */
export async function cacheHitOverStdio(args: string[], env: Record<string, string>, iterations: number) {
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(transport(NOOP_SERVER, args, env));
  try {
    await client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'bench-cached' } });
    return await sampleInterleaved(
      iterations,
      {
        ensure: () => client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'bench-cached' } }),
        noop: () => client.callTool({ name: 'noop', arguments: {} }),
      },
      100,
    );
  } finally {
    await client.close();
  }
}

export interface BootFigures {
  initialize: Distribution;
  firstResult: Distribution;
}

/**
 * Scenario 4: spawn to `initialize` answered, and spawn to the first successful tool result.
 * `prepare` runs before each spawn (a fresh directory or database, a held lock…) and returns
 * the arguments and environment for that run.
 */
export async function bootTimes(
  iterations: number,
  prepare: (i: number) => Promise<{ args: string[]; env: Record<string, string>; firstResult: boolean }>,
  entry = MAIN,
): Promise<BootFigures> {
  const initialize: number[] = [];
  const firstResult: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const run = await prepare(i);
    const client = new Client({ name: 'bench', version: '1' });
    const started = performance.now();
    await client.connect(transport(entry, run.args, run.env));
    initialize.push(performance.now() - started);
    if (run.firstResult) {
      const result = await client.callTool({ name: 'list_workspaces', arguments: {} });
      if (result.isError) throw new Error(`boot benchmark: tool call failed: ${JSON.stringify(result.content)}`);
      firstResult.push(performance.now() - started);
    }
    await client.close();
  }
  return { initialize: distribution(initialize), firstResult: distribution(firstResult) };
}

/** The floor: spawn to initialize of a bare SDK server with one no-op tool. */
export function bareServerBoot(iterations: number): Promise<BootFigures> {
  return bootTimes(iterations, async () => ({ args: [], env: {}, firstResult: false }), BARE_SERVER);
}
