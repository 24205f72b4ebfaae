import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

/** A throwaway PostgreSQL cluster in a temp dir, owned by the test file that started it. */
export interface PgCluster {
  readonly host: string;
  readonly port: number;
  readonly superuser: string;
  url(database: string, user?: string, password?: string): string;
  createDatabase(prefix?: string): Promise<string>;
  sql(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export function findPgBinDir(): string | null {
  const fromEnv = process.env['PG_BIN_DIR'];
  if (fromEnv && existsSync(path.join(fromEnv, 'initdb'))) return fromEnv;
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => existsSync(path.join(debian, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(debian, versions[0], 'bin');
  }
  const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const bindir = pgConfig.status === 0 ? pgConfig.stdout.trim() : '';
  return bindir && existsSync(path.join(bindir, 'initdb')) ? bindir : null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * initdb + pg_ctl on a free port. PostgreSQL refuses to run as root, so as root the binaries run
 * as the `postgres` OS user over a directory it owns. Returns null (loudly) when there are no
 * binaries outside CI; under CI=true that is an error, never a silent skip.
 */
export async function startPgCluster(options: { settings?: Record<string, string> } = {}): Promise<PgCluster | null> {
  const bin = findPgBinDir();
  if (!bin) {
    const message =
      'PostgreSQL binaries not found (set PG_BIN_DIR or install postgresql-15): real-server tests cannot run.';
    if (process.env['CI'] === 'true') throw new Error(message);
    process.stderr.write(`\n!!!!!!!!!!\n!!! SKIPPING REAL POSTGRESQL TESTS: ${message}\n!!!!!!!!!!\n\n`);
    return null;
  }
  const asRoot = process.getuid?.() === 0;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgw-cluster-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  if (asRoot) {
    const { uid, gid } = osUser('postgres');
    await chown(dir, uid, gid);
  }
  const pgBin = (name: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', path.join(bin, name), ...args]) : run(path.join(bin, name), args);

  await pgBin('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-locale', '--no-sync']);
  const port = await freePort();
  const settings: Record<string, string> = {
    listen_addresses: "'127.0.0.1'",
    port: String(port),
    unix_socket_directories: `'${dir}'`,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: '300',
    ...options.settings,
  };
  await appendFile(path.join(dataDir, 'postgresql.conf'), Object.entries(settings).map(([k, v]) => `${k} = ${v}\n`).join(''));

  let running = false;
  const pgCtl = async (args: string[]) => {
    try {
      await pgBin('pg_ctl', ['-D', dataDir, '-w', ...args]);
    } catch (error) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`pg_ctl ${args.join(' ')} failed: ${(error as Error).message}\n${log.split('\n').slice(-20).join('\n')}`, { cause: error });
    }
  };
  const stopNow = () => {
    if (!running) return;
    const cmd = [path.join(bin, 'pg_ctl'), '-D', dataDir, '-m', 'immediate', 'stop'];
    spawnSync(asRoot ? 'runuser' : (cmd[0] as string), asRoot ? ['-u', 'postgres', '--', ...cmd] : cmd.slice(1));
    running = false;
  };
  // An aborted test run must not leave a postgres behind.
  process.once('exit', stopNow);

  const cluster: PgCluster = {
    host: '127.0.0.1',
    port,
    superuser: 'postgres',
    url: (database, user = 'postgres', password) =>
      `postgresql://${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ''}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    async createDatabase(prefix = 'test') {
      const name = `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
      await cluster.sql(`CREATE DATABASE ${name}`);
      return cluster.url(name);
    },
    async sql(text, params) {
      const client = new pg.Client({ connectionString: cluster.url('postgres') });
      await client.connect();
      try {
        return (await client.query(text, params)).rows;
      } finally {
        await client.end();
      }
    },
    async stop(mode = 'fast') {
      await pgCtl(['-m', mode, 'stop']);
      running = false;
    },
    async start() {
      await pgCtl(['-l', logFile, '-t', '30', 'start']);
      running = true;
    },
    async destroy() {
      process.removeListener('exit', stopNow);
      if (running) await cluster.stop('immediate').catch(stopNow);
      await rm(dir, { recursive: true, force: true });
    },
  };
  await cluster.start();
  return cluster;
}

function osUser(name: string): { uid: number; gid: number } {
  const result = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`running as root needs the "${name}" OS user to start PostgreSQL`);
  return { uid: Number(result.stdout.trim()), gid: Number(gid.stdout.trim()) };
}
