import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { FREE_SLOTS_SQL, NoFreeConnectionError, type SlotCount } from '../src/db/postgres/connection-room.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { silentLogger } from '../src/logger.js';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import { install, planFor } from './support/fixtures.js';
import { startPgBouncer } from './support/pgbouncer.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { startServerProcess, type ServerProcess } from './support/server-process.js';

/*
 * Issue 24 item 1: every stdio client starts a server of its own, and they share the database's
 * connection slots. A cluster with max_connections = 10 has fewer slots than servers.
 */
const MAX_CONNECTIONS = 10;
let cluster: PgCluster | null = null;

beforeAll(async () => {
  cluster = await startPgCluster({ settings: { max_connections: String(MAX_CONNECTIONS) } });
}, 90_000);

afterAll(async () => {
  await cluster?.destroy();
});

const server = (ctx: TestContext) => {
  if (!cluster) ctx.skip();
  return cluster as PgCluster;
};

/** Client sessions of our servers, counted by PostgreSQL. */
const ourSessions = async (c: PgCluster) =>
  Number((await c.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-workspace-mcp'`))[0]?.['n']);

/** Takes every free slot with plain connections, as other clients would. */
async function fillSlots(url: string): Promise<pg.Client[]> {
  const held: pg.Client[] = [];
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      held.push(client);
    } catch {
      await client.end().catch(() => undefined);
      return held;
    }
  }
}

describe('connection slots shared by many servers', () => {
  it('16 servers on max_connections = 10: every call of every server is served, together and one at a time', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('slots');
    const env = { DATABASE_URL: url, PG_WORKSPACE_LOG_LEVEL: 'error', PG_WORKSPACE_CONNECT_WAIT_MS: '30000' };
    const servers: ServerProcess[] = [];
    try {
      servers.push(...(await Promise.all(Array.from({ length: 16 }, () => startServerProcess(['--disable', 'codebase'], env)))));
      // All at once: each server boots and makes 15 calls at once (issue 24 measured 240 such calls).
      const together = await Promise.all(
        servers.map((s, n) =>
          Promise.all([
            ...Array.from({ length: 5 }, (_, i) => s.call('ensure_workspace', { project_id: `slot-${n}-${i}` })),
            ...Array.from({ length: 5 }, () => s.call('list_workspaces', { limit: 1 })),
            ...Array.from({ length: 5 }, () => s.call('workspace_status', {})),
          ]),
        ),
      );
      expect(together.flat().filter((r) => r.isError).map((r) => r.text)).toEqual([]);
      // Idle servers give their warm connections back while the database is short of slots
      // (they look every 5 s): at rest, slots stay free for whoever calls next.
      await new Promise((resolve) => setTimeout(resolve, 7_000));
      expect(await ourSessions(c)).toBeLessThanOrEqual(MAX_CONNECTIONS - 2);
      // One server at a time while the others idle: none is starved.
      for (const [n, s] of servers.entries()) {
        const result = await s.call('describe_workspace', { project_id: `slot-${n}-0` });
        expect(result.isError, `server ${n}: ${result.text}`).toBe(false);
      }
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  }, 240_000);

  it("counts other roles' sessions for a role that cannot see their details, and leaves it the reserved slots", async (ctx) => {
    const c = server(ctx);
    await c.sql('CREATE ROLE slot_counter LOGIN');
    const held = await Promise.all([0, 1].map(async () => {
      const client = new pg.Client({ connectionString: c.url('postgres') });
      await client.connect();
      return client;
    }));
    const counter = new pg.Client({ connectionString: c.url('postgres', 'slot_counter') });
    await counter.connect();
    try {
      const [count] = (await counter.query<SlotCount>(FREE_SLOTS_SQL)).rows;
      // superuser_reserved_connections (3) are not this role's; the two held and its own are taken.
      expect(count?.slots).toBe(MAX_CONNECTIONS - 3);
      expect(count?.free).toBeLessThanOrEqual(MAX_CONNECTIONS - 3 - 3);
    } finally {
      await counter.end();
      await Promise.all(held.map((client) => client.end()));
    }
  });

  it('a call that finds no free slot waits for one, and fails after its bound with what to do', async (ctx) => {
    const c = server(ctx);
    const url = await c.createDatabase('full');
    const db = new PostgresDatabase({ connectionString: url, connectWaitMs: 1_500, sharedSlots: true });
    const held = await fillSlots(url);
    try {
      expect(held.length).toBeGreaterThan(0);
      const started = Date.now();
      const refused = await db.query('SELECT 1').then(() => undefined, (error: unknown) => error);
      expect(refused).toBeInstanceOf(NoFreeConnectionError);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
      expect((refused as Error).message).toMatch(/has no free connection slot: sorry, too many clients already \(SQLSTATE 53300\); this call waited \d+ s/);
      expect((refused as Error).message).toContain('raise max_connections');
      // A slot that comes free while the call waits serves it.
      const waiting = db.query<{ one: number }>('SELECT 1 AS one');
      await new Promise((resolve) => setTimeout(resolve, 300));
      await held.pop()?.end();
      expect(await waiting).toEqual([{ one: 1 }]);
    } finally {
      await Promise.all(held.map((client) => client.end()));
      await db.close();
    }
  }, 60_000);
});

describe('connection slots behind PgBouncer in session mode', () => {
  it('8 servers through a pool of 20: every call is served before PgBouncer gives up waiting', async () => {
    // A cluster of its own with the harness's ample max_connections: here the pooler's pool is the limit.
    const ample = await startPgCluster();
    if (!ample) return;
    // Session mode: a client connection keeps a server connection until it closes. The issue
    // measured with PgBouncer's default 120 s wait; 30 s keeps the test short.
    const bouncer = await startPgBouncer(ample, { poolMode: 'session', poolSize: 20, queryWaitTimeoutS: 30 });
    const servers: ServerProcess[] = [];
    try {
      if (!bouncer) return;
      const env = { DATABASE_URL: bouncer.url(new URL(await ample.createDatabase('session')).pathname.slice(1)), PG_WORKSPACE_LOG_LEVEL: 'error' };
      servers.push(...(await Promise.all(Array.from({ length: 8 }, () => startServerProcess(['--disable', 'codebase'], env)))));
      const results = await Promise.all(
        servers.map((s, n) =>
          Promise.all([
            ...Array.from({ length: 10 }, (_, i) => s.call('ensure_workspace', { project_id: `session-${n}-${i}` })),
            ...Array.from({ length: 10 }, () => s.call('list_workspaces', { limit: 1 })),
          ]),
        ),
      );
      expect(results.flat().filter((r) => r.isError).map((r) => r.text)).toEqual([]);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
      await bouncer?.stop();
      await ample.destroy();
    }
  }, 180_000);

  it("a server passing between workspaces keeps one connection, not one per workspace: the pooler's pool is not PostgreSQL's room", async () => {
    const ample = await startPgCluster();
    if (!ample) return;
    // Two server connections; a client that waits 3 s for one is refused (query_wait_timeout).
    const bouncer = await startPgBouncer(ample, { poolMode: 'session', poolSize: 2, queryWaitTimeoutS: 3 });
    let db: PostgresDatabase | undefined;
    const [holder, other] = [0, 1].map(() => bouncer && new pg.Client({ connectionString: bouncer.url('postgres') }));
    try {
      if (!bouncer || !holder || !other) return;
      db = new PostgresDatabase({ connectionString: bouncer.url(new URL(await ample.createDatabase('passing')).pathname.slice(1)), sharedSlots: true });
      const plan = await planFor([], ['codebase']);
      const report = await install(db, plan);
      const { sandbox } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, silentLogger);
      const takeTurns = async () => {
        for (let round = 0; round < 2; round++) {
          for (const workspace of ['pass-a', 'pass-b', 'pass-c']) await sandbox.query(workspace, 'SELECT 1 AS one', []);
        }
      };
      // With one server connection left, the one kept for the last workspace makes room for the next.
      await holder.connect();
      await holder.query('SELECT 1');
      await takeTurns();
      await holder.end();
      // With two, between the calls another server's connection gets the second.
      await takeTurns();
      await other.connect();
      expect((await other.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await Promise.all([holder, other].map((c) => c?.end().catch(() => undefined)));
      await db?.close();
      await bouncer?.stop();
      await ample.destroy();
    }
  }, 120_000);
});
