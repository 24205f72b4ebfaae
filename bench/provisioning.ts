import type { Database } from '../src/db/database.js';
import { quoteIdent } from '../src/db/identifiers.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { registerBare } from '../src/registry/registry-sql.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { install } from '../harness/fixtures.js';

/** The workspace DDL of a plan, as the statements a workspace needs. */
export function workspaceStatements(plan: InstallPlan): { sql: string; createsTable?: { name: string } }[] {
  return plan.extensions.flatMap((p) => [...p.workspace.structural, ...p.workspace.dependent]);
}

export async function managerFor(db: Database, plan: InstallPlan): Promise<WorkspaceManager> {
  const report = await install(db, plan);
  return new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger);
}

const suffix = (i: number) => (i < 0 ? `warm${-i}` : String(i));

/** Ours: ensure_workspace's engine call on ids never seen (a cache miss that creates). */
export function provisionOurs(manager: WorkspaceManager, prefix: string): (i: number) => Promise<unknown> {
  return (i) => manager.ensure(`${prefix}-${suffix(i)}`);
}

/** Baseline (a), the floor: the same DDL as one transaction in one plain query. */
export function provisionRawFloor(db: Database, plan: InstallPlan, prefix: string, searchPath: string[]): (i: number) => Promise<unknown> {
  const ddl = workspaceStatements(plan).map((s) => `${s.sql};`).join('\n');
  return (i) => {
    const schema = `raw_${prefix}_${suffix(i)}`;
    const path = [schema, ...searchPath].map(quoteIdent).join(', ');
    return db.exec(`BEGIN; CREATE SCHEMA ${quoteIdent(schema)}; SET LOCAL search_path TO ${path};\n${ddl}\nCOMMIT;`);
  };
}

/**
 * Baseline (b), the Python seed's way: an information_schema existence query, then a
 * transaction with one round trip per statement (SQLAlchemy's create_all also asks pg_class
 * whether each table exists first), then the registry insert in a transaction of its own.
 */
export function provisionSeedStyle(db: Database, plan: InstallPlan, prefix: string, searchPath: string[]): (i: number) => Promise<unknown> {
  const statements = workspaceStatements(plan);
  return async (i) => {
    const id = `seed-${prefix}-${suffix(i)}`;
    const schema = `seed_${prefix}_${suffix(i)}`;
    await db.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema]);
    await db.withSession(async (s) => {
      await s.query('BEGIN');
      await s.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
      await s.query(`SET search_path TO ${[schema, ...searchPath].map(quoteIdent).join(', ')}`);
      for (const statement of statements) {
        if (statement.createsTable) {
          await s.query(
            `SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2`,
            [schema, statement.createsTable.name],
          );
        }
        await s.query(statement.sql);
      }
      await s.query('COMMIT');
      await s.query('RESET search_path');
    });
    await db.transaction((tx) => registerBare(tx, id, schema, 'seed-style'));
  };
}

/** Fills the registry with `n` real workspaces through our own path, `workers` at a time. */
export async function seedWorkspaces(manager: WorkspaceManager, prefix: string, n: number, workers = 4): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < n) {
        const i = next++;
        await manager.ensure(`${prefix}-${String(i).padStart(6, '0')}`);
      }
    }),
  );
  return performance.now() - started;
}

/** Throughput of `workers` concurrent provisioners on distinct ids, and how many failed. */
export async function provisionConcurrently(managers: WorkspaceManager[], prefix: string, perWorker: number) {
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    managers.map(async (m, w) => {
      for (let i = 0; i < perWorker; i++) {
        await m.ensure(`${prefix}-${w}-${i}`).catch(() => errors++);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { perSecond: Math.round(((managers.length * perWorker) / seconds) * 10) / 10, errors };
}

/** The raw-DDL floor with `workers` connections at once, on distinct schemas. */
export async function rawConcurrently(db: Database, plan: InstallPlan, searchPath: string[], prefix: string, workers: number, perWorker: number) {
  const provision = provisionRawFloor(db, plan, `raw_${prefix}`, searchPath);
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; i < perWorker; i++) await provision(w * perWorker + i).catch(() => errors++);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { perSecond: Math.round(((workers * perWorker) / seconds) * 10) / 10, errors };
}

/**
 * Issue 18's optional spare-schema pool, measured before any is built: a workspace made ahead of
 * time (`prepare`, untimed) under a spare name, then claimed as one transaction in one round
 * trip: the rename and the registry row. A lower bound for such a pool: it leaves out what a real
 * one would add (choosing a spare under a lock, refilling in the background, the ledger rows).
 */
export function provisionFromSpare(db: Database, plan: InstallPlan, prefix: string, searchPath: string[]) {
  const makeSpare = provisionRawFloor(db, plan, `spare_${prefix}`, searchPath);
  return {
    prepare: (i: number) => makeSpare(i),
    claim: (i: number) => {
      const spare = `raw_spare_${prefix}_${suffix(i)}`;
      const schema = `claimed_${prefix}_${suffix(i)}`;
      return db.exec(
        `BEGIN; ALTER SCHEMA ${quoteIdent(spare)} RENAME TO ${quoteIdent(schema)};
         INSERT INTO project_registry.workspace_config (project_id, schema_name, workspace_fingerprint)
         VALUES ('claimed-${prefix}-${suffix(i)}', '${schema}', 'spare'); COMMIT;`,
      );
    },
  };
}
