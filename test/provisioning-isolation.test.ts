import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { tempDir, writeExtension } from './support/fixtures.js';
import { callTool, connectInProcess } from './support/mcp.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { runCli, startServerProcess, type ServerProcess } from './support/server-process.js';

/*
 * The escape suite's provisioning side: an agent attacks through the MCP tools only, with its
 * server restricted (--allow-project) to its own id, and aims at what the server itself does
 * later with the objects the agent made or the names it chose: the role its id maps to, a schema
 * the server takes back or adopts, a workspace upgrade. sql-isolation.test.ts covers what an
 * agent's own statements can reach.
 */

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 120_000);
afterAll(async () => cluster?.destroy());

async function notesExtension(): Promise<string> {
  return writeExtension(await tempDir(), { id: 'notes' }, {
    'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);',
  });
}

/**
 * One database and a way to serve project ids on it, each server allowed one id: on PostgreSQL
 * built servers as child processes on a fresh database of the throwaway cluster, as a role with
 * CREATEROLE (not a superuser). On PGlite one in-process server allowed the ids it is asked for:
 * two processes sharing one embedded store (one serving it to the other over its socket) lose
 * query results now and then (see docs/embedded-store.md), which these tests are not about.
 */
async function sharedDatabase(kind: 'pglite' | 'postgres', ctx: TestContext, prefix: string, ids: readonly string[]) {
  const notes = await notesExtension();
  if (kind === 'pglite') {
    const mcp = await connectInProcess({ extensionDirs: [notes], allowedProjects: [...ids] });
    const server: Served = { call: (name, args) => callTool(mcp.client, mcp.tools, name, args), close: async () => {} };
    return { serve: async (_id: string) => server, close: () => mcp.close(), superuserUrl: undefined, env: undefined };
  }
  if (!cluster) ctx.skip();
  const running = cluster as PgCluster;
  const url = await running.createDatabase(prefix);
  const database = new URL(url).pathname.slice(1);
  await running.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcp_prov') THEN CREATE ROLE mcp_prov LOGIN CREATEROLE; END IF; END $$`);
  await running.sql(`GRANT CREATE ON DATABASE ${database} TO mcp_prov`);
  const env = { PG_WORKSPACE_LOG_LEVEL: 'warn', DATABASE_URL: running.url(database, 'mcp_prov') };
  return {
    serve: (id: string): Promise<Served> => startServerProcess(['--extensions', notes, '--disable', 'codebase', '--allow-project', id], env),
    close: async () => {},
    superuserUrl: url,
    env: { ...env, PG_WORKSPACE_EXTENSIONS: notes, PG_WORKSPACE_DISABLED_EXTENSIONS: 'codebase' },
  };
}

interface Served {
  call: ServerProcess['call'];
  close(): Promise<void>;
}

const run = (server: Served, name: string, args: Record<string, unknown>) => server.call(name, args);

// The pair: the victim's 51-character id was named by 41 characters, "_" and 32 bits of
// its sha256 (c7cfb544); the attacker's 50-character id spells out the same name.
const VICTIM = 'acme-corp-payments-service-production-embeddings-v2';
const ATTACKER = 'acme-corp-payments-service-production-emb-c7cfb544';
const VICTIM_SCHEMA = `project_${VICTIM.replaceAll('-', '_')}`;

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`provisioning cannot be turned against another workspace on ${kind}`, () => {
    it('two project ids never share a role: a crafted id can neither read, write nor drop another workspace', async (ctx) => {
      const db = await sharedDatabase(kind, ctx, 'prov_roles', [VICTIM, ATTACKER]);
      const victim = await db.serve(VICTIM);
      const attacker = await db.serve(ATTACKER);
      try {
        const seeded = await run(victim, 'execute', { project_id: VICTIM, sql: "INSERT INTO notes (body) VALUES ('victim secret')" });
        expect(seeded.isError, seeded.text).toBe(false);

        const read = await run(attacker, 'query', { project_id: ATTACKER, sql: `SELECT body FROM ${VICTIM_SCHEMA}.notes` });
        expect(read.isError, `the attacker read the victim's table: ${read.text}`).toBe(true);
        expect(read.text).toMatch(/permission denied for schema/);
        const write = await run(attacker, 'execute', { project_id: ATTACKER, sql: `DELETE FROM ${VICTIM_SCHEMA}.notes` });
        expect(write.isError, write.text).toBe(true);
        const roles = await run(attacker, 'query', { project_id: ATTACKER, sql: 'SELECT current_user AS me' });
        const mine = await run(victim, 'query', { project_id: VICTIM, sql: 'SELECT current_user AS me' });
        expect(roles.data['rows']).not.toEqual(mine.data['rows']);

        // The attacker's drop takes its own role with it, and nothing of the victim's.
        const dropped = await run(attacker, 'drop_workspace', { project_id: ATTACKER, confirm: ATTACKER });
        expect(dropped.isError, dropped.text).toBe(false);
        const after = await run(victim, 'query', { project_id: VICTIM, sql: 'SELECT body FROM notes' });
        expect(after.isError, after.text).toBe(false);
        expect(after.data['rows']).toEqual([['victim secret']]);
      } finally {
        await attacker.close();
        await victim.close();
        await db.close();
      }
    }, 240_000);
  });
}

describe('a role two workspaces share (the naming of before 2026-12) on postgres', () => {
  it('doctor reports it; the first SQL call gives the workspace it is not recorded for a role of its own, with its objects', async (ctx) => {
    const db = await sharedDatabase('postgres', ctx, 'prov_shared', []);
    for (const id of ['alpha', 'beta']) {
      const s = await db.serve(id);
      expect((await run(s, 'execute', { project_id: id, sql: `INSERT INTO notes (body) VALUES ('${id} note')` })).isError).toBe(false);
      await s.close();
    }
    // What an older server left when two ids mapped to one role: beta's objects and schema
    // privileges are alpha's role's, beta's registry row records none.
    const admin = new pg.Client({ connectionString: db.superuserUrl });
    await admin.connect();
    try {
      const roles = Object.fromEntries(
        (await admin.query<{ project_id: string; role_name: string }>('SELECT project_id, role_name FROM project_registry.workspace_config')).rows.map((r) => [r.project_id, r.role_name]),
      );
      const [shared, own] = [JSON.stringify(roles['alpha']), JSON.stringify(roles['beta'])];
      await admin.query(`DROP FUNCTION project_registry_sandbox.project_beta(text, text, integer, integer);
        ALTER TABLE project_beta.notes OWNER TO ${shared};
        REVOKE ALL ON SCHEMA project_beta FROM ${own}; GRANT USAGE, CREATE ON SCHEMA project_beta TO ${shared};
        DROP ROLE ${own};
        UPDATE project_registry.workspace_config SET role_name = NULL WHERE project_id = 'beta'`);
      const doctor = JSON.parse((await runCli(['doctor', '--json'], db.env ?? {})).stdout) as { findings: { code: string; details: Record<string, unknown> }[] };
      expect(doctor.findings.filter((f) => f.code === 'shared-role').map((f) => f.details)).toEqual([
        { role: roles['alpha'], schemas: ['project_alpha', 'project_beta'], databases: [] },
      ]);

      const alpha = await db.serve('alpha');
      const beta = await db.serve('beta');
      try {
        const peek = await run(alpha, 'query', { project_id: 'alpha', sql: 'SELECT body FROM project_beta.notes' });
        expect(peek.isError, `alpha still reads beta: ${peek.text}`).toBe(true);
        expect(peek.text).toMatch(/permission denied for schema project_beta/);
        const mine = await run(beta, 'query', { project_id: 'beta', sql: 'SELECT body, current_user AS me FROM notes' });
        expect(mine.isError, mine.text).toBe(false);
        expect(mine.data['rows']).toEqual([['beta note', expect.not.stringMatching(roles['alpha'] as string)]]);
        const theirs = await run(beta, 'query', { project_id: 'beta', sql: 'SELECT body FROM project_alpha.notes' });
        expect(theirs.text).toMatch(/permission denied for schema project_alpha/);
      } finally {
        await alpha.close();
        await beta.close();
      }
      const after = JSON.parse((await runCli(['doctor', '--json'], db.env ?? {})).stdout) as { findings: { code: string }[] };
      expect(after.findings.map((f) => f.code)).not.toContain('shared-role');
    } finally {
      await admin.end();
    }
  }, 240_000);
});


/**
 * One in-process server on a fresh database (PostgreSQL: as a role with CREATEROLE, not a
 * superuser), with the `notes` workspace table and a workspace migration that updates it (so
 * that re-running the migrations fires whatever an agent put on the table), and a superuser.
 */
async function serverWithAdmin(kind: 'pglite' | 'postgres', ctx: TestContext, prefix: string) {
  const notes = await writeExtension(await tempDir(), { id: 'notes' }, {
    'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);',
    'workspace/migrations/0001_touch.sql': 'UPDATE notes SET body = body;',
  });
  let admin: pg.Client | undefined;
  let databaseUrl: string | undefined;
  if (kind === 'postgres') {
    if (!cluster) ctx.skip();
    const running = cluster as PgCluster;
    const url = await running.createDatabase(prefix);
    const database = new URL(url).pathname.slice(1);
    await running.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcp_prov') THEN CREATE ROLE mcp_prov LOGIN CREATEROLE; END IF; END $$`);
    await running.sql(`GRANT CREATE ON DATABASE ${database} TO mcp_prov`);
    databaseUrl = running.url(database, 'mcp_prov');
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
  }
  const mcp = await connectInProcess({ extensionDirs: [notes], ...(databaseUrl ? { databaseUrl, disabledExtensions: ['codebase'] } : {}) });
  const { db } = await mcp.engine.ready(120_000);
  return {
    call: (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args),
    /** PGlite's session user is a superuser; on PostgreSQL the admin connection. */
    asSuperuser: async <R>(sql: string) => (admin ? (await admin.query(sql)).rows : await db.query(sql)) as R[],
    async close() {
      await admin?.end();
      await mcp.close();
    },
  };
}

const SERVER_ONLY = /^(postgres|mcp_prov)$/;

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`the server never runs agent code, nor takes what is not its own, on ${kind}`, () => {
    it('a workspace taken back after its registry row was lost runs its migrations as the workspace role: an agent trigger gets nothing', async (ctx) => {
      const s = await serverWithAdmin(kind, ctx, 'prov_takeback');
      try {
        const setup = [
          "INSERT INTO notes (body) VALUES ('x')",
          'CREATE TABLE witness (who text, loot text)',
          // Swallows its own failures, so that the take-back succeeds whoever it runs as.
          `CREATE FUNCTION spy() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN
             INSERT INTO witness (who) VALUES (current_user::text);
             BEGIN
               INSERT INTO witness (loot) SELECT body FROM project_beta.notes;
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
             RETURN NEW; END $f$`,
          'CREATE TRIGGER spy BEFORE UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION spy()',
        ];
        for (const sql of setup) expect((await s.call('execute', { project_id: 'alpha', sql })).isError, sql).toBe(false);
        expect((await s.call('execute', { project_id: 'beta', sql: "INSERT INTO notes (body) VALUES ('beta secret')" })).isError).toBe(false);

        // The registry row is lost (a restore, a mistake); the schema, with the agent's trigger, stays.
        await s.asSuperuser(`DELETE FROM project_registry.workspace_config WHERE project_id = 'alpha'`);
        await s.asSuperuser(`INSERT INTO project_registry.registry_generation AS g (singleton, generation) VALUES (true, 1)
                             ON CONFLICT (singleton) DO UPDATE SET generation = g.generation + 1`);
        const back = await s.call('ensure_workspace', { project_id: 'alpha' });
        expect(back.isError, back.text).toBe(false);

        const seen = await s.asSuperuser<{ who: string | null; loot: string | null }>('SELECT who, loot FROM project_alpha.witness');
        // The migration's UPDATE did fire the trigger, as the workspace's role.
        expect(seen.filter((r) => r.who !== null).length).toBeGreaterThan(0);
        for (const r of seen) {
          expect(r.who ?? '', 'the agent trigger ran as the server').not.toMatch(SERVER_ONLY);
          expect(r.loot, 'the agent trigger read another workspace').toBeNull();
        }
        const mine = await s.call('query', { project_id: 'alpha', sql: 'SELECT body FROM notes' });
        expect(mine.data['rows']).toEqual([['x']]);
      } finally {
        await s.close();
      }
    }, 240_000);

    it('a password an agent sets on its own role never authenticates: the role is expired for good, which it cannot undo', async (ctx) => {
      const s = await serverWithAdmin(kind, ctx, 'prov_password');
      try {
        const steps = [
          `CREATE FUNCTION set_password() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER PASSWORD ''agent'''; END $f$`,
          `CREATE FUNCTION unexpire() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER VALID UNTIL ''infinity'''; END $f$`,
        ];
        for (const sql of steps) expect((await s.call('execute', { project_id: 'alpha', sql })).isError, sql).toBe(false);
        // PostgreSQL lets any role set its own password (on Citus the role may log in)...
        expect((await s.call('execute', { project_id: 'alpha', sql: 'SELECT set_password()' })).isError).toBe(false);
        // ...but not its expiry.
        const unexpired = await s.call('execute', { project_id: 'alpha', sql: 'SELECT unexpire()' });
        expect(unexpired.isError).toBe(true);
        expect(unexpired.text).toMatch(/permission denied/);
        const [role] = await s.asSuperuser<{ expired: boolean }>(
          `SELECT rolvaliduntil = '-infinity' AS expired FROM pg_roles r JOIN project_registry.workspace_config w ON w.role_name = r.rolname WHERE w.project_id = 'alpha'`,
        );
        expect(role).toEqual({ expired: true });
      } finally {
        await s.close();
      }
    }, 240_000);

    it('a schema named like a workspace that the server did not make is refused, naming it, and left as it was', async (ctx) => {
      const s = await serverWithAdmin(kind, ctx, 'prov_foreign');
      try {
        // The application shares the server's role (on PGlite everyone is its one user).
        const app = kind === 'postgres' ? ['SET ROLE mcp_prov'] : [];
        for (const sql of [...app, 'CREATE SCHEMA project_billing', 'CREATE TABLE project_billing.invoices (amount int)', 'INSERT INTO project_billing.invoices VALUES (4200)']) {
          await s.asSuperuser(sql);
        }
        if (kind === 'postgres') await s.asSuperuser('RESET ROLE');
        const state = `SELECT n.nspowner::regrole::text AS schema_owner, c.relowner::regrole::text AS table_owner, n.nspacl::text AS acl,
                              (SELECT count(*)::int FROM project_billing.invoices) AS rows,
                              (SELECT count(*)::int FROM project_registry.workspace_config WHERE project_id = 'billing') AS registered
                         FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'invoices' WHERE n.nspname = 'project_billing'`;
        const before = await s.asSuperuser(state);
        const ensured = await s.call('ensure_workspace', { project_id: 'billing' });
        expect(ensured.isError, `adopted: ${ensured.text}`).toBe(true);
        expect(ensured.text).toMatch(/Schema project_billing exists but was not made by pg-workspace-mcp/);
        expect(ensured.text).toContain('repair --adopt-orphans');
        const read = await s.call('query', { project_id: 'billing', sql: 'SELECT amount FROM invoices' });
        expect(read.isError, `read through query: ${read.text}`).toBe(true);
        expect(read.text).toMatch(/project_billing/);
        expect(await s.asSuperuser(state)).toEqual(before);
        // Other ids are served as ever.
        expect((await s.call('ensure_workspace', { project_id: 'billing-2' })).isError).toBe(false);
      } finally {
        await s.close();
      }
    }, 240_000);
  });
}

describe('a database renamed, and another made under its old name (postgres)', () => {
  it('the renamed database keeps its workspace roles; the new one never takes them over', async (ctx) => {
    if (!cluster) return ctx.skip();
    const running = cluster;
    const extensionDirs = [await notesExtension()];
    await running.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcp_prov') THEN CREATE ROLE mcp_prov LOGIN CREATEROLE; END IF; END $$`);
    const serve = async (database: string) => {
      await running.sql(`GRANT CREATE ON DATABASE ${database} TO mcp_prov`);
      const mcp = await connectInProcess({ extensionDirs, databaseUrl: running.url(database, 'mcp_prov'), disabledExtensions: ['codebase'] });
      return { call: (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args), close: () => mcp.close() };
    };
    const whoAmI = 'SELECT current_user::text AS me, (SELECT count(*)::int FROM notes) AS notes';
    const name = new URL(await running.createDatabase('prov_renamed')).pathname.slice(1);
    const before = await serve(name);
    let role: unknown;
    try {
      expect((await before.call('execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('kept')" })).isError).toBe(false);
      role = ((await before.call('query', { project_id: 'alpha', sql: whoAmI })).data['rows'] as unknown[][])[0]?.[0];
    } finally {
      await before.close();
    }
    await running.sql(`ALTER DATABASE ${name} RENAME TO ${name}_old`);
    await running.sql(`CREATE DATABASE ${name}`);

    const renamed = await serve(`${name}_old`);
    try {
      const again = await renamed.call('query', { project_id: 'alpha', sql: whoAmI });
      expect(again.isError, again.text).toBe(false);
      expect(again.data['rows']).toEqual([[role, 1]]);
    } finally {
      await renamed.close();
    }
    const reused = await serve(name);
    try {
      // Same id, same database name: the role name the naming gives is the renamed database's role.
      const refused = await reused.call('query', { project_id: 'alpha', sql: whoAmI });
      expect(refused.isError, `the new database's agent ran as ${String(role)}: ${refused.text}`).toBe(true);
      expect(refused.text).toContain(`The PostgreSQL role ${String(role)} that workspace project_alpha would run as already serves database ${name}_old`);
    } finally {
      await reused.close();
    }
  }, 240_000);
});

/** The role name of before 2026-12 (what core migration 0003 computes in SQL), as the server computed it then. */
function legacyRoleName(database: string, projectId: string): string {
  const prefix = `pgw_${createHash('sha256').update(database).digest('hex').slice(0, 8)}_`;
  const id = projectId.replaceAll('-', '_');
  if (Buffer.byteLength(prefix + id) <= 63) return prefix + id;
  return `${prefix}${id.slice(0, 63 - prefix.length - 9)}_${createHash('sha256').update(projectId).digest('hex').slice(0, 8)}`;
}

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`core migration 0003 on a registry of before 2026-12 (${kind})`, () => {
    it('records each existing role as it was named, and a role two ids shared for the id that spells it out', async (ctx) => {
      const s = await serverWithAdmin(kind, ctx, 'prov_migration');
      try {
        const ids = [VICTIM, ATTACKER, 'plain', 'no-role-yet'];
        for (const id of ids) expect((await s.call('ensure_workspace', { project_id: id })).isError).toBe(false);
        const [{ database }] = (await s.asSuperuser<{ database: string }>('SELECT current_database() AS database')) as [{ database: string }];
        // As an older server left it: roles named the old way (the crafted pair share one), none recorded.
        for (const id of [VICTIM, 'plain']) {
          await s.asSuperuser(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${legacyRoleName(database, id)}') THEN CREATE ROLE "${legacyRoleName(database, id)}" NOLOGIN; END IF; END $$`);
        }
        expect(legacyRoleName(database, VICTIM)).toBe(legacyRoleName(database, ATTACKER));
        await s.asSuperuser('UPDATE project_registry.workspace_config SET role_name = NULL');
        const migration = await readFile(new URL('../extensions/core/migrations/0003_workspace_role_name.sql', import.meta.url), 'utf8');
        for (const statement of migration.replace(/^--.*$/gm, '').split(';').filter((t) => t.trim())) await s.asSuperuser(statement);
        const recorded = await s.asSuperuser<{ project_id: string; role_name: string | null }>(
          'SELECT project_id, role_name FROM project_registry.workspace_config ORDER BY project_id',
        );
        expect(recorded).toEqual(
          [
            { project_id: VICTIM, role_name: null },
            { project_id: ATTACKER, role_name: legacyRoleName(database, ATTACKER) },
            { project_id: 'no-role-yet', role_name: null },
            { project_id: 'plain', role_name: legacyRoleName(database, 'plain') },
          ].sort((a, b) => (a.project_id < b.project_id ? -1 : 1)),
        );
      } finally {
        await s.close();
      }
    }, 240_000);
  });
}
