import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { WorkspaceFleet } from '../src/workspaces/workspace-fleet.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { controls } from './unit/control-characters.js';
import { install, planFor, tempDir, writeExtension } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { MAIN } from './support/server-process.js';

const run = promisify(execFile);

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgCluster();
}, 60_000);
afterAll(async () => cluster?.destroy());

const V1 = {
  'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);',
  'workspace/migrations/0001_tags.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS tags text[];',
};
/** v2 ships a new workspace migration: a column and an index (with a pause to make a crash land mid-run). */
const V2 = {
  ...V1,
  'workspace/migrations/0002_score.sql':
    'SELECT pg_sleep(0.01); ALTER TABLE notes ADD COLUMN IF NOT EXISTS score int; CREATE INDEX IF NOT EXISTS notes_score_idx ON notes (score);',
};

interface Setup {
  url: string;
  db: PostgresDatabase;
  v2Dir: string;
  v2: InstallPlan;
  close(): Promise<void>;
}

/** A database with `n` workspaces made by v1, and the v2 extension directory ready to upgrade to. */
async function fleetOf(ctx: TestContext, n: number, v2Files: Record<string, string> = V2): Promise<Setup> {
  if (!cluster) ctx.skip();
  const url = await (cluster as PgCluster).createDatabase('fleet');
  const db = new PostgresDatabase({ connectionString: url, maxConnections: 8 });
  const v1 = await planFor([await writeExtension(await tempDir(), { id: 'notes' }, V1)], ['codebase']);
  const report = await install(db, v1);
  const manager = new WorkspaceManager(db, v1, report.searchPathSchemas, silentLogger);
  for (let i = 0; i < n; i += 8) {
    await Promise.all(Array.from({ length: Math.min(8, n - i) }, (_, k) => manager.ensure(`ws-${String(i + k).padStart(4, '0')}`)));
  }
  const v2Dir = await writeExtension(await tempDir(), { id: 'notes' }, v2Files);
  const v2 = await planFor([v2Dir], ['codebase']);
  await install(db, v2);
  return { url, db, v2Dir, v2, close: () => db.close() };
}

const cli = (url: string, dir: string, ...args: string[]) =>
  run(process.execPath, [MAIN, 'migrate-workspaces', '--extensions', dir, '--disable', 'codebase', ...args], {
    env: { ...process.env, DATABASE_URL: url },
  }).catch((error: { code: number; stdout: string; stderr: string }) => error);

/** Every workspace is either fully v2 (fingerprint, ledger row, column) or fully v1. */
async function assertNoHalfUpgrade(db: PostgresDatabase, v2: InstallPlan) {
  const rows = await db.query<{ project_id: string; current: boolean; ledger: number; col: boolean }>(
    `SELECT w.project_id, w.workspace_fingerprint = $1 AS current,
            (SELECT count(*)::int FROM project_registry.workspace_migrations m WHERE m.project_id = w.project_id AND m.name = '0002_score') AS ledger,
            EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(quote_ident(w.schema_name) || '.notes') AND a.attname = 'score') AS col
       FROM project_registry.workspace_config w`,
    [v2.workspaceFingerprint],
  );
  for (const r of rows) expect([r.current, r.ledger, r.col], r.project_id).toEqual(r.current ? [true, 1, true] : [false, 0, false]);
  return rows.filter((r) => r.current).length;
}

describe('migrate-workspaces on a real PostgreSQL server', () => {
  it('upgrades 200 workspaces, survives a crash in the middle, and a rerun finishes the job', async (ctx) => {
    const { url, db, v2Dir, v2, close } = await fleetOf(ctx, 200);
    try {
      const child = spawn(process.execPath, [MAIN, 'migrate-workspaces', '--concurrency', '4', '--extensions', v2Dir, '--disable', 'codebase'], {
        env: { ...process.env, DATABASE_URL: url },
        stdio: 'ignore',
      });
      let upgraded = 0;
      for (let i = 0; i < 600 && upgraded < 40; i++) {
        const [row] = await db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM project_registry.workspace_config WHERE workspace_fingerprint = $1',
          [v2.workspaceFingerprint],
        );
        upgraded = row?.n ?? 0;
        if (upgraded < 40) await new Promise((r) => setTimeout(r, 20));
      }
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      const afterCrash = await assertNoHalfUpgrade(db, v2);
      expect(afterCrash).toBeGreaterThanOrEqual(40);
      expect(afterCrash).toBeLessThan(200);

      const rerun = await cli(url, v2Dir, '--concurrency', '4');
      expect(rerun.stdout).toContain(`Upgraded ${200 - afterCrash}, skipped 0 (already current or gone), failed 0 of ${200 - afterCrash}`);
      expect(await assertNoHalfUpgrade(db, v2)).toBe(200);
      expect((await cli(url, v2Dir)).stdout).toContain('failed 0 of 0 lagging');
    } finally {
      await close();
    }
  }, 120_000);

  it('draws a progress bar on a terminal', async (ctx) => {
    const { url, v2Dir, close } = await fleetOf(ctx, 5);
    try {
      // script(1) gives the command a pseudo-terminal, as a person running it would have.
      const command = [process.execPath, MAIN, 'migrate-workspaces', '--extensions', v2Dir, '--disable', 'codebase'].map((a) => `'${a}'`).join(' ');
      const { stdout } = await run('script', ['-qec', command, '/dev/null'], { env: { ...process.env, DATABASE_URL: url } });
      expect(stdout).toContain('\r[');
      expect(stdout).toMatch(/\[#{30}\] 5\/5 \(upgraded 5, skipped 0, failed 0\)/);
      expect(stdout).toContain('Upgraded 5, skipped 0 (already current or gone), failed 0 of 5');
    } finally {
      await close();
    }
  }, 60_000);

  it('lists what would run in a dry run and changes nothing', async (ctx) => {
    const { url, db, v2Dir, v2, close } = await fleetOf(ctx, 3);
    try {
      const dry = await cli(url, v2Dir, '--dry-run');
      expect(dry.stdout).toContain('Dry run: 3 workspace(s) would be upgraded.');
      expect(dry.stdout).toContain('ws-0000: notes/0002_score');
      expect(await assertNoHalfUpgrade(db, v2)).toBe(0);
    } finally {
      await close();
    }
  }, 60_000);

  it('reports a workspace whose migration fails while the others complete, and exits non-zero', async (ctx) => {
    const failing = { ...V1, 'workspace/migrations/0002_short.sql': 'ALTER TABLE notes ADD CONSTRAINT short_body CHECK (length(body) < 20);' };
    const { url, db, v2Dir, close } = await fleetOf(ctx, 12, failing);
    try {
      await db.query(`INSERT INTO project_ws_0005.notes (body) VALUES ($1)`, ['a body that is far too long for the new rule']);
      const result = await cli(url, v2Dir, '--concurrency', '3');
      expect((result as { code?: number }).code).toBe(1);
      expect(result.stdout).toContain('Upgraded 11, skipped 0 (already current or gone), failed 1 of 12');
      // Not a terminal: plain progress lines on stderr, ending with the final count.
      expect(result.stderr).toContain('migrate-workspaces: 12/12 (upgraded 11, skipped 0, failed 1)');
      expect(result.stdout).toMatch(/ws-0005: Provisioning workspace "ws-0005" failed.*\n.*violated by some row/);
      const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM project_registry.workspace_migrations WHERE name = '0002_short'`);
      expect(row?.n).toBe(11);
    } finally {
      await close();
    }
  }, 60_000);

  it("prints an agent trigger's error with its control characters escaped", async (ctx) => {
    const touching = { ...V1, 'workspace/migrations/0002_touch.sql': 'UPDATE notes SET body = body;' };
    const { url, db, v2Dir, close } = await fleetOf(ctx, 2, touching);
    try {
      // What a red team's trigger raised: retitle the window, erase the line, hide what follows.
      await db.exec(`CREATE FUNCTION project_ws_0001.loud() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN
                       RAISE EXCEPTION '%', 'failed' || chr(27) || ']0;pwned' || chr(7) || chr(27) || '[2K' || chr(13) || chr(27) || '[8mhidden';
                     END $f$;
                     CREATE TRIGGER loud BEFORE UPDATE ON project_ws_0001.notes FOR EACH ROW EXECUTE FUNCTION project_ws_0001.loud();
                     INSERT INTO project_ws_0001.notes (body) VALUES ('x');`);
      const result = await cli(url, v2Dir);
      expect((result as { code?: number }).code).toBe(1);
      expect(result.stdout).toContain('ws-0001');
      expect(result.stdout).toContain('failed\\u001b]0;pwned\\u0007\\u001b[2K\\u000d\\u001b[8mhidden');
      for (const output of [result.stdout, result.stderr]) expect(controls(output, '\n\t')).toEqual([]);
    } finally {
      await close();
    }
  }, 60_000);

  it('an upgrade racing ensure_workspace on the same workspaces applies each migration once', async (ctx) => {
    const { db, v2, close } = await fleetOf(ctx, 24);
    try {
      const report = await install(db, v2);
      const upgrader = new WorkspaceManager(db, v2, report.searchPathSchemas, silentLogger);
      const servers = [0, 1].map(() => new WorkspaceManager(db, v2, report.searchPathSchemas, silentLogger));
      const ids = Array.from({ length: 24 }, (_, i) => `ws-${String(i).padStart(4, '0')}`);
      const [summary, ...ensured] = await Promise.all([
        new WorkspaceFleet(db, v2, upgrader).upgrade({ concurrency: 4 }),
        ...servers.flatMap((m) => ids.map((id) => m.ensure(id))),
      ]);
      expect(summary).toMatchObject({ total: 24, failed: 0 });
      expect(ensured.every((w) => !w.created)).toBe(true);
      expect(await assertNoHalfUpgrade(db, v2)).toBe(24);
      // Whoever got there first upgraded it; the rest found it current.
      expect(summary.upgraded + summary.skipped).toBe(24);
    } finally {
      await close();
    }
  }, 60_000);
});
