import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { dbUrlOf } from '../src/db/embedded/shared-store.js';
import { findPgBinDir } from './support/pg-cluster.js';
import { tempDir, writeExtension } from './support/fixtures.js';
import { MAIN, startServerProcess, type ServerProcess } from './support/server-process.js';

const run = promisify(execFile);

const WORKSPACE_FILES = {
  'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);',
  'workspace/migrations/0001_label.sql': 'ALTER TABLE items ADD COLUMN IF NOT EXISTS label text;',
};

let extensionDir: string;
beforeAll(async () => {
  // A global migration with a side effect: four servers installing at once through one shared
  // session must still apply it exactly once (their install lock is a file lock, not an advisory one).
  extensionDir = await writeExtension(await tempDir(), { id: 'shared' }, {
    ...WORKSPACE_FILES,
    'schema.sql': 'CREATE TABLE IF NOT EXISTS public.shared_events (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY);',
    'migrations/0001_once.sql': 'INSERT INTO public.shared_events DEFAULT VALUES;',
  });
});

/** Servers on one embedded data directory; codebase off to keep the run short (PGlite is slow to DDL here). */
const serverArgs = (dir: string, extensions = extensionDir) => ['--data-dir', dir, '--extensions', extensions, '--disable', 'codebase'];
const ownerPid = async (dir: string) => Number((await readFile(path.join(dir, 'lock'), 'utf8')).trim());

async function query<R extends pg.QueryResultRow>(dir: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: dbUrlOf(dir) });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Every workspace schema has its registry row and vice versa; each ledger row exists exactly once per workspace. */
async function checkInvariants(dir: string) {
  expect(
    await query(
      dir,
      `(SELECT nspname AS orphan FROM pg_namespace WHERE nspname LIKE 'project\\_%' AND nspname !~ '^project_registry(_|$)'
        EXCEPT SELECT schema_name FROM project_registry.workspace_config)
       UNION ALL
       (SELECT schema_name FROM project_registry.workspace_config
        EXCEPT SELECT nspname FROM pg_namespace)`,
    ),
  ).toEqual([]);
  const [ledger] = await query<{ workspaces: number; rows: number; distinct_rows: number; missing: number }>(
    dir,
    `SELECT (SELECT count(*)::int FROM project_registry.workspace_config) AS workspaces,
            count(*)::int AS rows, count(DISTINCT (project_id, extension_id, name))::int AS distinct_rows,
            (SELECT count(*)::int FROM project_registry.workspace_config w WHERE NOT EXISTS (
               SELECT 1 FROM project_registry.workspace_migrations m WHERE m.project_id = w.project_id AND m.name = '0001_label')) AS missing
       FROM project_registry.workspace_migrations`,
  );
  expect(ledger).toMatchObject({ rows: ledger?.workspaces, distinct_rows: ledger?.workspaces, missing: 0 });
  return ledger?.workspaces ?? 0;
}

const ensureAll = (s: ServerProcess, ids: string[]) => Promise.all(ids.map((id) => s.call('ensure_workspace', { project_id: id })));

describe('one embedded store shared by several processes', () => {
  it('4 servers provision shared and own ids at once; the owner is SIGKILLed mid-burst, another takes over, and nothing is half-made', async () => {
    const dir = await tempDir('pgw-4s-');
    const servers = await Promise.all(Array.from({ length: 4 }, () => startServerProcess(serverArgs(dir), {})));
    try {
      const shared = Array.from({ length: 4 }, (_, i) => `shared-${i}`);
      const first = await Promise.all(servers.map((s, n) => ensureAll(s, [...shared, ...[0, 1, 2].map((i) => `own-${n}-${i}`)])));
      expect(first.flat().filter((r) => r.isError).map((r) => r.text)).toEqual([]);
      expect(first.flat().filter((r) => r.data['created'] === true)).toHaveLength(4 + 12);

      const owner = await ownerPid(dir);
      const victim = servers.find((s) => s.pid === owner) as ServerProcess;
      expect(victim).toBeDefined();
      const survivors = servers.filter((s) => s !== victim);
      // The burst: every survivor provisions new ids while the owner dies under it.
      const burstIds = (n: number) => [...[0, 1].map((i) => `burst-shared-${i}`), ...[0, 1, 2, 3].map((i) => `burst-${n}-${i}`)];
      let settledBeforeKill = 0;
      const burst = survivors.map((s, n) => Promise.all(burstIds(n).map((id) => s.call('ensure_workspace', { project_id: id }).finally(() => settledBeforeKill++))));
      for (let i = 0; i < 600 && settledBeforeKill < 3; i++) await new Promise((r) => setTimeout(r, 25));
      process.kill(victim.pid, 'SIGKILL');
      const atKill = settledBeforeKill;
      const during = (await Promise.all(burst)).flat();
      expect(atKill, 'calls still running when the owner died').toBeLessThan(3 * 6);
      console.log(`burst: ${atKill} of 18 calls settled before the kill, ${during.filter((r) => r.isError).length} cut off by it`);
      // A call cut off by the kill is made again after the takeover (ensure_workspace is safe to repeat).
      expect(during.filter((r) => r.isError).map((r) => r.text)).toEqual([]);

      // A survivor owns the store now, and every call after the hand-over succeeds.
      const after = (await Promise.all(survivors.map((s, n) => ensureAll(s, [...burstIds(n), `after-${n}`])))).flat();
      expect(after.filter((r) => r.isError).map((r) => r.text)).toEqual([]);
      expect(survivors.map((s) => s.pid)).toContain(await ownerPid(dir));
      expect(survivors.map((s) => s.stderr()).join('')).toContain('took over the embedded store');
      const listed = await survivors[0]?.call('list_workspaces', { limit: 500 });
      expect(listed?.isError).toBe(false);

      const total = await checkInvariants(dir);
      expect(await query(dir, 'SELECT count(*)::int AS n FROM public.shared_events')).toEqual([{ n: 1 }]);
      expect(await query(dir, `SELECT count(*)::int AS n FROM project_registry.schema_migrations WHERE extension_id = 'shared'`)).toEqual([{ n: 1 }]);
      // Nothing lost: the first round's 16, the burst's 2 shared + 4 per survivor, and one more each.
      expect(total).toBe(16 + 2 + 12 + 3);

      // psql reads a workspace table through the socket while the servers run.
      const bin = findPgBinDir();
      if (bin) {
        await survivors[0]?.call('validate_columns', { project_id: 'shared-0', table: 'items', columns: ['id', 'label'] });
        await query(dir, `INSERT INTO project_shared_0.items (label) VALUES ('seen by psql')`);
        const { stdout } = await run(path.join(bin, 'psql'), [dbUrlOf(dir), '-At', '-c', 'SELECT label FROM project_shared_0.items']);
        expect(stdout.trim()).toBe('seen by psql');
      } else if (process.env['CI'] === 'true') {
        throw new Error('psql not found');
      } else {
        console.warn('SKIPPED the psql part: psql not found');
      }
    } finally {
      await Promise.all(servers.map((s) => s.close().catch(() => undefined)));
    }
  }, 240_000);

  it('the owner dies under a query, which is made again after the takeover, and under an execute, which reports it', async () => {
    const dir = await tempDir('pgw-handover-');
    const servers: ServerProcess[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        servers.push(await startServerProcess(serverArgs(dir), {}));
        expect((await servers[i]?.call('ensure_workspace', { project_id: 'handover' }))?.isError).toBe(false);
      }
      const ownerOf = async () => {
        const pid = await ownerPid(dir);
        return servers.find((s) => s.pid === pid) as ServerProcess;
      };
      // The SQL sandbox is made first (slow DDL on PGlite), so the calls below reach the owner at once.
      for (const s of servers.slice(1)) {
        expect((await s.call('execute', { project_id: 'handover', sql: 'CREATE TABLE IF NOT EXISTS warm (n int)' })).isError).toBe(false);
        expect((await s.call('query', { project_id: 'handover', sql: 'SELECT 1' })).isError).toBe(false);
      }
      const killDuring = async (victim: ServerProcess, call: Promise<Awaited<ReturnType<ServerProcess['call']>>>) => {
        await new Promise((resolve) => setTimeout(resolve, 700));
        process.kill(victim.pid, 'SIGKILL');
        return call;
      };
      const first = await ownerOf();
      expect(first).toBe(servers[0]);
      const read = await killDuring(first, (servers[1] as ServerProcess).call('query', { project_id: 'handover', sql: 'SELECT pg_sleep(2)::text AS slept, 42 AS answer' }));
      expect(read.isError, read.text).toBe(false);
      expect(read.data['rows']).toEqual([['', 42]]);

      const second = await ownerOf();
      const client = servers.find((s) => s !== first && s !== second) as ServerProcess;
      const written = await killDuring(second, client.call('execute', { project_id: 'handover', sql: 'CREATE TABLE made_then AS SELECT pg_sleep(2)::text AS slept' }));
      expect(written.isError).toBe(true);
      expect(written.text).toMatch(/went away during this call.*retry the call/s);
      // The caller retries, as told, on the store it now owns; the table was rolled back with the dead owner.
      const retried = await client.call('query', { project_id: 'handover', sql: "SELECT to_regclass('made_then') IS NULL AS gone" });
      expect(retried.data['rows']).toEqual([[true]]);
      expect(await ownerPid(dir)).toBe(client.pid);
    } finally {
      await Promise.all(servers.map((s) => s.close().catch(() => undefined)));
    }
  }, 120_000);

  it("the owner's query after another server's call returns its rows, and the other server never receives the owner's reply", async () => {
    const dir = await tempDir('pgw-two-servers-');
    const servers: ServerProcess[] = [];
    try {
      for (let i = 0; i < 2; i++) servers.push(await startServerProcess(serverArgs(dir), {}));
      const [owner, other] = servers as [ServerProcess, ServerProcess];
      expect(await ownerPid(dir)).toBe(owner.pid);
      expect((await owner.call('execute', { project_id: 'pair', sql: "CREATE TABLE notes AS SELECT 'one'::text AS body" })).isError).toBe(false);
      expect((await other.call('query', { project_id: 'pair', sql: 'SELECT 1' })).isError).toBe(false);
      for (let i = 0; i < 3; i++) {
        // The other server's call is the last exchange PGlite ran before the owner's query.
        const theirs = await other.call('query', { project_id: 'pair', sql: 'SELECT body FROM notes' });
        expect(theirs.isError, theirs.text).toBe(false);
        expect(theirs.data).toMatchObject({ columns: [{ name: 'body', type: 'text' }], rows: [['one']] });
        const mine = await owner.call('query', { project_id: 'pair', sql: 'SELECT body FROM notes' });
        expect(mine.isError, mine.text).toBe(false);
        expect(mine.data).toMatchObject({ columns: [{ name: 'body', type: 'text' }], rows: [['one']] });
      }
    } finally {
      await Promise.all(servers.map((s) => s.close().catch(() => undefined)));
    }
  }, 120_000);

  it("a custom setting one server's workspace made is not even a name to another's, whichever server owns the store", async () => {
    const dir = await tempDir('pgw-covert-');
    const servers: ServerProcess[] = [];
    try {
      for (let i = 0; i < 2; i++) servers.push(await startServerProcess(serverArgs(dir), {}));
      const [owner, other] = servers as [ServerProcess, ServerProcess];
      expect(await ownerPid(dir)).toBe(owner.pid);
      const leave = "CREATE FUNCTION leave() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN set_config('x.covert', '1', false); END $$";
      const read = "SELECT current_setting('x.covert', true) AS seen";
      for (const [from, to] of [[owner, other], [other, owner]] as const) {
        const a = `covert-a-${from.pid}`;
        const b = `covert-b-${from.pid}`;
        expect((await from.call('execute', { project_id: a, sql: leave })).isError).toBe(false);
        const left = await from.call('query', { project_id: a, sql: 'SELECT leave()' });
        expect(left.isError, left.text).toBe(false);
        // The owner's session holds a's placeholder: the other's claim for b is refused, the owner
        // takes a new session, and b's call runs there (or the owner's own, the other way round).
        const seen = await to.call('query', { project_id: b, sql: read });
        expect(seen.isError, seen.text).toBe(false);
        expect(seen.data['rows']).toEqual([[null]]);
      }
    } finally {
      await Promise.all(servers.map((s) => s.close().catch(() => undefined)));
    }
  }, 120_000);

  it('migrate-workspaces upgrades the workspaces of a store that a running server owns', async () => {
    const dir = await tempDir('pgw-mig-');
    const v1 = await writeExtension(await tempDir(), { id: 'shared' }, WORKSPACE_FILES);
    const server = await startServerProcess(serverArgs(dir, v1), {});
    try {
      const made = await ensureAll(server, ['mig-a', 'mig-b', 'mig-c']);
      expect(made.filter((r) => r.isError).map((r) => r.text)).toEqual([]);
      expect(await ownerPid(dir)).toBe(server.pid);

      const v2 = await writeExtension(await tempDir(), { id: 'shared' }, {
        ...WORKSPACE_FILES,
        'workspace/migrations/0002_score.sql': 'ALTER TABLE items ADD COLUMN IF NOT EXISTS score int;',
      });
      const result = await run(process.execPath, [MAIN, 'migrate-workspaces', ...serverArgs(dir, v2)]).catch(
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      expect(result.stdout).toContain('Upgraded 3, skipped 0');
      expect(await query(dir, `SELECT project_id FROM project_registry.workspace_migrations WHERE name = '0002_score' ORDER BY 1`)).toEqual([
        { project_id: 'mig-a' },
        { project_id: 'mig-b' },
        { project_id: 'mig-c' },
      ]);
      // The server still owns the store and serves.
      expect(await ownerPid(dir)).toBe(server.pid);
      expect((await server.call('list_workspaces', {})).isError).toBe(false);
    } finally {
      await server.close();
    }
  }, 180_000);

  it('db-url prints the socket connection string, and says so when no process serves the store', async () => {
    const dir = await tempDir('pgw-url-');
    const { stdout, stderr } = await run(process.execPath, [MAIN, 'db-url', '--data-dir', dir]);
    expect(stdout.trim()).toBe(dbUrlOf(dir));
    expect(stdout.trim()).toBe(`postgresql://postgres@/postgres?host=${path.join(dir, 'socket')}`);
    expect(stderr).toContain('no process serves');
  });
});
