import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
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
  /** The server's log (what `pg_ctl -l` writes: warnings and errors of every session). */
  readonly logFile: string;
  /** Connection URL for a database on this cluster, as superuser unless user/password are given. */
  url(database: string, user?: string, password?: string): string;
  /** CREATE DATABASE with a name unique on this cluster; returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  /** Runs SQL as superuser on the `postgres` database over a connection of its own. */
  sql(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts the cluster again on the same port and data directory. */
  start(): Promise<void>;
  /** `pg_ctl restart`: every session ends (at once with `immediate`, which then runs crash recovery). */
  restart(mode?: 'fast' | 'immediate'): Promise<void>;
  destroy(): Promise<void>;
}

/** $PG_BIN_DIR, else the highest /usr/lib/postgresql/<version>/bin, else `pg_config --bindir`. */
export function findPgBinDir(): string | null {
  // Taken as is: a wrong PG_BIN_DIR should fail loudly, not quietly test another version.
  const fromEnv = process.env['PG_BIN_DIR'];
  if (fromEnv) return fromEnv;
  const debian = '/usr/lib/postgresql';
  const versions = existsSync(debian)
    ? readdirSync(debian)
        .filter((v) => existsSync(path.join(debian, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0]) return path.join(debian, versions[0], 'bin');
  const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const bindir = pgConfig.status === 0 ? pgConfig.stdout.trim() : '';
  return bindir && existsSync(path.join(bindir, 'initdb')) ? bindir : null;
}

/**
 * initdb + pg_ctl start on a free port. PostgreSQL refuses to run as root, so as root the binaries
 * run as the `postgres` OS user over a directory it owns. Returns null (loudly) when there are no
 * binaries outside CI; under CI=true that is an error, never a silent skip.
 *
 * `settings` are appended to postgresql.conf verbatim, so string values need their own quotes.
 */
export async function startPgCluster(options: { settings?: Record<string, string> } = {}): Promise<PgCluster | null> {
  const bin = findPgBinDir();
  if (!bin) {
    const message = 'PostgreSQL binaries not found (set PG_BIN_DIR or install postgresql-15): real-server tests cannot run.';
    if (process.env['CI'] === 'true') throw new Error(message);
    process.stderr.write(`\n!!!!!!!!!!\n!!! SKIPPING REAL POSTGRESQL TESTS: ${message}\n!!!!!!!!!!\n\n`);
    return null;
  }
  const asRoot = process.getuid?.() === 0;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgw-cluster-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const command = (name: string, args: string[]): [string, string[]] =>
    asRoot ? ['runuser', ['-u', 'postgres', '--', path.join(bin, name), ...args]] : [path.join(bin, name), args];
  // cwd: as root, the caller's directory may be unreadable to `postgres`, which then warns on every call.
  const pgBin = (name: string, args: string[]) => run(...command(name, args), { cwd: dir });
  const pgCtl = async (args: string[]) => {
    try {
      await pgBin('pg_ctl', ['-D', dataDir, '-w', ...args]);
    } catch (error) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      const tail = log.split('\n').slice(-20).join('\n');
      throw new Error(`pg_ctl ${args.join(' ')} failed: ${(error as Error).message}\n--- postgres.log tail ---\n${tail}`, { cause: error });
    }
  };

  let running = false;
  const abandon = () => {
    if (running) spawnSync(...command('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']), { cwd: dir, stdio: 'ignore' });
    running = false;
    rmSync(dir, { recursive: true, force: true });
  };
  guardProcessExit(abandon);
  const start = async () => {
    // Set first: a start that timed out may still leave a postmaster behind.
    running = true;
    await pgCtl(['-l', logFile, '-t', '30', 'start']);
  };

  let port: number;
  try {
    if (asRoot) {
      const { uid, gid } = await osUser('postgres');
      await chown(dir, uid, gid);
    }
    await pgBin('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-locale', '--no-sync']);
    port = await freePort();
    const settings: Record<string, string> = {
      listen_addresses: "'127.0.0.1'",
      port: String(port),
      unix_socket_directories: `'${dir}'`,
      // Durability is worthless for a throwaway cluster and costs seconds per test file.
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      // installer.test.ts alone opens 20 pools of up to 10 connections at once.
      max_connections: '300',
      ...options.settings,
    };
    const conf = Object.entries(settings).map(([key, value]) => `${key} = ${value}\n`).join('');
    await appendFile(path.join(dataDir, 'postgresql.conf'), conf);
    await start();
  } catch (error) {
    processExitGuards.delete(abandon);
    abandon();
    throw error;
  }

  let databases = 0;
  const cluster: PgCluster = {
    host: '127.0.0.1',
    port,
    superuser: 'postgres',
    logFile,
    url: (database, user = 'postgres', password) =>
      `postgresql://${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ''}` +
      `@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    async createDatabase(prefix = 'test') {
      const name = `${prefix}_${++databases}`;
      await cluster.sql(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
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
    start,
    async restart(mode = 'fast') {
      running = true;
      await pgCtl(['-m', mode, '-l', logFile, '-t', '30', 'restart']);
    },
    async destroy() {
      processExitGuards.delete(abandon);
      // Best effort: a test may have killed the server, and the directory must go regardless.
      if (running) await cluster.stop('immediate').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** Synchronous cleanups of clusters not yet destroyed, run however the process ends. */
const processExitGuards = new Set<() => void>();

function runProcessExitGuards() {
  for (const guard of processExitGuards) guard();
  processExitGuards.clear();
}

let processHooked = false;

function guardProcessExit(guard: () => void) {
  if (!processHooked) {
    processHooked = true;
    process.on('exit', runProcessExitGuards);
    // Ctrl-C or a killed test worker ends the process without 'exit': postgres would be orphaned.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(signal, () => {
        runProcessExitGuards();
        // Listening replaced Node's default of dying on the signal; die as it would have.
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      });
    }
  }
  processExitGuards.add(guard);
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

async function osUser(name: string): Promise<{ uid: number; gid: number }> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
    return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
  } catch (error) {
    throw new Error(`running as root needs the "${name}" OS user to start PostgreSQL`, { cause: error });
  }
}

/**
 * A new database with pgvector created in it by the superuser, as an administrator prepares one
 * for the default set-up (the server's role may not create it); its URL.
 */
export async function createVectorDatabase(cluster: PgCluster, prefix?: string): Promise<string> {
  const url = await cluster.createDatabase(prefix);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('CREATE EXTENSION IF NOT EXISTS vector');
  } finally {
    await client.end();
  }
  return url;
}

/**
 * A cluster whose PostgreSQL has pgvector, or a loud skip (a failure under CI=true): `what`
 * names the tests that need it.
 */
export async function startPgvectorCluster(what: string): Promise<PgCluster | null> {
  const cluster = await startPgCluster();
  if (!cluster) return null;
  const [row] = await cluster.sql(`SELECT count(*)::int AS n FROM pg_available_extensions WHERE name = 'vector'`);
  if (row?.['n'] === 1) return cluster;
  await cluster.destroy();
  const message = `pgvector is not installed in the test PostgreSQL: ${what} on a real server cannot be tested.`;
  if (process.env['CI'] === 'true') throw new Error(message);
  process.stderr.write(`\n!!!!!!!!!!\n!!! SKIPPING REAL POSTGRESQL TESTS: ${message}\n!!!!!!!!!!\n\n`);
  return null;
}
