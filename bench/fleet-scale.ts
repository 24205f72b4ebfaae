/**
 * `npm run bench:fleet` (issue 24, item 7): every per-workspace call at a few workspaces and at
 * many, each workspace set up as an agent would (ensure, then `execute` of a CREATE TABLE with a
 * foreign key, a CREATE FUNCTION and a CREATE TRIGGER). Two throwaway clusters, one per size:
 * roles are cluster-wide catalog rows, so a small fleet beside a large one in the same cluster
 * would not be small. Both run the engine in this process (no MCP), as a role of its own, taking
 * turns call by call, beside the same statements sent directly as the superuser (PostgreSQL's own
 * growth: the floor).
 *
 * Each call is timed twice: wall clock, and the CPU time the cluster's processes spent on it
 * (server-cpu.ts), which a machine shared with other work moves far less.
 *
 * Knobs: BENCH_FLEET_SMALL (10), BENCH_FLEET_LARGE (10000), BENCH_ITERATIONS (20),
 * BENCH_FLEET_WORKERS (2, connections building each fleet), BENCH_FLEET_HOLD=1 (after the
 * build, print both databases' URLs and keep the clusters until Ctrl-C, for EXPLAIN and profiling),
 * BENCH_FLEET_URLS=<small>,<large> (the superuser's URLs a held run printed: measure on its
 * fleets instead of building; the measured workspaces are dropped afterwards, so the fleets keep
 * their size for the next run), BENCH_FLEET_SUPERUSER=1 (the engine as the superuser, not as a
 * CREATEROLE role of its own; a held run and the runs on it must agree), BENCH_FLEET_PER_DATABASE
 * (--workspaces-per-database of both servers, default SUGGESTED_WORKSPACES_PER_DATABASE; `off`:
 * every workspace in one database). Spread, a fleet larger than a database is built short of its
 * size by the workspaces measured, which then fill its last database (builtSize).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { parseCommand, SUGGESTED_WORKSPACES_PER_DATABASE } from '../src/config.js';
import { memberUrl } from '../src/databases/placements.js';
import { quoteIdent } from '../src/db/identifiers.js';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { memberFor } from '../src/db/role-membership.js';
import { ProvisioningEngine } from '../src/engine.js';
import type { Ready } from '../src/services.js';
import { silentLogger } from '../src/logger.js';
import { principalScript, roleNameFor } from '../src/sandbox/sandbox-ddl.js';
import { schemaNameFor } from '../src/workspaces/project-id.js';
import { planFor } from '../harness/fixtures.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { provisionRawFloor } from './provisioning.js';
import { formatTable, type Row } from './report.js';
import { clusterCpu } from './server-cpu.js';
import { distribution, ratio, type Distribution } from './stats.js';

const SMALL = Number(process.env['BENCH_FLEET_SMALL'] ?? 10);
const LARGE = Number(process.env['BENCH_FLEET_LARGE'] ?? 10_000);
const ITERATIONS = Number(process.env['BENCH_ITERATIONS'] ?? 20);
const WORKERS = Number(process.env['BENCH_FLEET_WORKERS'] ?? 2);
const REUSE = process.env['BENCH_FLEET_URLS']?.split(',');
const PER_DATABASE = process.env['BENCH_FLEET_PER_DATABASE'] === 'off' ? undefined : Number(process.env['BENCH_FLEET_PER_DATABASE'] ?? SUGGESTED_WORKSPACES_PER_DATABASE);
/** The engine's role (see serverUrl). */
const SERVER_ROLE = 'mcp_app';
/** Names the measured workspaces of this run, which a held fleet may have seen runs before. */
const RUN = REUSE ? `r${Date.now().toString(36)}` : 'measured';
/** The two whole workspaces made before measuring, this run's own (a held fleet's next run makes its own). */
const WARM = [0, 1].map((w) => `${RUN}-warm-${w}`);
const log = (message: string) => process.stderr.write(`[bench:fleet] ${message}\n`);

/** An agent's objects: a table with a foreign key to the workspace's own `files`, a function, a trigger. */
const AGENT = {
  table: `CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id bigint REFERENCES files ON DELETE CASCADE, body text NOT NULL, updated_at timestamptz)`,
  fn: `CREATE FUNCTION touch_note() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.updated_at := now(); RETURN NEW; END$$`,
  trigger: 'CREATE TRIGGER notes_touch BEFORE INSERT OR UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION touch_note()',
  insert: 'INSERT INTO notes (body) VALUES ($1)',
};

interface Side {
  /** Undefined when measuring a held run's fleet (BENCH_FLEET_URLS). */
  cluster: PgCluster | undefined;
  engine: ProvisioningEngine;
  ready: Ready;
  /** The services of the database holding a workspace (spread, a member database's). */
  readyFor(projectId: string): Promise<Ready>;
  url: string;
  /** The floor's own connection to the database of `ready`, opened after the build: PostgreSQL's cost, not a busy session's. */
  direct(ready: Ready): Promise<PostgresDatabase>;
  directs: Map<string, PostgresDatabase>;
  /** The cluster's CPU time (undefined where it cannot be read). */
  cpu: Awaited<ReturnType<typeof clusterCpu>>;
}

/**
 * The engine's database URL: as SERVER_ROLE, set up as docs/isolation.md asks (CREATEROLE, CREATE
 * on the database, pgvector created by an admin), or as the superuser with BENCH_FLEET_SUPERUSER=1,
 * for whom PostgreSQL skips the privilege checks a server's role pays for.
 */
async function serverUrl(cluster: PgCluster | undefined, url: string): Promise<string> {
  if (process.env['BENCH_FLEET_SUPERUSER'] === '1') return url;
  const parsed = new URL(url);
  if (cluster) {
    const database = parsed.pathname.slice(1);
    // CREATEDB: spread, the server makes the member databases, from template1, where an admin made pgvector.
    await cluster.sql(`CREATE ROLE ${SERVER_ROLE} LOGIN CREATEROLE${PER_DATABASE === undefined ? '' : ' CREATEDB'}`);
    await cluster.sql(`GRANT CREATE ON DATABASE ${quoteIdent(database)} TO ${SERVER_ROLE}`);
    for (const db of PER_DATABASE === undefined ? [database] : [database, 'template1']) {
      const admin = new PostgresDatabase({ connectionString: memberUrl(url, db), maxConnections: 1 });
      await admin.exec('CREATE EXTENSION IF NOT EXISTS vector').finally(() => admin.close());
    }
  }
  parsed.username = SERVER_ROLE;
  return parsed.toString();
}

async function side(settings: Record<string, string>, heldUrl?: string): Promise<Side> {
  const cluster = heldUrl ? undefined : ((await startPgCluster({ settings })) ?? undefined);
  if (!heldUrl && !cluster) throw new Error('The benchmarks need PostgreSQL binaries (see docs/development.md).');
  const url = heldUrl ?? (await cluster!.createDatabase('fleet'));
  const command = parseCommand([], {
    DATABASE_URL: await serverUrl(cluster, url),
    HOME: process.env['HOME'] ?? '/tmp',
    ...(PER_DATABASE === undefined ? {} : { PG_WORKSPACE_WORKSPACES_PER_DATABASE: String(PER_DATABASE) }),
  });
  if (command.kind !== 'serve') throw new Error('expected a serve configuration');
  const engine = new ProvisioningEngine(command.config, silentLogger);
  engine.start();
  const directs = new Map<string, PostgresDatabase>();
  const direct = async (r: Ready) => {
    const name = await databaseOf(r);
    let db = directs.get(name);
    if (!db) directs.set(name, (db = new PostgresDatabase({ connectionString: memberUrl(url, name), maxConnections: 2 })));
    return db;
  };
  const ready = await engine.ready(120_000);
  return { cluster, engine, ready, readyFor: (id) => engine.readyFor(id, 'create', 120_000), url, direct, directs, cpu: await clusterCpu(await direct(ready)) };
}

const databaseNames = new WeakMap<Ready, Promise<string>>();
/** The name of the database a Ready serves. */
function databaseOf(r: Ready): Promise<string> {
  let name = databaseNames.get(r);
  if (!name) databaseNames.set(r, (name = r.db.query<{ name: string }>('SELECT current_database() AS name').then(([row]) => row?.name ?? '')));
  return name;
}

/** The calls an agent makes on a new workspace, through the engine the tools call. */
async function agentWorkspace(s: Side, projectId: string): Promise<void> {
  const r = await s.readyFor(projectId);
  await r.workspaces.ensure(projectId);
  for (const sql of [AGENT.table, AGENT.fn, AGENT.trigger]) await r.sandbox.execute(projectId, sql, []);
  await r.sandbox.execute(projectId, AGENT.insert, ['first']);
}

/**
 * `count` workspaces as agentWorkspace leaves them, in bulk: the engine's own ensure (the
 * workspace DDL and registry rows), then in one statement per workspace the engine's own
 * principal script (role, grants, sandbox function) and the agent's objects made as the
 * workspace's role (SET ROLE instead of its sandbox function: the same owner, the same catalog
 * rows, without a pipeline per statement).
 */
async function buildFleet(s: Side, prefix: string, count: number): Promise<void> {
  const [{ role } = { role: '' }] = await s.ready.db.query<{ role: string }>('SELECT current_user AS role');
  const searchPath = s.ready.report.searchPathSchemas;
  let next = 0;
  let done = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (next < count) {
        const projectId = `${prefix}-${String(next++).padStart(6, '0')}`;
        const r = await s.readyFor(projectId);
        const database = await databaseOf(r);
        await r.workspaces.ensure(projectId);
        const p = { schemaName: schemaNameFor(projectId), roleName: roleNameFor(database, projectId), searchPath };
        const path = [p.schemaName, ...searchPath].map(quoteIdent).join(', ');
        // A member of the role for this transaction only, as the engine is (memberFor).
        await r.db.exec(
          `BEGIN; ${principalScript(p, true, role)};
           ${memberFor(p.roleName, `SET LOCAL ROLE ${quoteIdent(p.roleName)}; SET LOCAL search_path TO ${path};
           ${AGENT.table}; ${AGENT.fn}; ${AGENT.trigger}; ${AGENT.insert.replace('$1', "'first'")}; RESET ROLE`)}; COMMIT`,
        );
        if (++done % 500 === 0) log(`${prefix}: ${done} of ${count} workspaces, ${Math.round((performance.now() - started) / 1000)} s`);
      }
    }),
  );
}

type Step = 'ensure' | 'firstCall' | 'table' | 'fn' | 'trigger' | 'insert' | 'describe' | 'rawWorkspace' | 'rawTable' | 'rawFn' | 'rawTrigger' | 'rawInsert';
const STEPS: Record<Step, string> = {
  ensure: 'ensure_workspace, new workspace',
  firstCall: 'first SQL call on it (query SELECT 1: makes its role and sandbox)',
  table: 'execute CREATE TABLE with a foreign key',
  fn: 'execute CREATE FUNCTION',
  trigger: 'execute CREATE TRIGGER',
  insert: 'execute one-row INSERT',
  describe: 'describe_workspace',
  rawWorkspace: 'floor: the workspace DDL sent directly (superuser, own connection to the workspace\'s database, one query)',
  rawTable: 'floor: the same CREATE TABLE sent directly',
  rawFn: 'floor: the same CREATE FUNCTION sent directly',
  rawTrigger: 'floor: the same CREATE TRIGGER sent directly',
  rawInsert: 'floor: the same INSERT sent directly',
};

interface Samples {
  ms: number[];
  cpu: number[];
}

/** One workspace's calls in order, each timed; then the same statements sent directly. */
async function measureOnce(s: Side, i: number, samples: Record<Step, Samples>): Promise<void> {
  const projectId = `${RUN}-${i}`;
  const timed = async (step: Step, fn: () => Promise<unknown>) => {
    const c = s.cpu?.now();
    const t = performance.now();
    await fn();
    samples[step].ms.push(performance.now() - t);
    if (c) samples[step].cpu.push(s.cpu!.since(c));
  };
  // Where a new workspace goes is part of ensure_workspace's cost (spread, a placement in the home database).
  await timed('ensure', async () => (await s.readyFor(projectId)).workspaces.ensure(projectId));
  const r = await s.readyFor(projectId);
  const { workspaces, sandbox: sql } = r;
  const db = await s.direct(r);
  await timed('firstCall', () => sql.query(projectId, 'SELECT 1', []));
  await timed('table', () => sql.execute(projectId, AGENT.table, []));
  await timed('fn', () => sql.execute(projectId, AGENT.fn, []));
  await timed('trigger', () => sql.execute(projectId, AGENT.trigger, []));
  await timed('insert', () => sql.execute(projectId, AGENT.insert, ['x']));
  await timed('describe', () => workspaces.describe(projectId));
  const raw = `raw_${RUN}_${i}`;
  await timed('rawWorkspace', () => provisionRawFloor(db, plan, RUN, r.report.searchPathSchemas)(i));
  const path = `SET search_path TO ${quoteIdent(raw)}`;
  await db.withSession(async (session) => {
    await session.exec(path);
    const direct = (step: Step, text: string, params?: unknown[]) => timed(step, () => session.query(text, params));
    await direct('rawTable', AGENT.table);
    await direct('rawFn', AGENT.fn);
    await direct('rawTrigger', AGENT.trigger);
    await direct('rawInsert', AGENT.insert, ['x']);
    await session.exec('RESET search_path');
  });
}

const plan = await planFor([]);
const settings = { shared_preload_libraries: "'pg_stat_statements'" };
log(`starting two clusters: ${SMALL} and ${LARGE} workspaces, ${PER_DATABASE === undefined ? 'all in one database' : `${PER_DATABASE} to a database`}`);
const [small, large] = [await side(settings, REUSE?.[0]), await side(settings, REUSE?.[1])];
const rows: Row[] = [];
try {
  const builtAt = performance.now();
  if (!REUSE) {
    await Promise.all([buildFleet(small, 'fleet', builtSize(SMALL)), buildFleet(large, 'fleet', builtSize(LARGE))]);
    log(`built both fleets in ${Math.round((performance.now() - builtAt) / 1000)} s; settling (VACUUM ANALYZE)`);
    // On a connection of its own, closed after: ANALYZE leaves its backend an attribute-options
    // cache entry per column analyzed, and PostgreSQL empties that cache by walking its whole hash
    // table on every pg_attribute invalidation. Kept idle beside the 10,000 fleet, that connection
    // cost 5-10 ms of the cluster's CPU each time it caught up on invalidations (every few calls).
    for (const s of [small, large]) {
      for (const r of await s.engine.readyAll(120_000)) {
        const settle = new PostgresDatabase({ connectionString: memberUrl(s.url, await databaseOf(r)), maxConnections: 2 });
        await settle.exec('VACUUM ANALYZE').finally(() => settle.close());
      }
    }
  }
  const buildSeconds = REUSE ? undefined : Math.round((performance.now() - builtAt) / 1000);
  if (!small.cpu || !large.cpu) log('the clusters\' CPU time cannot be read here (/proc, data directory): wall clock only');
  if (process.env['BENCH_FLEET_HOLD'] === '1') {
    log(`holding: small ${small.url}, large ${large.url} (Ctrl-C ends)`);
    await new Promise(() => setInterval(() => undefined, 60_000));
  }
  // A server that has served its whole fleet, as one that made it through the tools has: every
  // workspace's SQL sandbox called once by this engine (its connections' caches hold them).
  for (const [s, size] of [[small, SMALL], [large, LARGE]] as const) {
    const count = REUSE ? size : builtSize(size);
    const touched = performance.now();
    for (let i = 0; i < count; i++) {
      const id = `fleet-${String(i).padStart(6, '0')}`;
      await (await s.readyFor(id)).sandbox.query(id, 'SELECT 1', []);
    }
    log(`called the sandbox of each of ${count} workspaces in ${Math.round(performance.now() - touched)} ms`);
  }
  // Two whole workspaces through the tools' engine calls, unmeasured: caches and plans warm.
  // And the floor's connection to the database they land in, by the same statements sent directly.
  for (const s of [small, large]) {
    for (const [w, id] of WARM.entries()) {
      await agentWorkspace(s, id);
      const r = await s.readyFor(id);
      const db = await s.direct(r);
      await provisionRawFloor(db, plan, `${RUN}_warm`, r.report.searchPathSchemas)(w);
      await db.withSession(async (session) => {
        await session.exec(`SET search_path TO ${quoteIdent(`raw_${RUN}_warm_${w}`)}`);
        for (const sql of [AGENT.table, AGENT.fn, AGENT.trigger]) await session.query(sql);
        await session.query(AGENT.insert, ['x']);
        await session.exec('RESET search_path');
      });
    }
  }
  const samples = { small: newSamples(), large: newSamples() };
  for (let i = 0; i < ITERATIONS; i++) {
    // Taking turns, the first of each pair alternating: drift lands on both alike.
    const order = i % 2 === 0 ? (['small', 'large'] as const) : (['large', 'small'] as const);
    for (const which of order) await measureOnce(which === 'small' ? small : large, i, samples[which]);
  }
  for (const step of Object.keys(STEPS) as Step[]) {
    for (const kind of ['ms', 'cpu'] as const) {
      const [a, b] = [distribution(samples.small[step][kind]), distribution(samples.large[step][kind])];
      if (a.n === 0) continue;
      const floor = step.startsWith('raw');
      rows.push({
        scenario: 'fleet scale (pg)',
        measure: `${STEPS[step]}${kind === 'cpu' ? ', server CPU' : ''} at ${LARGE} vs ${SMALL}`,
        ours: b,
        baseline: { name: `at ${SMALL}`, value: a },
        ratio: ratio(b.p50, a.p50),
        target: floor ? 'report' : '<= 1.2',
        ...(floor ? {} : { met: b.p50 <= 1.2 * a.p50 }),
      });
    }
  }
  // Ours against the floor at each size: what the engine and its sandbox add to PostgreSQL's own cost.
  for (const [step, rawStep] of [['ensure', 'rawWorkspace'], ['table', 'rawTable'], ['fn', 'rawFn'], ['trigger', 'rawTrigger'], ['insert', 'rawInsert']] as const) {
    for (const [which, count] of [['small', SMALL], ['large', LARGE]] as const) {
      const [o, f] = [distribution(samples[which][step].cpu), distribution(samples[which][rawStep].cpu)];
      if (o.n === 0) continue;
      rows.push({ scenario: 'fleet scale (pg)', measure: `${STEPS[step]}, server CPU, at ${count}`, ours: o, baseline: { name: 'floor', value: f }, ratio: ratio(o.p50, f.p50), target: 'report' });
    }
  }
  const table = formatTable(rows);
  process.stdout.write(`\n${table}\n\n`);
  await mkdir('bench/results', { recursive: true });
  const raw = Object.fromEntries(
    (['small', 'large'] as const).map((w) => [
      w,
      Object.fromEntries(Object.entries(samples[w]).map(([k, v]) => [k, { ms: distribution(v.ms), cpu: distribution(v.cpu) }])),
    ]),
  ) as Record<'small' | 'large', Record<Step, { ms: Distribution; cpu: Distribution }>>;
  await writeFile(
    'bench/results/fleet-scale.json',
    JSON.stringify({ at: new Date().toISOString(), node: process.version, sizes: { small: SMALL, large: LARGE, iterations: ITERATIONS, perDatabase: PER_DATABASE ?? null }, buildSeconds, raw, rows }, null, 2),
  );
  await writeFile('bench/results/fleet-scale.txt', `${table}\n`);
} finally {
  for (const s of [small, large]) {
    // A held fleet keeps its size: this run's workspaces (the warm ones too) and floor schemas go.
    if (REUSE) {
      for (const [w, id] of WARM.entries()) {
        const r = await s.readyFor(id);
        await r.workspaces.drop(id);
        await (await s.direct(r)).exec(`DROP SCHEMA IF EXISTS ${quoteIdent(`raw_${RUN}_warm_${w}`)} CASCADE`);
      }
      for (let i = 0; i < ITERATIONS; i++) {
        const r = await s.readyFor(`${RUN}-${i}`);
        await r.workspaces.drop(`${RUN}-${i}`);
        await (await s.direct(r)).exec(`DROP SCHEMA IF EXISTS ${quoteIdent(`raw_${RUN}_${i}`)} CASCADE`);
      }
    }
    for (const db of s.directs.values()) await db.close();
    await s.engine.close();
    await s.cluster?.destroy();
  }
}

/**
 * The workspaces built of a fleet of `size`. Spread over databases, a fleet larger than one is
 * built short by the workspaces a run makes (the warm ones and the measured), which then fill its
 * last database: the measured ones land beside as many others as a full database holds.
 */
function builtSize(size: number): number {
  return PER_DATABASE === undefined || size < PER_DATABASE ? size : Math.max(0, size - ITERATIONS - WARM.length);
}

function newSamples(): Record<Step, Samples> {
  return Object.fromEntries(Object.keys(STEPS).map((k) => [k, { ms: [], cpu: [] }])) as unknown as Record<Step, Samples>;
}
