import type { Database, Queryable } from '../db/database.js';
import { checkCitusNode, detectCitus, extensionsMissingOnWorkers, keepRegistryOnCoordinator, withShardingOff } from '../db/postgres/citus.js';
import { quoteIdent } from '../db/identifiers.js';
import { privilegeAdvice } from '../db/privilege-advice.js';
import { describePgError, sqlState } from '../db/sql-errors.js';
import {
  appliedGlobalMigrations,
  checkColumns,
  claimGlobalMigration,
  readInstallState,
  recordInstallState as recordInstall,
} from '../registry/registry-sql.js';
import type { Statement } from '../extensions/extension-sql.js';
import { migrationDrift } from '../extensions/extension.js';
import { InstallError, InstallPrivilegeError, type InstallPhase } from './install-error.js';
import { withInstallLock, type InstallLockOptions as InstallOptions } from './install-lock.js';
import type { InstallPlan } from './install-plan.js';
import type { PreparedExtension } from './prepared-extension.js';
import { applySeeds } from './seed-run.js';

export interface PhaseResult {
  status: 'applied' | 'skipped';
  statements: number;
  ms: number;
  /** Migrations applied in this run (migrations phase only). */
  applied?: string[];
}

export interface ExtensionReport {
  id: string;
  version: string;
  phases: Partial<Record<InstallPhase, PhaseResult>>;
}

export interface InstallReport {
  outcome: 'up-to-date' | 'installed';
  fingerprint: string;
  ms: number;
  /** Schemas of the PostgreSQL extensions (e.g. where `vector` lives), for workspace search paths. */
  searchPathSchemas: string[];
  extensions: ExtensionReport[];
  /** The Citus version when the database is a Citus coordinator (workspaces become distributed schemas), else null. */
  citus: string | null;
}


/** How to get each PostgreSQL extension we know of, for the missing-extension error. */
const HOW_TO_GET: Record<string, string> = {
  vector:
    'pgvector is not installed on this PostgreSQL server. Use a server that has it: the pgvector/pgvector image ' +
    '(see docker-compose.yml), or install the package (Debian/Ubuntu: postgresql-<major>-pgvector; ' +
    'Homebrew: pgvector; source: https://github.com/pgvector/pgvector). Or run without the extension ' +
    'that needs it: PG_WORKSPACE_DISABLED_EXTENSIONS=',
};

/**
 * Installs every enabled extension's global schema, in the phases of the design we grew from:
 * all structural DDL, then pending migrations, then dependent DDL, then required-column checks,
 * then seeds, each extension's share of a phase in one transaction. A warm boot whose database
 * already holds this exact install costs one query and no lock.
 */
export async function installExtensions(
  db: Database,
  plan: InstallPlan,
  options: InstallOptions,
): Promise<InstallReport> {
  const started = performance.now();
  try {
    const current = await readInstallState(db);
    // Citus is detected once, here (in the warm boot's one query when installed); plain
    // PostgreSQL and PGlite pay nothing more. On Citus a warm boot asks one more question.
    const citus = current ? current.citus : await detectCitus(db);
    const node = citus ? await checkCitusNode(db) : undefined;
    if (current?.fingerprint === plan.fingerprint && !node?.registryDistributed) {
      return upToDate(plan, current.searchPathSchemas, citus, started);
    }
    // On Citus every installer transaction runs with schema-based sharding off, so the registry
    // and any global schema stay plain schemas on the coordinator whatever the server's setting.
    const target = citus ? withShardingOff(db) : db;
    return await withInstallLock(db, options, () => runInstall(target, plan, options, started, citus));
  } catch (error) {
    // CREATE EXTENSION's failure already says who must run it.
    const needsGrant = sqlState(error) === '42501' || (error instanceof InstallError && error.sqlState === '42501' && error.phase !== 'extensions');
    throw needsGrant ? await withGrantAdvice(db, plan, error) : error;
  }
}

async function runInstall(
  db: Database,
  plan: InstallPlan,
  options: InstallOptions,
  started: number,
  citus: string | null,
): Promise<InstallReport> {
  if (citus) await db.transaction(keepRegistryOnCoordinator);
  // Another process may have finished the same install while we waited for the lock.
  const again = await readInstallState(db);
  if (again?.fingerprint === plan.fingerprint) return upToDate(plan, again.searchPathSchemas, citus, started);
  options.log.info('installing extension schemas', { extensions: plan.extensions.map((p) => p.extension.id) });

  const reports = plan.extensions.map((p) => ({ id: p.extension.id, version: p.extension.version, phases: {} }) as ExtensionReport);
  const each = async (phase: InstallPhase, step: (p: PreparedExtension) => Promise<PhaseResult>) => {
    for (const [i, p] of plan.extensions.entries()) {
      (reports[i] as ExtensionReport).phases[phase] = await step(p);
    }
  };

  const installed = await checkPgExtensions(db, plan);
  if (citus) await checkPgExtensionsOnWorkers(db, plan);
  await refuseMigrationDrift(db, plan);
  await each('structural', (p) => timed(() => applyStructural(db, p, installed)));
  await each('migrations', (p) => timed(() => applyMigrations(db, p)));
  await each('dependent', (p) => timed(() => runPhase(db, p, 'dependent', p.dependent)));
  await each('columns', (p) => timed(() => validateRequiredColumns(db, p)));
  await each('seeds', (p) => timed(() => applySeeds(db, p)));
  const searchPathSchemas = await recordInstallState(db, plan, reports);
  return { outcome: 'installed', fingerprint: plan.fingerprint, ms: elapsed(started), searchPathSchemas, extensions: reports, citus };
}

/** Like a workspace's, an install's missing privilege comes with the GRANTs that fix it. */
async function withGrantAdvice(db: Queryable, plan: InstallPlan, error: unknown): Promise<Error> {
  if (!(error instanceof InstallError)) {
    const advice = await privilegeAdvice(db, { uses: [] });
    return new InstallPrivilegeError(`Reading the workspace registry failed: ${describePgError(error)}\n${advice}`, { cause: error });
  }
  const statement = error.statement;
  // Qualified type names (pg_catalog.int4) are not where a statement creates anything.
  const schemas = statement ? statement.schemas.filter((s) => s !== 'pg_catalog') : [...plan.globalSchemas.keys()];
  const unqualified = !statement || schemas.length === 0 || (statement.createsTable !== undefined && statement.createsTable.schema === undefined);
  const advice = await privilegeAdvice(db, { creates: schemas, unqualified });
  error.message += `\n${advice}`;
  return error;
}

function upToDate(plan: InstallPlan, searchPathSchemas: string[], citus: string | null, started: number): InstallReport {
  return {
    outcome: 'up-to-date',
    citus,
    fingerprint: plan.fingerprint,
    ms: elapsed(started),
    searchPathSchemas,
    extensions: plan.extensions.map((p) => ({ id: p.extension.id, version: p.extension.version, phases: {} })),
  };
}

/** Fails before any DDL when a PostgreSQL extension is not available on the server. */
async function checkPgExtensions(db: Queryable, plan: InstallPlan): Promise<Set<string>> {
  const names = [...plan.pgExtensions.keys()];
  if (names.length === 0) return new Set();
  const rows = await db.query<{ name: string; installed: boolean }>(
    `SELECT name, installed_version IS NOT NULL AS installed
       FROM pg_catalog.pg_available_extensions WHERE name = ANY ($1::text[])`,
    [names],
  );
  for (const name of names) {
    if (rows.some((r) => r.name === name)) continue;
    const needers = plan.pgExtensions.get(name) ?? [];
    throw new InstallError(
      needers.join(', '),
      'extensions',
      `needs the PostgreSQL extension "${name}", which this server does not have. ` +
        (HOW_TO_GET[name] ? `${HOW_TO_GET[name]}${needers.join(',')}` : `Install "${name}" on the server.`),
    );
  }
  return new Set(rows.filter((r) => r.installed).map((r) => r.name));
}

/** Citus creates an extension on every worker when the coordinator does: each needs its files. */
async function checkPgExtensionsOnWorkers(db: Queryable, plan: InstallPlan): Promise<void> {
  const missing = await extensionsMissingOnWorkers(db, [...plan.pgExtensions.keys()]);
  for (const [node, names] of missing) {
    const needers = names.flatMap((name) => plan.pgExtensions.get(name) ?? []);
    throw new InstallError(
      [...new Set(needers)].join(', '),
      'extensions',
      `needs the PostgreSQL extension(s) ${names.join(', ')} on every Citus node, but worker ${node} does not have ` +
        `${names.length > 1 ? 'them' : 'it'} installed. Install the same extension packages on every worker ` +
        `(Citus then creates the extension there when the coordinator does).`,
    );
  }
}

async function applyStructural(db: Database, p: PreparedExtension, installed: Set<string>): Promise<number> {
  // An extension installed by an administrator is used as is: CREATE EXTENSION needs privileges
  // that a production role often lacks.
  const missing = p.extension.requires.filter((name) => !installed.has(name));
  if (missing.length === 0 && p.structural.length === 0) return 0;
  await db.transaction(async (tx) => {
    for (const name of missing) {
      try {
        await tx.exec(`CREATE EXTENSION IF NOT EXISTS ${quoteIdent(name)}`);
      } catch (error) {
        throw new InstallError(
          p.extension.id,
          'extensions',
          `CREATE EXTENSION ${name} failed: ${(error as Error).message}. ` +
            (sqlState(error) === '42501'
              ? `Ask an administrator to run CREATE EXTENSION ${name}; in this database once.`
              : ''),
          error,
        );
      }
      installed.add(name);
    }
    await runStatements(tx, p, 'structural', p.structural);
  });
  return missing.length + p.structural.length;
}

async function applyMigrations(db: Database, p: PreparedExtension): Promise<number | PhaseResult> {
  if (p.migrations.length === 0) return 0;
  const applied = new Set((await appliedGlobalMigrations(db, p.extension.id)).map((r) => r.name));
  const pending = p.migrations.filter((m) => !applied.has(m.migration.name));
  if (pending.length === 0) return 0;
  const ran: string[] = [];
  let statements = 0;
  await db.transaction(async (tx) => {
    for (const { migration, statements: sql } of pending) {
      if (!(await claimGlobalMigration(tx, p.extension.id, migration))) continue;
      await runStatements(tx, p, 'migrations', sql);
      ran.push(migration.name);
      statements += sql.length;
    }
  });
  return { status: ran.length > 0 ? 'applied' : 'skipped', statements, ms: 0, applied: ran };
}

/** An applied migration whose file has changed since means the database and the code disagree. */
async function refuseMigrationDrift(db: Queryable, plan: InstallPlan): Promise<void> {
  const rows = await appliedGlobalMigrations(db);
  for (const p of plan.extensions) {
    for (const { migration } of p.migrations) {
      const drift = migrationDrift(p.extension.id, migration, rows);
      if (drift) throw new InstallError(p.extension.id, 'migrations', drift);
    }
  }
}

async function runPhase(db: Database, p: PreparedExtension, phase: InstallPhase, statements: readonly Statement[]) {
  if (statements.length === 0) return 0;
  await db.transaction((tx) => runStatements(tx, p, phase, statements));
  return statements.length;
}

async function runStatements(tx: Queryable, p: PreparedExtension, phase: InstallPhase, statements: readonly Statement[]) {
  for (const statement of statements) {
    try {
      await tx.exec(statement.sql);
    } catch (error) {
      throw InstallError.statementFailed(p.extension.id, phase, statement, error);
    }
  }
}

async function validateRequiredColumns(db: Queryable, p: PreparedExtension): Promise<number> {
  for (const { schema, table, columns } of p.requiredColumns) {
    const check = await checkColumns(db, schema, table, columns);
    if (!check.tableExists || check.missing.length > 0) {
      throw new InstallError(
        p.extension.id,
        'columns',
        check.tableExists
          ? `required columns missing from ${schema}.${table}: ${check.missing.join(', ')}. Add them in a migration.`
          : `required table ${schema}.${table} does not exist. Create it in the owning extension's schema.sql.`,
      );
    }
  }
  return p.requiredColumns.length;
}

async function recordInstallState(db: Database, plan: InstallPlan, reports: ExtensionReport[]): Promise<string[]> {
  const extensions = reports.map((r) => ({ id: r.id, version: r.version }));
  return db.transaction((tx) => recordInstall(tx, plan.fingerprint, [...plan.pgExtensions.keys()], extensions));
}

async function timed(step: () => Promise<number | PhaseResult>): Promise<PhaseResult> {
  const started = performance.now();
  const result = await step();
  const ms = elapsed(started);
  if (typeof result === 'number') return { status: result > 0 ? 'applied' : 'skipped', statements: result, ms };
  return { ...result, ms };
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}
