/**
 * `npm run bench:snapshots`: snapshots and restores on a throwaway PostgreSQL cluster, each
 * measured beside its baseline in the same run (contenders interleaved):
 * - a snapshot of a workspace holding BENCH_SNAPSHOT_MB (100) MB of rows, against a hand-written
 *   copy of the same table (CREATE TABLE … AS, then the same primary key), in one transaction;
 * - a restore (a rename of schemas, not a copy) of that workspace against a restore of one a
 *   tenth its size: the ratio shows its time does not grow with the data.
 * Sizes: BENCH_ITERATIONS (5), BENCH_SNAPSHOT_MB (100).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { silentLogger } from '../src/logger.js';
import { packageRoot } from '../src/package-info.js';
import { DEFAULT_SQL_LIMITS } from '../src/sandbox/workspace-sandbox.js';
import { install, planFor } from '../harness/fixtures.js';
import { startPgCluster } from '../harness/pg-cluster.js';
import { formatTable, type Row } from './report.js';
import { ratio, sampleInterleaved } from './stats.js';

const ITERATIONS = Number(process.env['BENCH_ITERATIONS'] ?? 5);
const MB = Number(process.env['BENCH_SNAPSHOT_MB'] ?? 100);
const log = (message: string) => process.stderr.write(`[bench:snapshots] ${message}\n`);

const cluster = await startPgCluster();
if (!cluster) throw new Error('The benchmarks need PostgreSQL binaries (see docs/development.md).');
const db = new PostgresDatabase({ connectionString: await cluster.createDatabase('bench') });
const rows: Row[] = [];

try {
  const plan = await planFor([]);
  const report = await install(db, plan);
  const { workspaces: manager, sandbox: sql } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, silentLogger, {
    snapshotLimits: { maxSnapshots: 1000, budgetBytes: Number.MAX_SAFE_INTEGER },
    limits: { ...DEFAULT_SQL_LIMITS, statementTimeoutMs: 600_000 },
  });

  /** A workspace whose `items` table holds about `mb` MB of rows (200-byte bodies), made by the agent's own SQL. */
  async function workspaceOf(id: string, mb: number): Promise<number> {
    await sql.execute(id, 'CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n integer NOT NULL, body text NOT NULL)', []);
    const count = Math.round((mb * 1024 * 1024) / 250);
    await sql.execute(id, `INSERT INTO items (n, body) SELECT g, repeat(md5(g::text), 6) || g FROM generate_series(1, ${count}) g`, []);
    await db.exec(`VACUUM ANALYZE project_${id.replaceAll('-', '_')}.items`);
    const [size] = await db.query<{ mb: number }>(`SELECT round(pg_total_relation_size('project_${id.replaceAll('-', '_')}.items') / 1048576.0)::int AS mb`);
    return size?.mb ?? 0;
  }

  const large = await workspaceOf('snap-large', MB);
  const small = await workspaceOf('snap-small', MB / 10);
  log(`workspaces of ${large} MB and ${small} MB (table, index and TOAST)`);

  log('snapshot vs CREATE TABLE … AS');
  let handMade = 0;
  const snapshot = await sampleInterleaved(
    ITERATIONS,
    {
      ours: async () => {
        const taken = await manager.snapshot('snap-large');
        await manager.dropSnapshot('snap-large', taken.snapshot);
      },
      createTableAs: async () => {
        const schema = `hand_copy_${++handMade}`;
        await db.exec(
          `BEGIN; CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.items AS SELECT * FROM project_snap_large.items;
           ALTER TABLE ${schema}.items ADD PRIMARY KEY (id); COMMIT`,
        );
        await db.exec(`DROP SCHEMA ${schema} CASCADE`);
      },
    },
    1,
  );
  const vsHand = ratio(snapshot.ours.p50, snapshot.createTableAs.p50);
  rows.push({
    scenario: 'snapshot',
    measure: `snapshot of ${large} MB`,
    ours: snapshot.ours,
    baseline: { name: 'CREATE TABLE … AS + the same primary key, one transaction', value: snapshot.createTableAs },
    ratio: vsHand,
  });

  log('restore at two sizes');
  // Each restore swaps the workspace with its latest snapshot: the next one swaps them back.
  await manager.snapshot('snap-large');
  await manager.snapshot('snap-small');
  const latest = async (id: string) => Math.max(...(await manager.listSnapshots(id)).map((s) => s.snapshot));
  const restore = await sampleInterleaved(ITERATIONS, {
    large: async () => manager.restore('snap-large', await latest('snap-large')),
    small: async () => manager.restore('snap-small', await latest('snap-small')),
  });
  rows.push({
    scenario: 'restore',
    measure: `restore of ${large} MB`,
    ours: restore.large,
    baseline: { name: `restore of ${small} MB`, value: restore.small },
    ratio: ratio(restore.large.p50, restore.small.p50),
  });

  const table = formatTable(rows);
  process.stdout.write(`${table}\n`);
  const dir = path.join(packageRoot, 'bench/results');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'snapshots-latest.txt'), `${table}\n`);
  await writeFile(path.join(dir, 'snapshots-latest.json'), JSON.stringify({ iterations: ITERATIONS, mb: MB, rows }, null, 2));
} finally {
  await db.close();
  await cluster.destroy();
}
