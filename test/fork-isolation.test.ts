import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND_KINDS } from './support/backend-per-kind.js';
import { startIsolationServer } from './support/isolation-snapshot.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { POWER_OVER_SNAPSHOTS } from './support/snapshot-attacks.js';

/*
 * The escape suite's fork side: an agent attacks through the MCP tools only. A fork copies a
 * workspace by running a copy as a role that may, for that transaction, write the new
 * workspace and read (or own) the source; agent code the copy evaluates (here a CHECK
 * constraint validated as it is added) runs then with both. What it makes must not outlive the
 * fork as a bridge between the two workspaces: a trigger on the new workspace's table calling a
 * SECURITY DEFINER function of the source (every row the new workspace's agent writes lands in
 * the source), or a trigger on the source's table calling a function made in the new
 * workspace (which the fork hands to the new workspace's role: the source's agent runs code as
 * it). The fork is refused instead, and nothing of it is left. A snapshot's copy alike: what it
 * leaves must not let the agent change its snapshots.
 */

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 60_000);
afterAll(async () => cluster?.destroy());

/**
 * Workspace "evil": `plant()` runs when the fork's copy validates bait's CHECK, finds the schema it
 * may now create in (the fork's) and bridges it both ways.
 */
const PLANT = [
  'CREATE TABLE loot (v text)',
  'CREATE TABLE door (n int)',
  `CREATE FUNCTION spy() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = project_evil AS $f$ BEGIN
     INSERT INTO loot VALUES (NEW.body); RETURN NULL; END $f$`,
  `CREATE FUNCTION plant() RETURNS boolean LANGUAGE plpgsql AS $f$
   DECLARE target text := (SELECT nspname FROM pg_namespace WHERE nspname LIKE 'project\\_%' AND nspname <> 'project_evil'
                             AND has_schema_privilege(oid, 'CREATE') LIMIT 1);
   BEGIN
     IF target IS NULL THEN RETURN true; END IF;
     EXECUTE format('CREATE TRIGGER spy AFTER INSERT ON %I.notes FOR EACH ROW EXECUTE FUNCTION project_evil.spy()', target);
     EXECUTE format($b$CREATE FUNCTION %I.backdoor() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $d$ BEGIN
                      RAISE EXCEPTION 'stolen as %%: %%', current_user, (SELECT string_agg(body, ',') FROM %I.notes); END $d$$b$, target, target);
     EXECUTE format('CREATE TRIGGER backdoor AFTER INSERT ON project_evil.door FOR EACH ROW EXECUTE FUNCTION %I.backdoor()', target);
     -- An operator of the fork's whose negator (a link pg_depend does not record) is evil's.
     CREATE OPERATOR project_evil.!== (LEFTARG = text, RIGHTARG = text, FUNCTION = project_evil.differs);
     EXECUTE format('CREATE OPERATOR %I.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_catalog.texteq, NEGATOR = OPERATOR(project_evil.!==))', target);
     RETURN true;
   END $f$`,
  `CREATE FUNCTION differs(a text, b text) RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = project_evil AS $f$ BEGIN
     INSERT INTO loot VALUES (a); RETURN a <> b; END $f$`,
  'CREATE TABLE bait (n int CHECK (plant()))',
  'INSERT INTO bait VALUES (1)',
];

for (const kind of BACKEND_KINDS) {
  describe(`fork escape suite on ${kind}`, () => {
    it("a fork's copy leaves no bridge between the source and the new workspace", async (ctx) => {
      const server = await startIsolationServer(kind, cluster, { role: 'mcp_fork', databasePrefix: 'iso_fork', statementTimeoutMs: 5000, disabledExtensions: ['codebase'] });
      if (!server) return ctx.skip();
      try {
        for (const sql of PLANT) {
          const setup = await server.run('execute', { project_id: 'evil', sql });
          expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
        }
        const fork = await server.run('fork_workspace', { from: 'evil', to: 'victim' });
        if (!fork.isError) {
          // What the attack would do with it: the victim's rows land in evil's table, evil reads the victim's.
          await server.run('execute', { project_id: 'victim', sql: "INSERT INTO notes (body) VALUES ('victim secret')" });
          const loot = await server.run('query', { project_id: 'evil', sql: 'SELECT v FROM loot' });
          const door = await server.run('execute', { project_id: 'evil', sql: 'INSERT INTO door VALUES (1)' });
          expect.fail(`the fork went through: loot ${loot.text}; door ${door.text}`);
        }
        expect(fork.text).toContain('is refused: code the copy ran made objects that would link the two workspaces');
        expect(fork.text).toContain('trigger spy on table project_victim.notes depends on function project_evil.spy()');
        expect(fork.text).toContain('trigger backdoor on table project_evil.door depends on function project_victim.backdoor()');
        expect(fork.text).toContain('operator project_victim.===(text,text) is nothing a copy makes');
        // Nothing of it is left: no new workspace, no trigger on evil's door.
        expect(await server.asSuperuser("SELECT nspname FROM pg_namespace WHERE nspname = 'project_victim'")).toEqual([]);
        expect(await server.asSuperuser("SELECT tgname FROM pg_trigger WHERE tgrelid = 'project_evil.door'::regclass")).toEqual([]);
      } finally {
        await server.close();
      }
    }, 120_000);
  });
}

/**
 * Workspace "evil" against its own snapshots. The snapshot's copy runs as evil's role with CREATE
 * on the new snapshot's schema; `plant()`, run as the copy validates bait's CHECK, opens the
 * snapshot's table to PUBLIC and makes a view over it in evil's schema (bound by OID: no USAGE
 * on the snapshot's schema is checked when it runs), and opens the snapshot's sequence to PUBLIC
 * (setval takes its OID). The sandbox refuses such grants in the workspace's own schema only.
 */
const TAMPER = [
  `CREATE FUNCTION plant() RETURNS boolean LANGUAGE plpgsql AS $f$
   DECLARE target text := (SELECT nspname FROM pg_namespace WHERE nspname LIKE 'project\\_evil\\_\\_snap\\_%'
                             AND has_schema_privilege(oid, 'CREATE') LIMIT 1);
   BEGIN
     IF target IS NULL THEN RETURN true; END IF;
     EXECUTE format('GRANT SELECT, UPDATE ON %I.notes TO PUBLIC', target);
     EXECUTE format('GRANT UPDATE ON SEQUENCE %I.notes_id_seq TO PUBLIC', target);
     EXECUTE format('CREATE VIEW project_evil.peephole AS SELECT id, body FROM %I.notes', target);
     RETURN true;
   END $f$`,
  'CREATE TABLE bait (n int CHECK (plant()))',
  'INSERT INTO bait VALUES (1)',
  "INSERT INTO notes (body) VALUES ('as it was')",
];

for (const kind of BACKEND_KINDS) {
  describe(`snapshot escape suite on ${kind}`, () => {
    it("an agent cannot change its own snapshots through what their copy left (undo stays tamper-proof)", async (ctx) => {
      const server = await startIsolationServer(kind, cluster, { role: 'mcp_snaptamper', databasePrefix: 'iso_snaptamper', statementTimeoutMs: 5000, disabledExtensions: ['codebase'] });
      if (!server) return ctx.skip();
      try {
        for (const sql of TAMPER) {
          const setup = await server.run('execute', { project_id: 'evil', sql });
          expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
        }
        const snapshot = await server.run('snapshot_workspace', { project_id: 'evil' });
        if (!snapshot.isError) {
          const view = await server.run('execute', { project_id: 'evil', sql: "UPDATE peephole SET body = 'tampered'" });
          const sequence = await server.run('execute', {
            project_id: 'evil',
            sql: "SELECT setval((SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'project_evil__snap_1' AND c.relname = 'notes_id_seq')::regclass, 1000)",
          });
          const kept = await server.asSuperuser('SELECT body, (SELECT last_value FROM project_evil__snap_1.notes_id_seq) AS seq FROM project_evil__snap_1.notes');
          expect.fail(`the snapshot went through: view ${view.text}; setval ${sequence.text}; snapshot 1 now ${JSON.stringify(kept)}`);
        }
        expect(snapshot.text).toContain('The snapshot of "evil" is refused');
        expect(snapshot.text).toContain('depends on column body of table project_evil__snap_1.notes');
        expect(snapshot.text).toContain('table project_evil__snap_1.notes is granted to PUBLIC');
        expect(snapshot.text).toContain('sequence project_evil__snap_1.notes_id_seq is granted to PUBLIC');
        // Nothing of it is left: no snapshot, no view in evil's schema.
        expect(await server.asSuperuser("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'project\\_evil\\_\\_snap%'")).toEqual([]);
        expect(await server.asSuperuser("SELECT relname FROM pg_class WHERE relname = 'peephole'")).toEqual([]);
      } finally {
        await server.close();
      }
    }, 120_000);
  });
}

/**
 * Workspace "evil" against a snapshot it forks from. The fork's copy reads the snapshot; agent
 * code it evaluates (bait's CHECK, validated as the copy adds it to the fork) looks for every
 * snapshot of evil it can reach and tries to rewrite its rows, move its sequence, change its
 * table, and leave a view in evil's schema over what it read. None of it may touch the snapshot.
 */
const FORK_TAMPER = [
  "CREATE TABLE armed (mode text)",
  "INSERT INTO armed VALUES ('off')",
  `CREATE FUNCTION plant() RETURNS boolean LANGUAGE plpgsql AS $f$
   DECLARE s record;
   DECLARE mode text := (SELECT a.mode FROM project_evil.armed a);
   BEGIN
     IF mode = 'off' THEN RETURN true; END IF;
     FOR s IN SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname NOT IN ('project_evil', 'project_victim') AND c.relname IN ('notes', 'notes_id_seq')
                 AND has_schema_privilege(n.oid, 'USAGE') LOOP
       -- A column of the snapshot's type: after a restore, ALTER TYPE would reach the kept state.
       BEGIN EXECUTE format('CREATE TABLE project_evil.hold_mood (m %I.mood)', s.nspname); EXCEPTION WHEN OTHERS THEN NULL; END;
       CONTINUE WHEN mode = 'type';
       BEGIN EXECUTE format($$UPDATE %I.notes SET body = 'tampered'$$, s.nspname); EXCEPTION WHEN OTHERS THEN NULL; END;
       BEGIN EXECUTE format('ALTER TABLE %I.notes ADD COLUMN planted int', s.nspname); EXCEPTION WHEN OTHERS THEN NULL; END;
       BEGIN EXECUTE format('CREATE VIEW project_evil.%I AS SELECT * FROM %I.%I', format('hold_%s_%s', left(md5(s.nspname), 6), s.relname), s.nspname, s.relname);
       EXCEPTION WHEN OTHERS THEN NULL; END;
       BEGIN EXECUTE format('SELECT %I.power()', s.nspname); EXCEPTION WHEN OTHERS THEN NULL; END;
     END LOOP;
     FOR s IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname LIKE 'project\\_evil\\_\\_snap\\_%' AND c.relkind = 'S' LOOP
       BEGIN PERFORM setval(s.oid, 1000); EXCEPTION WHEN OTHERS THEN NULL; END;
     END LOOP;
     RETURN true;
   END $f$`,
  // Run as its owner: in the snapshot, the snapshot role, which owns every snapshot of evil.
  POWER_OVER_SNAPSHOTS,
  "CREATE TYPE mood AS ENUM ('ok')",
  'CREATE TABLE bait (n int CHECK (plant()))',
  'INSERT INTO bait VALUES (1)',
  "INSERT INTO notes (body) VALUES ('as it was'), ('and this')",
];

/** A snapshot's rows, sequence and columns, as a superuser reads them. */
const SNAPSHOT_1 = `SELECT (SELECT json_agg(n ORDER BY id) FROM project_evil__snap_1.notes n)::text AS rows,
  (SELECT last_value FROM project_evil__snap_1.notes_id_seq)::int AS seq,
  (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'project_evil__snap_1.notes'::regclass AND attnum > 0) AS columns,
  (SELECT count(*) FROM pg_depend WHERE refobjid IN (SELECT oid FROM pg_class WHERE relnamespace = 'project_evil__snap_1'::regnamespace)
      AND objid NOT IN (SELECT oid FROM pg_class WHERE relnamespace = 'project_evil__snap_1'::regnamespace)
      AND classid = 'pg_rewrite'::regclass)::int AS views_on_it,
  (SELECT prosecdef FROM pg_proc WHERE pronamespace = 'project_evil__snap_1'::regnamespace AND proname = 'power') AS definer`;

for (const kind of BACKEND_KINDS) {
  describe(`fork from a snapshot escape suite on ${kind}`, () => {
    it('agent code a fork from a snapshot runs cannot change that snapshot (undo stays as taken)', async (ctx) => {
      const server = await startIsolationServer(kind, cluster, { role: 'mcp_forksnap', databasePrefix: 'iso_forksnap', statementTimeoutMs: 5000, disabledExtensions: ['codebase'] });
      if (!server) return ctx.skip();
      try {
        for (const sql of FORK_TAMPER) {
          const setup = await server.run('execute', { project_id: 'evil', sql });
          expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
        }
        const snapshot = await server.run('snapshot_workspace', { project_id: 'evil' });
        expect(snapshot.isError, snapshot.text).toBe(false);
        const taken = await server.asSuperuser(SNAPSHOT_1);
        expect(taken).toEqual([{ rows: expect.stringContaining('as it was'), seq: 2, columns: 'id,body', views_on_it: 0, definer: true }]);
        const armed = async (mode: string) => {
          expect((await server.run('execute', { project_id: 'evil', sql: `UPDATE armed SET mode = '${mode}'` })).isError).toBe(false);
          const fork = await server.run('fork_workspace', { from: 'evil', to: 'victim', snapshot: 1 });
          // The snapshot is as it was taken, and nothing of evil's depends on it.
          expect(await server.asSuperuser(SNAPSHOT_1), fork.text).toEqual(taken);
          expect(await server.asSuperuser("SELECT relname FROM pg_class WHERE relname LIKE 'hold\\_%'"), fork.text).toEqual([]);
          return fork.text;
        };
        // Views over what it read, refused by their dependents; a column of the snapshot's type, by the check of the snapshot.
        expect(await armed('all')).toMatch(/is refused: code the copy ran made objects that depend on the snapshot it read \(view project_evil\.hold_/);
        expect(await armed('type')).toContain('column m of table project_evil.hold_mood depends on type project_evil__snap_1.mood');
        // The same fork from an unarmed workspace's snapshot goes through, the snapshot intact.
        expect((await server.run('execute', { project_id: 'evil', sql: "UPDATE armed SET mode = 'off'" })).isError).toBe(false);
        const again = await server.run('fork_workspace', { from: 'evil', to: 'victim', snapshot: 1 });
        expect(again.isError, JSON.stringify(again)).toBe(false);
        expect(await server.asSuperuser(SNAPSHOT_1)).toEqual(taken);
        const copied = await server.run('query', { project_id: 'victim', sql: 'SELECT body FROM notes ORDER BY id' });
        expect(copied.text).toContain('as it was');
        expect(await server.asSuperuser("SELECT prosecdef FROM pg_proc WHERE pronamespace = 'project_victim'::regnamespace AND proname = 'power'")).toEqual([{ prosecdef: true }]);
      } finally {
        await server.close();
      }
    }, 120_000);
  });
}

for (const kind of BACKEND_KINDS) {
  describe(`snapshot and fork time limit on ${kind}`, () => {
    it("agent code a snapshot's copy runs (a fork's alike) is bounded by the upgrade timeout", async (ctx) => {
      const server = await startIsolationServer(kind, cluster, {
        role: 'mcp_slowcopy',
        databasePrefix: 'iso_slowcopy',
        statementTimeoutMs: 1000,
        upgradeTimeoutMs: 1500,
        disabledExtensions: ['codebase'],
      });
      if (!server) return ctx.skip();
      try {
        // A CHECK the copy validates, sleeping once armed: the copy held a connection (on
        // PGlite the one session every workspace shares) and the workspace's lock that long.
        for (const sql of [
          'CREATE TABLE armed (on_ boolean)',
          'INSERT INTO armed VALUES (false)',
          `CREATE FUNCTION slow() RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN
             IF (SELECT on_ FROM project_alpha.armed) THEN PERFORM pg_catalog.pg_sleep(60); END IF; RETURN true; END $f$`,
          'CREATE TABLE bait (n int CHECK (slow()))',
          'INSERT INTO bait VALUES (1)',
          'UPDATE armed SET on_ = true',
        ]) {
          const setup = await server.run('execute', { project_id: 'alpha', sql });
          expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
        }
        // A fork's copy runs in the same bounded transaction (WorkspaceManager's copy wrapper).
        const started = performance.now();
        const outcome = await server.run('snapshot_workspace', { project_id: 'alpha' });
        const seconds = (performance.now() - started) / 1000;
        expect(outcome.isError).toBe(true);
        expect(outcome.text).toMatch(/statement timeout/);
        // The timeout, and on PGlite the store's reopening after it; far from the 60 s sleep.
        expect(seconds).toBeLessThan(8);
      } finally {
        await server.close();
      }
    }, 180_000);
  });
}

describe('snapshots and forks of one workspace cannot take every pooled connection (postgres)', () => {
  it("beta's query is served while alpha's twelve slow forks still run or wait", async (ctx) => {
    const server = await startIsolationServer('postgres', cluster, { role: 'mcp_busyfork', databasePrefix: 'iso_busyfork', statementTimeoutMs: 30_000, disabledExtensions: ['codebase'] });
    if (!server) return ctx.skip();
    try {
      for (const sql of [
        `CREATE FUNCTION slow() RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN
           IF current_user::text NOT LIKE '%alpha' OR current_setting('search_path') LIKE '%fork%' THEN PERFORM pg_catalog.pg_sleep(1); END IF; RETURN true; END $f$`,
        'CREATE TABLE bait (n int CHECK (slow()))',
      ]) {
        const setup = await server.run('execute', { project_id: 'alpha', sql });
        expect(setup.isError, `${sql}: ${setup.text}`).toBe(false);
      }
      await server.run('execute', { project_id: 'alpha', sql: 'INSERT INTO bait VALUES (1)' });
      expect((await server.run('query', { project_id: 'beta', sql: 'SELECT 1 AS warm' })).isError).toBe(false);
      // Twelve forks of alpha against a pool of 10 connections: each copy sleeps 1 s, one at a
      // time (alpha's lock), and every fork waiting for the lock held a connection.
      let alphaDone = 0;
      const forks = Array.from({ length: 12 }, (_, i) => server.run('fork_workspace', { from: 'alpha', to: `alpha-fork-${i}` }).finally(() => alphaDone++));
      const busy = async () =>
        (await server.asSuperuser<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'mcp_busyfork' AND state = 'active'`))[0]?.n ?? 0;
      while ((await busy()) < 4) await new Promise((resolve) => setTimeout(resolve, 20));
      const quick = await server.run('query', { project_id: 'beta', sql: 'SELECT count(*) AS n FROM notes' });
      expect(quick.isError, quick.text).toBe(false);
      expect(alphaDone).toBe(0);
      for (const r of await Promise.all(forks)) expect(r.isError, r.text).toBe(false);
    } finally {
      await server.close();
    }
  }, 240_000);
});
