/**
 * `npm run bench:citus`: provisioning and lookups on a Citus coordinator with 2 workers (three
 * throwaway clusters, like the tests), each measured beside its baseline in the same run:
 * - a new workspace, ours vs the floor: the same DDL sent by hand, top-level in one round trip,
 *   with schema-based sharding off, then citus_schema_distribute (what ours does, minus the
 *   registry); and vs Citus's own way, sharding on and one statement per round trip;
 * - lookups on the coordinator vs the same lookups on plain PostgreSQL (both with pgvector).
 * Needs Citus and pgvector installed (bash ../shared/vendor/build-pg-extensions.sh).
 * Sizes: BENCH_ITERATIONS (30), BENCH_CITUS_WORKSPACES (200, for the lookups).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SHARDING_OFF } from '../src/db/postgres/citus.js';
import type { Database } from '../src/db/database.js';
import { quoteIdent } from '../src/db/identifiers.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { silentLogger } from '../src/logger.js';
import { packageRoot } from '../src/package-info.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { startCitusCluster } from '../harness/citus-cluster.js';
import { install, planFor } from '../harness/fixtures.js';
import { startPgCluster } from '../harness/pg-cluster.js';
import { measureLookups } from './lookups.js';
import { workspaceStatements } from './provisioning.js';
import { formatTable, type Row } from './report.js';
import { ratio, sampleInterleaved } from './stats.js';

const ITERATIONS = Number(process.env['BENCH_ITERATIONS'] ?? 30);
const WORKSPACES = Number(process.env['BENCH_CITUS_WORKSPACES'] ?? 200);
const log = (message: string) => process.stderr.write(`[bench:citus] ${message}\n`);

const citus = await startCitusCluster({ workers: 2 });
if (!citus) throw new Error('The Citus benchmark needs Citus installed (see docs/citus.md).');
const plain = await startPgCluster();
if (!plain) throw new Error('The benchmarks need PostgreSQL binaries (see docs/development.md).');
const plan = await planFor([]);
const rows: Row[] = [];
const opened: Database[] = [];

async function subject(url: string) {
  const db = new PostgresDatabase({ connectionString: url });
  opened.push(db);
  const report = await install(db, plan);
  const manager = new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger, { citus: report.citus !== null });
  return { db, manager, searchPath: report.searchPathSchemas };
}

try {
  const onCitus = await subject(await citus.createDatabase('bench'));
  const ddl = workspaceStatements(plan);

  log('new workspace: ours vs the floor vs Citus statement by statement');
  const floor = (i: number) => {
    const schema = `floor_${i < 0 ? `w${-i}` : i}`;
    const search = [schema, ...onCitus.searchPath].map(quoteIdent).join(', ');
    return onCitus.db.exec(
      `BEGIN; ${SHARDING_OFF}; CREATE SCHEMA ${quoteIdent(schema)}; SET LOCAL search_path TO ${search};\n` +
        `${ddl.map((s) => `${s.sql};`).join('\n')}\nSELECT citus_schema_distribute('${schema}'); COMMIT;`,
    );
  };
  const native = (i: number) =>
    onCitus.db.withSession(async (s) => {
      const schema = `native_${i < 0 ? `w${-i}` : i}`;
      await s.query('BEGIN');
      await s.query('SET LOCAL citus.enable_schema_based_sharding = on');
      await s.query(`CREATE SCHEMA ${quoteIdent(schema)}`);
      await s.query(`SET LOCAL search_path TO ${[schema, ...onCitus.searchPath].map(quoteIdent).join(', ')}`);
      for (const statement of ddl) await s.query(statement.sql);
      await s.query('COMMIT');
    });
  const created = await sampleInterleaved(ITERATIONS, {
    ours: (i) => onCitus.manager.ensure(`new-${i < 0 ? `w${-i}` : i}`),
    floor,
    native,
  });
  const vsFloor = ratio(created.ours.p50, created.floor.p50);
  rows.push({ scenario: 'citus provisioning', measure: 'new workspace', ours: created.ours, baseline: { name: 'same DDL top-level + citus_schema_distribute, 1 round trip', value: created.floor }, ratio: vsFloor, target: '<= 1.3', met: vsFloor <= 1.3 });
  rows.push({ scenario: 'citus provisioning', measure: 'new workspace', ours: created.ours, baseline: { name: 'sharding on, a round trip per statement', value: created.native }, ratio: ratio(created.ours.p50, created.native.p50) });

  log(`lookups: ${WORKSPACES} workspaces on Citus and on plain PostgreSQL`);
  const onPlain = await subject(await plain.createDatabase('bench'));
  for (const s of [onCitus, onPlain]) {
    for (let i = 0; i < WORKSPACES; i += 4) {
      await Promise.all([0, 1, 2, 3].map((k) => s.manager.ensure(`look-${String(i + k).padStart(6, '0')}`)));
    }
  }
  const figures = await measureLookups(
    plan,
    {
      citus: { db: onCitus.db, searchPath: onCitus.searchPath, prefix: 'look', count: WORKSPACES },
      plain: { db: onPlain.db, searchPath: onPlain.searchPath, prefix: 'look', count: WORKSPACES },
    },
    ITERATIONS,
  );
  for (const [measure, ours] of Object.entries(figures.citus.ours)) {
    const base = figures.plain.ours[measure];
    if (!base) continue;
    rows.push({ scenario: 'citus lookups', measure: `${measure} at ${WORKSPACES}`, ours, baseline: { name: 'plain PostgreSQL', value: base }, ratio: ratio(ours.p50, base.p50) });
  }
  rows.push({ scenario: 'citus lookups', measure: 'SELECT 1', ours: figures.citus.roundTrip, baseline: { name: 'plain PostgreSQL', value: figures.plain.roundTrip }, ratio: ratio(figures.citus.roundTrip.p50, figures.plain.roundTrip.p50) });

  const table = formatTable(rows);
  process.stdout.write(`${table}\n`);
  const dir = path.join(packageRoot, 'bench/results');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'citus-latest.txt'), `${table}\n`);
  await writeFile(path.join(dir, 'citus-latest.json'), JSON.stringify({ iterations: ITERATIONS, workspaces: WORKSPACES, rows }, null, 2));
} finally {
  await Promise.all(opened.map((db) => db.close().catch(() => undefined)));
  await citus.destroy();
  await plain.destroy();
}
