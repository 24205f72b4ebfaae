import { execFile } from 'node:child_process';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { PgCluster } from './pg-cluster.js';

const run = promisify(execFile);

export interface PgBouncer {
  url(database: string): string;
  stop(): Promise<void>;
}

/**
 * PgBouncer in front of a test cluster, by default in transaction pooling mode: consecutive
 * transactions of one client may run on different server sessions, which is what breaks
 * session-level locks. In session mode a client keeps its server connection until it
 * disconnects, and waits at most `queryWaitTimeoutS` for one.
 * Returns null (loudly) when pgbouncer is not installed outside CI; under CI=true it throws.
 */
export async function startPgBouncer(
  cluster: PgCluster,
  options: { poolSize?: number; poolMode?: 'transaction' | 'session'; queryWaitTimeoutS?: number } = {},
): Promise<PgBouncer | null> {
  const binary = '/usr/sbin/pgbouncer';
  if (!(await run('test', ['-x', binary]).then(() => true, () => false))) {
    const message = 'pgbouncer is not installed (Debian package pgbouncer): PgBouncer tests cannot run.';
    if (process.env['CI'] === 'true') throw new Error(message);
    process.stderr.write(`\n!!! SKIPPING PGBOUNCER TESTS: ${message}\n\n`);
    return null;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgw-bouncer-'));
  const port = await new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = server.address() as net.AddressInfo;
      server.close(() => resolve(p));
    });
  });
  await writeFile(
    path.join(dir, 'pgbouncer.ini'),
    `[databases]
* = host=127.0.0.1 port=${cluster.port} user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = any
pool_mode = ${options.poolMode ?? 'transaction'}
query_wait_timeout = ${options.queryWaitTimeoutS ?? 120}
max_client_conn = 2000
default_pool_size = ${options.poolSize ?? 40}
ignore_startup_parameters = extra_float_digits
logfile = ${dir}/pgbouncer.log
pidfile = ${dir}/pgbouncer.pid
`,
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { stdout: uid } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(dir, Number(uid), Number(gid));
  }
  const args = ['-d', path.join(dir, 'pgbouncer.ini')];
  await (asRoot ? run('runuser', ['-u', 'postgres', '--', binary, ...args]) : run(binary, args));
  const url = (database: string) => `postgresql://postgres@127.0.0.1:${port}/${database}`;
  for (let i = 0; ; i++) {
    const client = new pg.Client({ connectionString: url('postgres') });
    try {
      await client.connect();
      await client.end();
      break;
    } catch (error) {
      await client.end().catch(() => undefined);
      if (i > 100) throw new Error(`pgbouncer did not start: ${(error as Error).message}`, { cause: error });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const stop = async () => {
    const pid = Number(await readFile(path.join(dir, 'pgbouncer.pid'), 'utf8').catch(() => '0'));
    if (pid) process.kill(pid, 'SIGINT');
    await rm(dir, { recursive: true, force: true });
  };
  return { url, stop };
}
