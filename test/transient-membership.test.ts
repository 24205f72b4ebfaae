import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import type { Database } from '../src/db/database.js';
import { silentLogger } from '../src/logger.js';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import { install, pgliteBackend, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { callTool, connectInProcess } from './support/mcp.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';

/*
 * The server's role is a member of a workspace (or snapshot) role only inside the transactions
 * that need it (src/db/role-membership.ts): a member of every one, for good, paid a quadratic
 * rebuild of its list of them on each membership check after any role change in the cluster
 * (docs/benchmarks.md, Fleet scale). Every path that hands objects over, drops a role, sets one
 * or revokes as an owner runs here, as production runs it on PostgreSQL (a CREATEROLE role that
 * is no superuser); after each, the server is a member of none.
 */

let cluster: PgCluster | null = null;
beforeAll(async () => {
  if (process.env['PGW_TEST_LAYER'] !== 'embedded') cluster = await startPgCluster();
}, 120_000);
afterAll(async () => cluster?.destroy());

const SERVER_ROLE = 'mcp_transient';

/**
 * The server on `kind`; on PostgreSQL as SERVER_ROLE, or with `second` as a role of its own that
 * acts as SERVER_ROLE (GRANT, ALTER ROLE ... SET role), as docs/isolation.md sets up a second one.
 */
async function server(kind: 'pglite' | 'postgres', ctx: TestContext, prefix: string, second?: string) {
  const notes = await writeExtension(await tempDir(), { id: 'notes' }, {
    'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);',
  });
  let admin: pg.Client | undefined;
  let databaseUrl: string | undefined;
  if (kind === 'postgres') {
    if (!cluster) return ctx.skip();
    const url = await cluster.createDatabase(prefix);
    const database = new URL(url).pathname.slice(1);
    await cluster.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${SERVER_ROLE}') THEN CREATE ROLE ${SERVER_ROLE} LOGIN CREATEROLE; END IF; END $$`);
    await cluster.sql(`GRANT CREATE ON DATABASE ${database} TO ${SERVER_ROLE}`);
    if (second) {
      await cluster.sql(`CREATE ROLE ${second} LOGIN`);
      await cluster.sql(`GRANT ${SERVER_ROLE} TO ${second}`);
      await cluster.sql(`ALTER ROLE ${second} SET role = '${SERVER_ROLE}'`);
    }
    databaseUrl = cluster.url(database, second ?? SERVER_ROLE);
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
  }
  const mcp = await connectInProcess({ extensionDirs: [notes], ...(databaseUrl ? { databaseUrl, disabledExtensions: ['codebase'] } : {}) });
  const { db } = await mcp.engine.ready(120_000);
  const asSuperuser = async <R>(sql: string) => (admin ? (await admin.query(sql)).rows : await db.query(sql)) as R[];
  const [{ role } = { role: '' }] = await db.query<{ role: string }>('SELECT current_user AS role');
  return {
    db: db as Database,
    role,
    asSuperuser,
    async call(name: string, args: Record<string, unknown>) {
      const result = await callTool(mcp.client, mcp.tools, name, args);
      expect(result.isError, `${name}: ${result.text}`).toBe(false);
      return result;
    },
    /** The workspace and snapshot roles the server's role (or the second role) is a member of. */
    async memberships(): Promise<string[]> {
      const rows = await asSuperuser<{ rolname: string }>(
        `SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
          WHERE m.member IN ('${role}'::regrole, '${second ?? role}'::regrole) AND r.rolname LIKE 'pgw\\_%' ORDER BY 1`,
      );
      return rows.map((r) => r.rolname);
    },
    async close() {
      await admin?.end();
      await mcp.close();
    },
  };
}

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`the server's role is a member of no workspace role between calls (${kind})`, () => {
    it('after making a workspace principal, VACUUM, snapshots, a restore, forks and drops, each of which works', async (ctx) => {
      const s = await server(kind, ctx, 'transient_paths');
      try {
        const steps: Array<[string, () => Promise<unknown>]> = [
          ['a first SQL call (role, objects handed over, sandbox)', () => s.call('execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('one')" })],
          ['an agent table', () => s.call('execute', { project_id: 'alpha', sql: 'CREATE TABLE extra (id int PRIMARY KEY, note text)' })],
          ['VACUUM as the workspace role', () => s.call('execute', { project_id: 'alpha', sql: 'VACUUM (ANALYZE) notes, extra' })],
          ['a snapshot (handed to the snapshot role)', () => s.call('snapshot_workspace', { project_id: 'alpha', label: 'one' })],
          ['a change after it', () => s.call('execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('two')" })],
          ['a restore (both ways)', () => s.call('restore_workspace', { project_id: 'alpha', snapshot: 1, confirm: 'alpha' })],
          ['a fork of the current state', () => s.call('fork_workspace', { from: 'alpha', to: 'beta' })],
          ['a fork of a snapshot', () => s.call('fork_workspace', { from: 'alpha', to: 'gamma', snapshot: 2 })],
          ['a snapshot dropped', () => s.call('drop_snapshot', { project_id: 'alpha', snapshot: 2 })],
          ['a workspace dropped with its roles', () => s.call('drop_workspace', { project_id: 'beta', confirm: 'beta' })],
        ];
        for (const [what, step] of steps) {
          await step();
          expect(await s.memberships(), `after ${what}`).toEqual([]);
        }
        // What each step left: restored rows, forks' rows as their own roles, the drop complete.
        const read = async (id: string) => (await s.call('query', { project_id: id, sql: 'SELECT body FROM notes ORDER BY id' })).data['rows'];
        expect(await read('alpha')).toEqual([['one']]);
        expect(await read('gamma')).toEqual([['one'], ['two']]);
        const owners = await s.asSuperuser<{ schema: string; owner: string }>(
          `SELECT n.nspname AS schema, c.relowner::regrole::text AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = 'notes' AND n.nspname IN ('project_alpha', 'project_gamma') ORDER BY 1`,
        );
        expect(owners.map((o) => o.schema)).toEqual(['project_alpha', 'project_gamma']);
        expect(owners[0]?.owner).toMatch(/^pgw_\w+_alpha$/);
        expect(owners[1]?.owner).toMatch(/^pgw_\w+_gamma$/);
        expect(await s.asSuperuser(`SELECT rolname FROM pg_roles WHERE rolname ~ '^pgw_\\w+_beta'`)).toEqual([]);
      } finally {
        await s.close();
      }
    }, 240_000);

    it('core migration 0007 takes back the memberships an older server kept, and the tools go on working', async (ctx) => {
      const s = await server(kind, ctx, 'transient_migration');
      try {
        await s.call('execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('one')" });
        await s.call('snapshot_workspace', { project_id: 'alpha' });
        await s.call('execute', { project_id: 'beta', sql: 'SELECT 1' });
        // As a server of before 2026-12 left them: a member of each workspace and snapshot role.
        const roles = (
          await s.asSuperuser<{ rolname: string }>(
            `SELECT role_name AS rolname FROM project_registry.workspace_config UNION SELECT snapshot_role_name FROM project_registry.workspace_config ORDER BY 1`,
          )
        )
          .map((r) => r.rolname)
          .filter(Boolean);
        expect(roles).toHaveLength(3);
        for (const role of roles) await s.asSuperuser(`GRANT "${role}" TO "${s.role}"`);
        // Another database's role the server is a member of is not this database's to take back.
        await s.asSuperuser(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgw_00000000_elsewhere') THEN CREATE ROLE pgw_00000000_elsewhere; END IF; END $$`);
        await s.asSuperuser(`GRANT pgw_00000000_elsewhere TO "${s.role}"`);
        expect(await s.memberships()).toEqual([...roles, 'pgw_00000000_elsewhere'].sort());
        // The migration as the installer runs it: as the server's role.
        await s.db.exec(await readFile(new URL('../extensions/core/migrations/0008_transient_memberships.sql', import.meta.url), 'utf8'));
        expect(await s.memberships()).toEqual(['pgw_00000000_elsewhere']);
        await s.asSuperuser(`REVOKE pgw_00000000_elsewhere FROM "${s.role}"`);
        await s.call('execute', { project_id: 'alpha', sql: 'VACUUM notes' });
        await s.call('restore_workspace', { project_id: 'alpha', snapshot: 1, confirm: 'alpha' });
        await s.call('drop_workspace', { project_id: 'beta', confirm: 'beta' });
        expect(await s.memberships()).toEqual([]);
      } finally {
        await s.close();
      }
    }, 240_000);
  });
}

describe('a second server role acting as the first (ALTER ROLE ... SET role), on postgres', () => {
  it('runs VACUUM as the workspace role and leaves neither role a member of it', async (ctx) => {
    const s = await server('postgres', ctx, 'transient_second', `second_${Date.now().toString(36)}`);
    try {
      expect(s.role).toBe(SERVER_ROLE);
      await s.call('execute', { project_id: 'alpha', sql: "INSERT INTO notes (body) VALUES ('one')" });
      await s.call('execute', { project_id: 'alpha', sql: 'VACUUM notes' });
      expect(await s.memberships()).toEqual([]);
      await s.call('drop_workspace', { project_id: 'alpha', confirm: 'alpha' });
    } finally {
      await s.close();
    }
  }, 240_000);
});

describe('on PostgreSQL 16 and later (PGlite is 18), as a CREATEROLE role that is no superuser', () => {
  it('every path works with the ADMIN OPTION PostgreSQL gives a role\'s creator, which stays; the server keeps no grant of its own', async () => {
    const backend = await pgliteBackend();
    try {
      const db = await backend.fresh();
      const [{ version = 0 } = {}] = await db.query<{ version: number }>(`SELECT current_setting('server_version_num')::int AS version`);
      expect(version).toBeGreaterThanOrEqual(160000);
      // PGlite's one session is a superuser's: the whole engine runs as srv from here (which reads
      // the session's GUC memory to claim it, session-claims.ts, as pg_read_all_stats may).
      await db.exec(`CREATE EXTENSION IF NOT EXISTS vector; CREATE ROLE srv LOGIN CREATEROLE IN ROLE pg_read_all_stats;
                     GRANT CREATE ON DATABASE postgres TO srv; SET ROLE srv`);
      const notes = await writeExtension(await tempDir(), { id: 'notes' }, {
        'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);',
      });
      const plan = await planFor([notes]);
      const report = await install(db, plan);
      const { workspaces, sandbox } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, silentLogger);
      const grants = () =>
        db.query<{ role: string; grantor: string; admin_option: boolean; inherit_option: boolean; set_option: boolean }>(
          `SELECT roleid::regrole::text AS role, grantor::regrole::text AS grantor, admin_option, inherit_option, set_option
             FROM pg_auth_members WHERE member = 'srv'::regrole AND roleid <> 'pg_read_all_stats'::regrole ORDER BY 1`,
        );
      await sandbox.execute('alpha', "INSERT INTO notes (body) VALUES ('one')", []);
      await workspaces.snapshot('alpha');
      await sandbox.execute('alpha', "INSERT INTO notes (body) VALUES ('two')", []);
      await workspaces.restore('alpha', 1);
      await workspaces.fork('alpha', 'beta');
      await workspaces.fork('alpha', 'gamma', 2);
      expect((await sandbox.query('gamma', 'SELECT body FROM notes ORDER BY id', [])).rows).toEqual([['one'], ['two']]);
      expect((await workspaces.drop('beta')).dropped).toBe(true);
      expect((await db.query<{ user: string }>('SELECT current_user AS user'))[0]?.user).toBe('srv');
      // Only PostgreSQL's own grants to the creator: ADMIN, neither SET nor INHERIT.
      const left = await grants();
      expect(left.map((g) => g.role)).toEqual(
        (await db.query<{ rolname: string }>(`SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgw\\_%' ORDER BY 1`)).map((r) => r.rolname),
      );
      for (const g of left) expect(g).toMatchObject({ grantor: 'postgres', admin_option: true, inherit_option: false, set_option: false });
    } finally {
      await backend.cleanup();
    }
  }, 120_000);
});
