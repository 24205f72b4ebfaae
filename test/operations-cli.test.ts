import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { dbUrlOf } from '../src/db/embedded/shared-store.js';
import type { DoctorReport } from '../src/operations/doctor.js';
import { tempDir } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { runCli, startServerProcess } from './support/server-process.js';


const findings = (stdout: string) => (JSON.parse(stdout) as DoctorReport).findings.map((f) => f.code);

describe('doctor and repair as commands', () => {
  it('connect to the embedded store a server is serving, find a lost schema, forget it, and exit 1, 0 and 2 as documented', async () => {
    const dir = await tempDir();
    const server = await startServerProcess(['--data-dir', dir], {});
    const socket = new PostgresDatabase({ connectionString: dbUrlOf(dir) });
    try {
      for (const id of ['ws-a', 'ws-gone']) expect((await server.call('ensure_workspace', { project_id: id })).isError).toBeFalsy();
      await socket.exec('DROP SCHEMA project_ws_gone CASCADE');

      const json = await runCli(['doctor', '--json', '--data-dir', dir]);
      expect(json.code).toBe(1);
      expect(findings(json.stdout)).toEqual(['lost-schema']);
      expect((JSON.parse(json.stdout) as DoctorReport).fleet).toMatchObject({ workspaces: 2, up_to_date: 2, lagging: 0 });
      const human = await runCli(['doctor', '--data-dir', dir]);
      expect(human.code).toBe(1);
      expect(human.stdout).toContain('Install: up to date');
      expect(human.stdout).toMatch(/\[warning\] lost-schema: Workspace "ws-gone" is registered but its schema project_ws_gone does not exist/);

      const none = await runCli(['repair', '--data-dir', dir]);
      expect(none.code).toBe(2);
      expect(none.stderr).toContain('repair changes only what a flag names');

      const forgotten = await runCli(['repair', '--forget-missing', '--data-dir', dir]);
      expect(forgotten.code).toBe(0);
      expect(forgotten.stdout).toMatch(/^forget ws-gone\n {2}deleted 1 registry row and \d+ ledger row\(s\) of schema project_ws_gone/);
      const healthy = await runCli(['doctor', '--json', '--data-dir', dir]);
      expect(healthy.code).toBe(0);
      expect(JSON.parse(healthy.stdout)).toMatchObject({ healthy: true, findings: [] });
      // The server kept serving throughout.
      expect((await server.call('list_workspaces', {})).data).toMatchObject({ workspaces: [{ project_id: 'ws-a' }] });
    } finally {
      await socket.close();
      await server.close();
    }
  }, 120_000);

  it('exit 2 when they cannot run, with the reason (as JSON with --json)', async () => {
    const empty = await runCli(['doctor', '--data-dir', await tempDir()]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('There is no embedded store at');
    const down = await runCli(['doctor', '--json'], { DATABASE_URL: 'postgresql://nobody@127.0.0.1:1/none' });
    expect(down.code).toBe(2);
    expect((JSON.parse(down.stdout) as { error: string }).error).toMatch(/connect|ECONNREFUSED|reach/i);
  }, 60_000);
});

describe('doctor on a real PostgreSQL server', () => {
  let cluster: PgCluster | null = null;
  beforeAll(async () => {
    cluster = await startPgCluster();
  }, 60_000);
  afterAll(async () => cluster?.destroy());

  it('says a new database is not installed (exit 1), and healthy once migrate-workspaces installed it (exit 0)', async (ctx) => {
    if (!cluster) ctx.skip();
    const env = { DATABASE_URL: await (cluster as PgCluster).createDatabase('doctor'), PG_WORKSPACE_DISABLED_EXTENSIONS: 'codebase' };
    const fresh = await runCli(['doctor', '--json'], env);
    expect(fresh.code).toBe(1);
    expect(findings(fresh.stdout)).toEqual(['not-installed']);
    expect((await runCli(['migrate-workspaces'], env)).code).toBe(0);
    const installed = await runCli(['doctor'], env);
    expect(installed.stdout).toContain('Healthy: no findings.');
    expect(installed.code).toBe(0);
  }, 60_000);
});
