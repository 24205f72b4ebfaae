import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dbUrlOf, SharedStore } from '../src/db/embedded/shared-store.js';
import { silentLogger } from '../src/logger.js';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import { install, planFor, tempDir } from './support/fixtures.js';

const IDLE_MS = 50;
/**
 * Index-expression code, function `name`, that takes a session advisory lock wherever it runs,
 * which outlives the statement (PostgreSQL refuses PREPARE there: a security-restricted operation).
 */
const stickyCode = (name: string) => `CREATE FUNCTION ${name}(n int) RETURNS int LANGUAGE sql IMMUTABLE
       AS $f$ SELECT n FROM (SELECT pg_catalog.pg_advisory_lock(4242)) AS locked $f$;`;
const opened: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).reverse().map((s) => s.close().catch(() => undefined)));
});

async function openStore(): Promise<{ store: SharedStore; dir: string }> {
  const dir = await tempDir('pgw-maintenance-');
  const store = await SharedStore.open(dir, silentLogger, { maintenanceIdleMs: IDLE_MS });
  opened.push(store);
  return { store, dir };
}

const vacuums = async (store: SharedStore, table = 't') =>
  (await store.query<{ n: number }>(`SELECT pg_catalog.pg_stat_get_vacuum_count($1::regclass)::int AS n`, [table]))[0]?.n ?? 0;

/** Polls (leaving the store idle in between) until the table has been vacuumed more than `before` times. */
async function vacuumedSince(store: SharedStore, before: number, table = 't'): Promise<number> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const now = await vacuums(store, table);
    if (now > before) return now;
    if (Date.now() > deadline) throw new Error(`the table was not vacuumed within 20 s of idleness (vacuum count still ${now})`);
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS * 2));
  }
}

describe('the embedded store maintains itself (PGlite has no autovacuum)', () => {
  it('a custom setting an index expression made during maintenance is no name to the workspace that called last', async () => {
    const { store } = await openStore();
    const plan = await planFor([], ['codebase']);
    const report = await install(store, plan);
    const { sandbox } = sandboxedWorkspaces(store, plan, report.searchPathSchemas, silentLogger);
    // A table whose index expression leaves a placeholder when the store's ANALYZE evaluates it
    // (not when the rows go in), and counts those runs in a sequence (which no rollback or new
    // session undoes). The sandbox refuses such an index to an agent; a table made outside the
    // tools may have one.
    await store.exec(`CREATE SEQUENCE analyze_runs;
      CREATE FUNCTION mark(n int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
        BEGIN
          IF pg_catalog.current_query() LIKE 'ANALYZE%' THEN
            PERFORM pg_catalog.set_config('x.from_index', '1', false), pg_catalog.nextval('public.analyze_runs');
          END IF;
          RETURN n;
        END $f$;
      CREATE TABLE marked (id int); CREATE INDEX ON marked ((mark(id)));`);
    const read = "SELECT current_setting('x.from_index', true) AS seen";
    expect((await sandbox.query('maint-a', read, [])).rows).toEqual([[null]]);
    await store.exec('INSERT INTO marked SELECT g FROM generate_series(1, 500) g');
    // a calls, the store analyzes the table when idle, a calls again: a is the last to have called
    // before the ANALYZE, and never reads the name.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const [runs] = await store.query<{ ran: boolean }>('SELECT is_called AS ran FROM analyze_runs');
      expect((await sandbox.query('maint-a', read, [])).rows).toEqual([[null]]);
      if (runs?.ran) break;
      if (Date.now() > deadline) throw new Error('the table was not analyzed within 20 s');
      // Long enough for a pass (which gives way to a call waiting) to finish.
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS * 10));
    }
  });

  it('vacuums and analyzes a table that keeps being updated, when idle: it stays within about twice its fresh size and has statistics', async () => {
    const { store } = await openStore();
    await store.exec(
      `CREATE TABLE t (id int PRIMARY KEY, note text);
       INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g;`,
    );
    const size = async () => (await store.query<{ bytes: number }>(`SELECT pg_catalog.pg_table_size('t')::int AS bytes`))[0]?.bytes ?? 0;
    const fresh = await size();
    let count = await vacuums(store);
    for (let round = 1; round <= 10; round++) {
      await store.exec(`UPDATE t SET note = repeat('${round % 10}', 200)`);
      count = await vacuumedSince(store, count);
    }
    // Without maintenance: eleven versions of every row, about 11 times the fresh size.
    expect(await size()).toBeLessThanOrEqual(fresh * 2.2);
    const [stats] = await store.query<{ analyzed: boolean; rows: number; columns: number }>(
      `SELECT s.last_analyze IS NOT NULL AS analyzed, c.reltuples::int AS rows,
              (SELECT count(*)::int FROM pg_catalog.pg_stats WHERE schemaname = 'public' AND tablename = 't') AS columns
         FROM pg_catalog.pg_stat_user_tables s JOIN pg_catalog.pg_class c ON c.oid = s.relid WHERE s.relname = 't'`,
    );
    expect(stats).toEqual({ analyzed: true, rows: 5000, columns: 2 });
  });

  it('maintains a store in constant use too, between two calls, when no idle moment came for ten idle intervals', async () => {
    const { store } = await openStore();
    await store.exec(
      `CREATE TABLE t (id int PRIMARY KEY, note text);
       INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;`,
    );
    const fresh = (await store.query<{ bytes: number }>(`SELECT pg_catalog.pg_table_size('t')::int AS bytes`))[0]?.bytes ?? 0;
    const before = await vacuums(store);
    // Back to back, never idle for IDLE_MS: each UPDATE takes longer than that on its own.
    for (let round = 1; round <= 10; round++) await store.exec(`UPDATE t SET note = repeat('${round % 10}', 200)`);
    const [after] = await store.query<{ n: number; bytes: number }>(
      `SELECT pg_catalog.pg_stat_get_vacuum_count('t'::regclass)::int AS n, pg_catalog.pg_table_size('t')::int AS bytes`,
    );
    expect(after?.n).toBeGreaterThan(before);
    // Eleven versions of every row without maintenance.
    expect(after?.bytes).toBeLessThan(fresh * 8);
  });

  /**
   * One store for the cases that each watch a table of their own (and name their own functions and
   * roles): each store is a PGlite start. The first two keep stores of their own, since their
   * tables' sizes and vacuum timing are what they measure.
   */
  describe('on one store, a table each', () => {
    let shared: { store: SharedStore; dir: string };
    beforeAll(async () => {
      const dir = await tempDir('pgw-maintenance-');
      shared = { store: await SharedStore.open(dir, silentLogger, { maintenanceIdleMs: IDLE_MS }), dir };
    });
    afterAll(async () => shared.store.close());

    it("leaves no session advisory lock of a table's own code behind on the shared session", async () => {
      const { store } = shared;
      // Index expressions run during VACUUM and ANALYZE, as the table's owner: a workspace's may do this.
      await store.exec(
        `${stickyCode('sticky_locks')}
         CREATE TABLE t_locks (id int PRIMARY KEY, note text);
         CREATE INDEX ON t_locks ((sticky_locks(id)));
         SELECT pg_catalog.pg_advisory_unlock_all();`,
      );
      await store.exec(`INSERT INTO t_locks SELECT g, 'x' FROM generate_series(1, 2000) g; SELECT pg_catalog.pg_advisory_unlock_all();`);
      const before = await vacuums(store, 't_locks');
      await store.exec(`UPDATE t_locks SET note = 'y'; SELECT pg_catalog.pg_advisory_unlock_all();`);
      await vacuumedSince(store, before, 't_locks');
      expect(await store.query(`SELECT count(*)::int AS n FROM pg_catalog.pg_locks WHERE locktype = 'advisory'`)).toEqual([{ n: 0 }]);
    });

    it("leaves neither random()'s seed nor a sequence's lastval of a table's own code on the shared session", async () => {
      const { store } = shared;
      // An index expression (IMMUTABLE by its author's word) that seeds random() and draws from a
      // sequence whenever VACUUM or ANALYZE evaluates it: the next workspace on the session would
      // draw random() numbers this one decided, and lastval() would name its sequence.
      await store.exec(
        `CREATE SEQUENCE drawn;
         CREATE FUNCTION seeding(n int) RETURNS int LANGUAGE sql IMMUTABLE
           AS $f$ SELECT n FROM (SELECT pg_catalog.setseed(0.5), pg_catalog.nextval('public.drawn')) AS s $f$;
         CREATE TABLE t_seed (id int PRIMARY KEY, note text);
         CREATE INDEX ON t_seed ((seeding(id)));
         INSERT INTO t_seed SELECT g, 'x' FROM generate_series(1, 2000) g;`,
      );
      await store.exec('DISCARD SEQUENCES');
      const before = await vacuums(store, 't_seed');
      await store.exec(`UPDATE t_seed SET note = 'y'`);
      await store.exec('DISCARD SEQUENCES');
      await vacuumedSince(store, before, 't_seed');
      const [after] = await store.query<{ r: number }>('SELECT random() AS r');
      const lastval = await store.query('SELECT lastval()').then(() => 'defined', (error: Error) => error.message);
      await store.exec('SELECT setseed(0.5)');
      const [seeded] = await store.query<{ r: number }>('SELECT random() AS r');
      expect(after?.r).not.toBe(seeded?.r);
      expect(lastval).toMatch(/lastval is not yet defined in this session/);
    });

    it("never runs inside a socket client's open transaction: it waits for the commit", async () => {
      const { store, dir } = shared;
      await store.exec(`CREATE TABLE t_txn (id int PRIMARY KEY, note text); INSERT INTO t_txn SELECT g, 'x' FROM generate_series(1, 2000) g`);
      const before = await vacuumedSince(store, 0, 't_txn');
      const client = new pg.Client({ connectionString: dbUrlOf(dir) });
      client.on('error', () => undefined);
      await client.connect();
      opened.push({ close: () => client.end() });
      await client.query('BEGIN');
      await client.query(`UPDATE t_txn SET note = 'y'`);
      // The transaction stays open, idle, for many idle intervals; the count is read inside it.
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS * 20));
      await client.query('SET LOCAL stats_fetch_consistency = none');
      const during = await client.query<{ n: number }>(`SELECT pg_catalog.pg_stat_get_vacuum_count('t_txn'::regclass)::int AS n`);
      expect(during.rows[0]?.n).toBe(before);
      await client.query('COMMIT');
      expect(await vacuumedSince(store, before, 't_txn')).toBe(before + 1);
    });

    it('runs a VACUUM for a workspace role outside any transaction, on the owner and through the socket, and leaves no role behind', async () => {
      const { store, dir } = shared;
      const client = await SharedStore.open(dir, silentLogger);
      opened.push(client);
      expect(client.owner).toBe(false);
      await store.exec(`${stickyCode('sticky_role')}
        CREATE ROLE w NOLOGIN; CREATE TABLE t_role (id int); CREATE INDEX ON t_role ((sticky_role(id))); ALTER TABLE t_role OWNER TO w; INSERT INTO t_role VALUES (1);
        SELECT pg_catalog.pg_advisory_unlock_all();`);
      const leftovers = `SELECT count(*)::int AS locks FROM pg_catalog.pg_locks WHERE locktype = 'advisory'`;
      const before = await vacuums(store, 't_role');
      // ANALYZE runs the index expression, as w (the table's owner).
      await store.runAsRole('w', 'VACUUM (ANALYZE) public.t_role', 1000);
      expect(await store.query(leftovers)).toEqual([{ locks: 0 }]);
      await client.runAsRole('w', 'VACUUM (ANALYZE) public.t_role', 1000);
      expect(await client.query(leftovers)).toEqual([{ locks: 0 }]);
      expect(await vacuums(store, 't_role')).toBe(before + 2);
      // A failing statement too: the session is the server's again afterwards.
      await expect(store.runAsRole('w', 'VACUUM public.missing', 1000)).rejects.toThrow(/does not exist/);
      expect(await store.query('SELECT current_user AS who')).toEqual([{ who: 'postgres' }]);
      expect(await client.query('SELECT current_user AS who')).toEqual([{ who: 'postgres' }]);
    });
  });
});
