import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { explainError } from '../src/db/sql-errors.js';
import { silentLogger } from '../src/logger.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { holdInstallLock, install, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { startPgBouncer, type PgBouncer } from './support/pgbouncer.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { startServerProcess, type ServerProcess } from './support/server-process.js';
import { callTool, connectInProcess } from './support/mcp.js';
import { BACKEND_KINDS } from './support/backend-per-kind.js';

/*
 * What the database does to a running server: restarts, terminated sessions, privileges granted
 * while it runs, pauses between an agent's calls.
 */

let cluster: PgCluster | null = null;
/** Transaction pooling with two server connections: the least the installer can work with. */
let smallPool: PgBouncer | null = null;

beforeAll(async () => {
  // Commits are durable here (the harness turns synchronous_commit off for speed): the tests crash
  // the server with -m immediate, and with asynchronous commit PostgreSQL may lose commits it had
  // acknowledged, such as the install a booted server already relies on.
  cluster = await startPgCluster({ settings: { synchronous_commit: 'on' } });
  if (cluster) smallPool = await startPgBouncer(cluster, { poolSize: 2 });
}, 90_000);

afterAll(async () => {
  await smallPool?.stop();
  await cluster?.destroy();
});

const server = (ctx: TestContext) => {
  if (!cluster) ctx.skip();
  return cluster as PgCluster;
};
const coreOnly = ['--disable', 'codebase'];

/** The process is still there (signal 0 only checks) and said nothing about an unhandled error. */
function expectAlive(s: ServerProcess) {
  expect(() => process.kill(s.pid, 0)).not.toThrow();
  expect(s.stderr()).not.toMatch(/Unhandled|uncaught/i);
}

/**
 * 200 new workspaces asked for at once, and `disrupt` 100 ms in: every call gets an answer (a
 * workspace, or an error that says the database went away and to retry), the process survives,
 * and once the database is back the same server serves again.
 */
async function burstAcross(c: PgCluster, label: string, disrupt: (database: string) => Promise<void>) {
  const url = await c.createDatabase(label);
  const database = new URL(url).pathname.slice(1);
  const s = await startServerProcess(coreOnly, { DATABASE_URL: url, PG_WORKSPACE_LOG_LEVEL: 'warn' });
  try {
    expect((await s.call('ensure_workspace', { project_id: 'before' })).isError).toBe(false);
    const calls = Array.from({ length: 200 }, (_, i) =>
      s.call('ensure_workspace', { project_id: `burst-${i}` }).then(
        (r) => r,
        (error: unknown) => ({ isError: true, text: `NO ANSWER: ${(error as Error).message}`, data: {} as Record<string, unknown> }),
      ),
    );
    await new Promise((r) => setTimeout(r, 100));
    await disrupt(database);
    const results = await Promise.all(calls);
    const unclear = results.filter((r) => r.isError && !/Cannot reach the database[\s\S]*retry the call/.test(r.text));
    // The server's stderr says why, should the process have died.
    expect(unclear.map((r) => r.text), s.stderr().slice(-4000)).toEqual([]);
    expectAlive(s);
    const after = await s.call('ensure_workspace', { project_id: 'after' });
    expect(after.isError, after.text).toBe(false);
    expect(after.data).toMatchObject({ created: true });
    // Whatever each call answered is true: an answered workspace exists.
    const made = results.filter((r) => !r.isError).map((r) => r.data['project_id'] as string);
    const db = new PostgresDatabase({ connectionString: url });
    try {
      const rows = await db.query<{ project_id: string }>('SELECT project_id FROM project_registry.workspace_config WHERE project_id = ANY($1)', [made]);
      expect(rows).toHaveLength(made.length);
    } finally {
      await db.close();
    }
    return results;
  } finally {
    await s.close();
  }
}

describe('a running server and a database that goes away', () => {
  it('survives a burst of 200 calls across pg_ctl restart -m immediate and serves again', async (ctx) => {
    const c = server(ctx);
    await burstAcross(c, 'restart', () => c.restart('immediate'));
  }, 180_000);

  it('survives pg_terminate_backend of all its sessions mid-burst and serves again', async (ctx) => {
    const c = server(ctx);
    const results = await burstAcross(c, 'terminate', async (database) => {
      const ended = await c.sql(
        `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [database],
      );
      expect(ended.length).toBeGreaterThan(0);
    });
    expect(results).toHaveLength(200);
  }, 180_000);

  it('a connection-level error while creating a workspace gets the reconnect advice, not "failed in the workspace DDL"', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('cut');
    const ext = await writeExtension(await tempDir(), { id: 'sleepy-ws' }, {
      'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS slow_items (id int); DO $$ BEGIN PERFORM pg_sleep(10); END $$;',
    });
    const plan = await planFor([ext], ['codebase']);
    const db = new PostgresDatabase({ connectionString: url });
    try {
      const report = await install(db, plan);
      const manager = new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger);
      const pending = manager.ensure('cut-off').then(
        () => undefined,
        (error: unknown) => error,
      );
      let ended = false;
      for (let i = 0; i < 400 && !ended; i++) {
        const rows = await c.sql(`SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE wait_event = 'PgSleep'`);
        ended = rows.length > 0;
        if (!ended) await new Promise((r) => setTimeout(r, 25));
      }
      expect(ended).toBe(true);
      const message = explainError(await pending, 'the test database');
      expect(message).toContain('Cannot reach the database');
      expect(message).toContain('57P01');
      expect(message).toContain('retry the call');
      expect(message).not.toContain('workspace DDL');
    } finally {
      await db.close();
    }
  }, 60_000);
});

describe('privileges granted while the server runs', () => {
  it('a boot that failed for a missing privilege succeeds on the next call once an admin grants it', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('regrant');
    const database = new URL(url).pathname.slice(1);
    await c.sql(`DROP ROLE IF EXISTS regrant_role`);
    await c.sql(`CREATE ROLE regrant_role LOGIN`);
    await c.sql(`REVOKE CREATE ON DATABASE "${database}" FROM PUBLIC`);
    const s = await startServerProcess(coreOnly, { DATABASE_URL: c.url(database, 'regrant_role') });
    try {
      const refused = await s.call('ensure_workspace', { project_id: 'granted-later' });
      expect(refused.isError).toBe(true);
      const grant = `GRANT CREATE ON DATABASE "${database}" TO "regrant_role";`;
      expect(refused.text).toContain(grant);
      await c.sql(grant);
      const made = await s.call('ensure_workspace', { project_id: 'granted-later' });
      expect(made.isError, made.text).toBe(false);
      expect(made.data).toMatchObject({ created: true });
    } finally {
      await s.close();
    }
  }, 60_000);
});

describe("connections across an agent's pause", () => {
  it("keeps its connection across a pause longer than pg's 10 s idle default, and parses vectors on new ones", async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('idle');
    const db = new PostgresDatabase({ connectionString: url });
    const backend = async () => (await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]?.pid;
    try {
      const before = await backend();
      await new Promise((r) => setTimeout(r, 11_000));
      expect(await backend()).toBe(before);

      const [vector] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_available_extensions WHERE name = 'vector'`);
      if (!vector?.n) {
        process.stderr.write('\n!!! pgvector is not installed on this PostgreSQL: vector parsing on new connections not checked\n');
        return;
      }
      await db.exec('CREATE EXTENSION IF NOT EXISTS vector');
      await db.registerVectorTypes();
      // The connection the types were looked up on ends: a new one parses with them as well.
      await c.sql('SELECT pg_terminate_backend($1)', [before]);
      // Time for the pool to hear that its idle client is gone (it then drops it).
      await new Promise((r) => setTimeout(r, 300));
      const [row] = await db.query<{ v: unknown; pid: number }>(`SELECT '[1,2.5,3]'::vector AS v, pg_backend_pid() AS pid`);
      expect(row?.pid).not.toBe(before);
      expect(row?.v).toEqual([1, 2.5, 3]);
    } finally {
      await db.close();
    }
  }, 60_000);
});

describe('a connection that has served many calls', () => {
  it('is replaced after 200 checkouts, its caches with it, and the next call runs on a new one', async (ctx) => {
    const c = server(ctx);
    const db = new PostgresDatabase({ connectionString: await c.createDatabase('uses') });
    const backend = async () => (await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]?.pid;
    try {
      const pids = [];
      for (let i = 0; i < 201; i++) pids.push(await backend());
      expect(new Set(pids.slice(0, 200)).size).toBe(1);
      expect(pids[200]).not.toBe(pids[0]);
    } finally {
      await db.close();
    }
  }, 60_000);
});

describe('who holds an advisory lock', () => {
  it('is found for keys of either sign (a bigint key splits into two OIDs, unsigned)', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('holders');
    const db = new PostgresDatabase({ connectionString: url });
    const holder = new PostgresDatabase({ connectionString: url });
    try {
      for (const key of [42n, -42n, -(2n ** 63n), 2n ** 63n - 1n]) {
        await holder.withSession(async (session) => {
          const [{ pid } = { pid: 0 }] = await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid, pg_advisory_lock($1::bigint)', [key.toString()]);
          const holders = await db.lockHolders(key);
          await session.query('SELECT pg_advisory_unlock($1::bigint)', [key.toString()]);
          expect(holders.map((h) => h.pid)).toEqual([pid]);
        });
      }
    } finally {
      await holder.close();
      await db.close();
    }
  }, 60_000);
});

describe('booting through PgBouncer with a pool of 2 server connections', () => {
  const through = async (ctx: TestContext) => {
    const c = server(ctx);
    if (!smallPool) ctx.skip();
    const direct = await c.createDatabase('small_pool');
    return { direct, pooled: (smallPool as PgBouncer).url(new URL(direct).pathname.slice(1)) };
  };

  it('8 servers booting at once all answer, and each migration runs once', async (ctx) => {
    const { direct, pooled } = await through(ctx);
    // A slow migration keeps the lock held while the other boots wait for it.
    const ext = await writeExtension(await tempDir(), { id: 'slowmig' }, {
      'schema.sql': 'CREATE TABLE IF NOT EXISTS public.slowmig_log (note text);',
      'migrations/0001_slow.sql': `SELECT pg_sleep(1); INSERT INTO public.slowmig_log VALUES ('0001');`,
    });
    const servers = await Promise.all(
      Array.from({ length: 8 }, () =>
        startServerProcess(['--extensions', ext, ...coreOnly], { DATABASE_URL: pooled, PG_WORKSPACE_LOCK_TIMEOUT_MS: '40000' }),
      ),
    );
    try {
      const results = await Promise.all(servers.map((s, i) => s.call('ensure_workspace', { project_id: `small-pool-${i}` })));
      expect(results.filter((r) => r.isError).map((r) => r.text)).toEqual([]);
      const db = new PostgresDatabase({ connectionString: direct });
      try {
        expect(await db.query(`SELECT note FROM public.slowmig_log`)).toEqual([{ note: '0001' }]);
      } finally {
        await db.close();
      }
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  }, 120_000);

  it('a boot that timed out waiting for the lock says who holds it, and the next call after its release boots', async (ctx) => {
    const { direct, pooled } = await through(ctx);
    const lock = await holdInstallLock(direct);
    const s = await startServerProcess(coreOnly, { DATABASE_URL: pooled, PG_WORKSPACE_LOCK_TIMEOUT_MS: '1500' });
    try {
      const blocked = await s.call('ensure_workspace', { project_id: 'after-timeout' });
      expect(blocked.isError).toBe(true);
      expect(blocked.text).toContain('Gave up waiting for the install lock');
      expect(blocked.text).toContain(`pid ${lock.pid}`);
      await lock.release();
      const made = await s.call('ensure_workspace', { project_id: 'after-timeout' });
      expect(made.isError, made.text).toBe(false);
    } finally {
      await lock.release();
      await s.close();
    }
  }, 60_000);
});

for (const kind of BACKEND_KINDS) {
  describe(`the registry dropped under a running server (${kind})`, () => {
    it('the next call says so and installs it again; the one after works; an agent naming a missing registry table changes nothing', async (ctx) => {
      const databaseUrl = kind === 'postgres' ? await server(ctx).createDatabase('lost_registry') : undefined;
      const mcp = await connectInProcess({ ...(databaseUrl ? { databaseUrl } : {}), disabledExtensions: ['codebase'] });
      const call = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
      try {
        expect((await call('execute', { project_id: 'before', sql: "CREATE TABLE notes AS SELECT 'kept' AS body" })).isError).toBe(false);
        // An agent's query naming a table the registry never had is the agent's error, nothing more.
        const typo = await call('query', { project_id: 'before', sql: 'SELECT * FROM project_registry.no_such_table' });
        expect(typo.isError).toBe(true);
        expect(typo.text).not.toMatch(/installing it again/);
        expect(mcp.engine.status.state).toBe('ready');

        const { db } = await mcp.engine.ready(60_000);
        await db.exec('DROP SCHEMA project_registry CASCADE');
        const first = await call('ensure_workspace', { project_id: 'after' });
        expect(first.isError).toBe(true);
        expect(first.text).toMatch(/registry \(schema project_registry\) is gone[\s\S]*installing it again now: retry the call[\s\S]*repair --adopt-orphans/);
        // Retried, as the message says: the reinstall is under way or done.
        let retried = await call('ensure_workspace', { project_id: 'after' });
        for (let i = 0; retried.isError && i < 50; i++) {
          await new Promise((resolve) => setTimeout(resolve, 200));
          retried = await call('ensure_workspace', { project_id: 'after' });
        }
        expect(retried.isError, retried.text).toBe(false);
        expect(retried.data).toMatchObject({ project_id: 'after', created: true });
        const listed = await call('list_workspaces', {});
        expect(listed.isError, listed.text).toBe(false);
        expect(JSON.stringify(listed.data)).toContain('"after"');
        // A workspace schema that outlived the registry is taken back, data and all, on its next use.
        const kept = await call('query', { project_id: 'before', sql: 'SELECT body FROM notes' });
        expect(kept.isError, kept.text).toBe(false);
        expect(kept.data['rows']).toEqual([['kept']]);
      } finally {
        await mcp.close();
      }
    }, 120_000);
  });
}
