import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import pg from 'pg';
import { parseCommand } from '../src/config.js';
import { ProvisioningEngine } from '../src/engine.js';
import { silentLogger } from '../src/logger.js';
import { sampleInterleaved } from './stats.js';

const NOOP_SERVER = path.resolve('dist/bench-servers/noop-server.js');

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
}

/**
 * Scenario 11: query (a 10-row SELECT) and execute (a one-row INSERT) over real stdio, taking
 * turns with the same SQL sent by `pg` directly and with a no-op tool on the same server; and
 * the server's RSS around a query whose result has a million rows, and one of 100 rows of 10 MB.
 * Then, to show where the time goes, the same two calls made on an engine in this process (the
 * sandbox's round trip without MCP) taking turns with `pg` directly, in a pass of their own so
 * that the first pass takes turns exactly as before; and calls of two workspaces taking turns
 * against calls of one.
 */
export async function sqlToolsOverStdio(url: string, iterations: number) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [NOOP_SERVER],
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', PG_WORKSPACE_LOG_LEVEL: 'warn', DATABASE_URL: url },
    stderr: 'ignore',
  });
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(transport);
  const direct = new pg.Client({ connectionString: url });
  await direct.connect();
  const call = async (name: string, args: Record<string, unknown>) => {
    const result = await client.callTool({ name, arguments: { project_id: 'bench-sql', ...args } });
    if (result.isError) throw new Error(`${name} failed: ${JSON.stringify(result.content)}`);
    return result;
  };
  try {
    await call('execute', { sql: 'CREATE TABLE ten (n int, label text)' });
    await call('execute', { sql: "INSERT INTO ten SELECT g, 'row ' || g FROM generate_series(1, 10) g" });
    await call('execute', { sql: 'CREATE TABLE sink (n int)' });
    const figures = await sampleInterleaved(iterations, {
      query: () => call('query', { sql: 'SELECT n, label FROM ten' }),
      pgSelect: () => direct.query('SELECT n, label FROM project_bench_sql.ten'),
      execute: () => call('execute', { sql: 'INSERT INTO sink VALUES ($1)', params: [1] }),
      pgInsert: () => direct.query('INSERT INTO project_bench_sql.sink VALUES ($1)', [1]),
      noop: () => client.callTool({ name: 'noop', arguments: {} }),
    });
    // Configured as the spawned server is, from the same environment.
    const command = parseCommand([], { DATABASE_URL: url, HOME: process.env['HOME'] ?? '/tmp' });
    if (command.kind !== 'serve') throw new Error('expected a serve configuration');
    const engine = new ProvisioningEngine(command.config, silentLogger);
    engine.start();
    const { sandbox: sql } = await engine.ready(60_000);
    const inProcess = await sampleInterleaved(iterations, {
      query: () => sql.query('bench-sql', 'SELECT n, label FROM ten', []),
      pgSelect: () => direct.query('SELECT n, label FROM project_bench_sql.ten'),
      execute: () => sql.execute('bench-sql', 'INSERT INTO sink VALUES ($1)', [1]),
      pgInsert: () => direct.query('INSERT INTO project_bench_sql.sink VALUES ($1)', [1]),
    });
    // On PostgreSQL a pooled session that ran one workspace's agent code never runs another's
    // (custom settings' placeholders); each workspace's idle one is kept for its next call.
    // Three calls with two passes against three of one workspace; each ends on the same one.
    const one = () => sql.query('bench-sql-b', 'SELECT 1 AS one', []);
    const switching = await sampleInterleaved(iterations, {
      sameWorkspace: async () => {
        await one();
        await one();
        await one();
      },
      twoWorkspaces: async () => {
        await one();
        await sql.query('bench-sql', 'SELECT 1 AS one', []);
        await one();
      },
    }).finally(() => engine.close());
    const pid = transport.pid as number;
    const before = await rssMb(pid);
    await call('query', { sql: "SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g", max_rows: 100 });
    const after = await rssMb(pid);
    // 100 rows of 10 MB: the byte budget (1 MiB) stops at the first, which alone is over it.
    const wide = await call('query', { sql: "SELECT g, repeat('x', 10000000) FROM generate_series(1, 100) g", max_rows: 100 });
    const afterWide = await rssMb(pid);
    const wideRows = (wide.structuredContent as { row_count: number }).row_count;
    return { figures, inProcess, switching, rss: { before, after, afterWide, wideRows } };
  } finally {
    await direct.end();
    await client.close();
  }
}
