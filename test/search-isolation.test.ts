import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/database.js';
import { INSTALL_LOCK_KEY } from '../src/installer/install-lock.js';
import { SESSION, startIsolationServer, type IsolationServer } from './support/isolation-snapshot.js';
import { startPgvectorCluster, type PgCluster } from './support/pg-cluster.js';

/*
 * search_vectors reads a table the agent owns, so whatever PostgreSQL runs while reading it
 * (a view's functions, row-level security policies, casts, operators) is agent code. Workspace
 * alpha plants such code with `execute`, then searches: each attempt must fail or return only
 * alpha's own rows, leak nothing of beta or the registry (not even in an error message), change
 * nothing outside alpha and leave the server's session clean.
 */

const CANARY = 'beta secret';
const TIMEOUT_MS = 5000;

/** A function of alpha's returning beta's notes (or raising them, with `raise`). */
const readBeta = (name: string, args = '', raise = false) =>
  `CREATE FUNCTION ${name}(${args}) RETURNS ${raise ? 'boolean' : 'text'} LANGUAGE plpgsql AS $f$ BEGIN ` +
  (raise
    ? `RAISE EXCEPTION 'leak: %', (SELECT string_agg(body, ',') FROM project_beta.notes); END $f$`
    : `RETURN (SELECT string_agg(body, ',') FROM project_beta.notes); END $f$`);
/** Runs DDL the execute tool does not take itself (CREATE CAST, CREATE POLICY) from alpha's own function. */
const viaFunction = (name: string, ddl: string) => [
  `CREATE FUNCTION ${name}() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN EXECUTE ${pg.escapeLiteral(ddl)}; END $f$`,
  `SELECT ${name}()`,
];
const table = (name: string, extra = '') => [
  `CREATE TABLE ${name} (id int PRIMARY KEY, embedding vector(3)${extra ? `, ${extra}` : ''})`,
  `INSERT INTO ${name} (id, embedding) VALUES (1, '[1,0,0]'), (2, '[0,1,0]')`,
];

interface Attack {
  name: string;
  setup: string[];
  search: Record<string, unknown>;
  /** The refusal, or the ids of alpha's rows the search may return. */
  expect: RegExp | number[];
}

const ATTACKS: Attack[] = [
  {
    name: "a table replaced by a view whose column reads beta's notes",
    setup: [
      ...table('docs'),
      readBeta('peek'),
      'ALTER TABLE docs RENAME TO docs_real',
      'CREATE VIEW docs AS SELECT d.id, d.embedding, peek() AS loot FROM docs_real d',
    ],
    search: { table: 'docs', column: 'embedding', vector: [1, 0, 0] },
    expect: /permission denied for schema project_beta/,
  },
  {
    name: 'a view reading the registry',
    setup: [
      ...table('reg_real'),
      "CREATE FUNCTION peek_registry() RETURNS text LANGUAGE plpgsql AS $f$ BEGIN RETURN (SELECT string_agg(schema_name || ':' || workspace_fingerprint, ',') FROM project_registry.workspace_config); END $f$",
      'CREATE VIEW reg_docs AS SELECT r.id, r.embedding, peek_registry() AS loot FROM reg_real r',
    ],
    search: { table: 'reg_docs', column: 'embedding', vector: [1, 0, 0] },
    expect: /permission denied for schema project_registry/,
  },
  {
    name: "row-level security (forced) whose policy raises beta's notes",
    setup: [
      ...table('rls_docs'),
      readBeta('rls_leak', 'int', true),
      'ALTER TABLE rls_docs ENABLE ROW LEVEL SECURITY',
      'ALTER TABLE rls_docs FORCE ROW LEVEL SECURITY',
      ...viaFunction('make_rls_policy', 'CREATE POLICY leak ON rls_docs USING (rls_leak(id))'),
    ],
    search: { table: 'rls_docs', column: 'embedding', vector: [1, 0, 0] },
    expect: /permission denied for schema project_beta/,
  },
  {
    name: "row-level security whose policy changes role and takes the install lock",
    setup: [
      ...table('rls_role'),
      `CREATE FUNCTION rls_role_check(int) RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN
         PERFORM set_config('role', 'none', false); PERFORM pg_advisory_lock(${INSTALL_LOCK_KEY}); RETURN true; END $f$`,
      'ALTER TABLE rls_role ENABLE ROW LEVEL SECURITY',
      'ALTER TABLE rls_role FORCE ROW LEVEL SECURITY',
      ...viaFunction('make_role_policy', 'CREATE POLICY swap ON rls_role USING (rls_role_check(id))'),
    ],
    search: { table: 'rls_role', column: 'embedding', vector: [1, 0, 0] },
    expect: /cannot set parameter "role" within security-definer function/,
  },
  {
    name: "a composite column whose cast to text reads beta's notes",
    setup: [
      'CREATE TYPE tagged AS (label text)',
      "CREATE FUNCTION tagged_text(tagged) RETURNS text LANGUAGE plpgsql AS $f$ BEGIN RETURN (SELECT string_agg(body, ',') FROM project_beta.notes); END $f$",
      ...viaFunction('make_cast', 'CREATE CAST (tagged AS text) WITH FUNCTION tagged_text(tagged)'),
      ...table('cast_docs', 'tag tagged'),
      "UPDATE cast_docs SET tag = ROW('mine')",
    ],
    search: { table: 'cast_docs', column: 'embedding', vector: [1, 0, 0] },
    expect: [1, 2],
  },
  {
    name: "alpha's own <-> operator (the search qualifies pgvector's)",
    setup: [
      ...table('op_docs'),
      readBeta('evil_distance', 'a vector, b vector', true),
      'CREATE OPERATOR <-> (LEFTARG = vector, RIGHTARG = vector, FUNCTION = evil_distance)',
    ],
    search: { table: 'op_docs', column: 'embedding', vector: [1, 0, 0], metric: 'l2' },
    expect: [1, 2],
  },
  {
    name: "alpha's own = operator on text (the filter qualifies pg_catalog's)",
    setup: [
      ...table('eq_docs', 'label text'),
      "UPDATE eq_docs SET label = 'x'",
      readBeta('evil_equals', 'a text, b text', true),
      'CREATE OPERATOR = (LEFTARG = text, RIGHTARG = text, FUNCTION = evil_equals)',
    ],
    search: { table: 'eq_docs', column: 'embedding', vector: [1, 0, 0], filter: { label: 'x' } },
    expect: [1, 2],
  },
];


let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgvectorCluster('search_vectors escapes');
}, 120_000);
afterAll(async () => cluster?.destroy());

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`search_vectors cannot escape a workspace on ${kind}`, () => {
    let server: IsolationServer | undefined;
    let serverDb: Database;
    let snapshot: () => Promise<string>;
    let fingerprints: string[] = [];
    const run = (name: string, args: Record<string, unknown>) => (server as IsolationServer).run(name, args);

    beforeAll(async () => {
      server = await startIsolationServer(kind, cluster, { role: 'mcp_search', databasePrefix: 'search_iso', statementTimeoutMs: TIMEOUT_MS, createVector: true });
      if (!server) return;
      ({ serverDb, snapshot } = server);
      for (const id of ['alpha', 'beta']) expect((await run('ensure_workspace', { project_id: id })).isError).toBe(false);
      const seeded = await run('execute', { project_id: 'beta', sql: `INSERT INTO notes (body) VALUES ('${CANARY}')` });
      expect(seeded.isError, seeded.text).toBe(false);
      fingerprints = (await server.asSuperuser<{ f: string }>('SELECT DISTINCT workspace_fingerprint AS f FROM project_registry.workspace_config')).map((r) => r.f);
      expect(fingerprints.length).toBeGreaterThan(0);
    }, 240_000);
    afterAll(async () => server?.close());

    for (const a of ATTACKS) {
      it(`stays inside: ${a.name}`, async (ctx) => {
        if (!server) ctx.skip();
        for (const sql of a.setup) {
          const done = await run('execute', { project_id: 'alpha', sql });
          expect(done.isError, `setup ${sql}: ${done.text}`).toBe(false);
        }
        const session = (await serverDb.query(SESSION))[0];
        const before = await snapshot();
        const result = await run('search_vectors', { project_id: 'alpha', ...a.search });
        const everything = `${result.text} ${JSON.stringify(result.data ?? {})}`;
        expect(everything).not.toContain(CANARY);
        for (const f of fingerprints) expect(everything).not.toContain(f);
        const ids = result.isError ? undefined : (result.data['matches'] as Array<{ row: { id: unknown } }>).map((m) => m.row.id);
        if (Array.isArray(a.expect)) {
          expect(result.isError, result.text).toBe(false);
          expect(ids).toEqual(a.expect);
        } else {
          expect(result.isError, `should have failed: ${result.text}`).toBe(true);
          expect(result.text).toMatch(a.expect);
        }
        expect(await snapshot()).toBe(before);
        expect((await serverDb.query(SESSION))[0]).toEqual(session);
        // The workspace still works afterwards.
        const after = await run('query', { project_id: 'alpha', sql: 'SELECT count(*)::int AS n FROM notes' });
        expect(after.isError, after.text).toBe(false);
      }, 60_000);
    }

    it('the distances are pgvector\'s own, with alpha\'s <-> in place', async (ctx) => {
      if (!server) ctx.skip();
      const result = await run('search_vectors', { project_id: 'alpha', table: 'op_docs', column: 'embedding', vector: [1, 0, 0], metric: 'l2', columns: ['id', 'embedding'] });
      expect(result.isError, result.text).toBe(false);
      expect(result.data['matches']).toEqual([
        { distance: 0, row: { id: 1, embedding: [1, 0, 0] } },
        { distance: expect.closeTo(Math.SQRT2, 6), row: { id: 2, embedding: [0, 1, 0] } },
      ]);
    });

    it('add_documents of one workspace holds at most PG_WORKSPACE_MAX_CALLS_PER_WORKSPACE connections at once', async (ctx) => {
      if (!server || kind !== 'postgres') return ctx.skip();
      const iso = server;
      for (const sql of [
        'CREATE FUNCTION slow_chunks() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $f$',
        'CREATE TRIGGER slow_chunks AFTER INSERT ON chunks FOR EACH STATEMENT EXECUTE FUNCTION slow_chunks()',
      ]) {
        const done = await run('execute', { project_id: 'alpha', sql });
        expect(done.isError, done.text).toBe(false);
      }
      try {
        // Twelve writes at once: one sleeps at a time (they update the same repository row), the
        // others wait for it, each holding a pooled connection; uncapped they took ten of ten.
        let writing = true;
        const writes = Promise.all(
          Array.from({ length: 12 }, (_, i) => run('add_documents', { project_id: 'alpha', documents: [{ source: `slow-${i}.md`, text: `slow document ${i}` }] })),
        ).finally(() => (writing = false));
        let most = 0;
        while (writing) {
          const [row] = await iso.asSuperuser<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'mcp_search' AND state = 'active'`);
          most = Math.max(most, row?.n ?? 0);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        for (const r of await writes) expect(r.isError, r.text).toBe(false);
        expect(most).toBeGreaterThan(1);
        expect(most).toBeLessThanOrEqual(4);
      } finally {
        await run('execute', { project_id: 'alpha', sql: 'DROP TRIGGER slow_chunks ON chunks' });
      }
    }, 120_000);
  });
}
