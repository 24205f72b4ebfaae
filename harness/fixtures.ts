import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Database, Queryable } from '../src/db/database.js';
import { PGliteDatabase } from '../src/db/embedded/pglite-database.js';
import { DEFAULT_LOCK_TIMEOUT_MS } from '../src/config.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { builtinExtensionDirs } from '../src/extensions/builtin-extensions.js';
import { loadExtensions } from '../src/extensions/load-extensions.js';
import { installExtensions } from '../src/installer/install-extensions.js';
import { INSTALL_LOCK_KEY } from '../src/installer/install-lock.js';
import { prepareInstallPlan, type InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import type { PgCluster } from './pg-cluster.js';
import { tempDir } from './temp-dirs.js';

export { writeExtension } from './extension-dirs.js';
export { tempDir };

/** The built-in extensions followed by `dirs`, loaded and parsed as boot does. */
export async function planFor(dirs: readonly string[], disabled: readonly string[] = []): Promise<InstallPlan> {
  return prepareInstallPlan(await loadExtensions([...builtinExtensionDirs, ...dirs], disabled));
}

export function install(db: Database, plan: InstallPlan, lockTimeoutMs = DEFAULT_LOCK_TIMEOUT_MS) {
  return installExtensions(db, plan, { lockTimeoutMs, log: silentLogger });
}

/** The real database, with every call it receives recorded (for round-trip and no-DDL claims). */
export function recording(db: Database): { db: Database; calls: string[] } {
  const calls: string[] = [];
  const wrap = (q: Queryable): Queryable => ({
    query: (sql, params) => {
      calls.push(sql);
      return q.query(sql, params);
    },
    exec: (sql) => {
      calls.push(sql);
      return q.exec(sql);
    },
  });
  const recorded: Database = {
    description: db.description,
    ...wrap(db),
    transaction: (fn) => {
      calls.push('BEGIN');
      return db.transaction((tx) => fn(wrap(tx)));
    },
    withSession: (fn) => db.withSession((s) => fn(wrap(s))),
    tryExclusive: (key, attempt, body) => db.tryExclusive(key, attempt, body),
    lockHolders: (key) => db.lockHolders(key),
    pipeline: (steps) => {
      calls.push(...steps.map((s) => ('sql' in s ? s.sql : `DESCRIBE ${s.describePortal}`)));
      return db.pipeline(steps);
    },
    runAsRole: (role, sql, timeoutMs) => {
      calls.push(sql);
      return db.runAsRole(role, sql, timeoutMs);
    },
    registerVectorTypes: () => db.registerVectorTypes(),
    close: () => db.close(),
  };
  return { db: recorded, calls };
}

/**
 * Fresh databases for one test file. A new PGlite store is a copy of the template that
 * `npm run build` makes, so it costs a fraction of a second, not initdb's seconds.
 */
export interface Backend {
  name: 'pglite' | 'postgres';
  fresh(): Promise<Database>;
  /** A URL for a fresh database (postgres only). */
  freshUrl?(): Promise<string>;
  cleanup(): Promise<void>;
}

export async function pgliteBackend(): Promise<Backend> {
  const root = await tempDir('pgw-pglite-');
  const opened: Database[] = [];
  let n = 0;
  return {
    name: 'pglite',
    async fresh() {
      const db = await PGliteDatabase.open(path.join(root, `db${++n}`));
      opened.push(db);
      return db;
    },
    async cleanup() {
      await Promise.all(opened.map((db) => db.close().catch(() => undefined)));
      await rm(root, { recursive: true, force: true });
    },
  };
}

export function postgresBackend(cluster: PgCluster): Backend {
  const opened: Database[] = [];
  return {
    name: 'postgres',
    freshUrl: () => cluster.createDatabase('pgw'),
    async fresh() {
      const db = new PostgresDatabase({ connectionString: await cluster.createDatabase('pgw') });
      opened.push(db);
      return db;
    },
    async cleanup() {
      await Promise.all(opened.map((db) => db.close().catch(() => undefined)));
    },
  };
}

/**
 * Another session holding the install lock, as a booting server would, until `release`: its
 * transaction stays open on a connection of its own.
 */
export async function holdInstallLock(url: string): Promise<{ pid: number; release(): Promise<void> }> {
  const holder = new PostgresDatabase({ connectionString: url });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding!: (pid: number) => void;
  const held = new Promise<number>((resolve) => (holding = resolve));
  const done = holder.transaction(async (tx) => {
    const [row] = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid, pg_advisory_xact_lock($1::bigint)', [
      INSTALL_LOCK_KEY.toString(),
    ]);
    holding(row?.pid ?? 0);
    await released;
  });
  const pid = await held;
  let closing: Promise<void> | undefined;
  return {
    pid,
    release() {
      release();
      closing ??= done.then(() => holder.close());
      return closing;
    },
  };
}
