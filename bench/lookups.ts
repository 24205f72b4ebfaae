import type { Database } from '../src/db/database.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import type { Row } from './report.js';
import { ratio, sampleInterleaved, type Distribution } from './stats.js';

export interface LookupFigures {
  ours: Record<string, Distribution>;
  informationSchema: Record<string, Distribution>;
  /** `SELECT 1`: the round trip that no lookup can beat, for reading the ratios. */
  roundTrip: Distribution;
  /**
   * The same questions timed by the server (pg_stat_statements: planning and execution of every
   * statement a question sent, per question, in ms), when the subject asked for it: the rest of
   * an end-to-end figure is the client and the round trip.
   */
  serverSide?: { ours: Record<string, number>; informationSchema: Record<string, number>; roundTrip: number };
}

export interface LookupSubject {
  db: Database;
  searchPath: string[];
  /** Its registry holds `count` workspaces named `${prefix}-NNNNNN`. */
  prefix: string;
  count: number;
  /** Also time the questions server-side: needs pg_stat_statements preloaded (real PostgreSQL). */
  serverSide?: boolean;
}

type Questions = Record<string, (i: number) => Promise<unknown>>;

/**
 * The questions agents ask, of one subject: ours through the workspace manager (a fresh one for
 * existence, so no cache helps), the baseline through information_schema.
 */
async function questions(plan: InstallPlan, { db, searchPath, prefix, count }: LookupSubject): Promise<{ ours: Questions; informationSchema: Questions }> {
  const id = (i: number) => `${prefix}-${String(Math.abs(i * 7919) % count).padStart(6, '0')}`;
  const schema = (i: number) => `project_${id(i).replaceAll('-', '_')}`;
  const manager = new WorkspaceManager(db, plan, searchPath, silentLogger);
  let middleCursor: string | undefined;
  for (let seen = 0; seen < count / 2; ) {
    const page = await manager.list({ limit: 500, prefix: `${prefix}-`, cursor: middleCursor });
    seen += page.workspaces.length;
    middleCursor = page.nextCursor ?? undefined;
    if (!middleCursor) break;
  }
  const columns = ['id', 'content', 'embedding', 'missing_column'];
  return {
    ours: {
      exists: (i) => new WorkspaceManager(db, plan, searchPath, silentLogger).ensure(id(i)),
      'list first page': () => manager.list({ limit: 50 }),
      'list middle page': () => manager.list({ limit: 50, cursor: middleCursor }),
      validate_columns: (i) => manager.validateColumns({ projectId: id(i), table: 'chunks', columns }),
    },
    informationSchema: {
      exists: (i) => db.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema(i)]),
      'list first page': () =>
        db.query(`SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'project\\_%' ORDER BY schema_name LIMIT 50`),
      'list middle page': () =>
        db.query(`SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'project\\_%' ORDER BY schema_name LIMIT 50 OFFSET $1`, [
          Math.floor(count / 2),
        ]),
      validate_columns: (i) =>
        db.query('SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name = ANY ($3)', [
          schema(i),
          'chunks',
          columns,
        ]),
    },
  };
}

/**
 * Asks every subject every question, all taking turns: "at 10k vs at 100" and "vs
 * information_schema" then compare samples taken under the same machine state, not minutes apart.
 */
export async function measureLookups<K extends string>(plan: InstallPlan, subjects: Record<K, LookupSubject>, iterations: number): Promise<Record<K, LookupFigures>> {
  const names = Object.keys(subjects) as K[];
  const contenders: Questions = {};
  const asked: Partial<Record<K, { ours: Questions; informationSchema: Questions }>> = {};
  for (const name of names) {
    const { ours, informationSchema } = (asked[name] = await questions(plan, subjects[name]));
    for (const [measure, ask] of Object.entries(ours)) contenders[`${name}/ours/${measure}`] = ask;
    for (const [measure, ask] of Object.entries(informationSchema)) contenders[`${name}/info/${measure}`] = ask;
    contenders[`${name}/roundTrip`] = () => subjects[name].db.query('SELECT 1');
  }
  const sampled: Record<string, Distribution> = await sampleInterleaved(iterations, contenders);
  const figuresOf = (name: K): LookupFigures => {
    const pick = (side: string) =>
      Object.fromEntries(
        Object.entries(sampled)
          .filter(([key]) => key.startsWith(`${name}/${side}/`))
          .map(([key, value]) => [key.slice(`${name}/${side}/`.length), value]),
      );
    return { ours: pick('ours'), informationSchema: pick('info'), roundTrip: sampled[`${name}/roundTrip`] as Distribution };
  };
  const figures = Object.fromEntries(names.map((name) => [name, figuresOf(name)])) as Record<K, LookupFigures>;
  for (const name of names) {
    const { db, serverSide } = subjects[name];
    if (!serverSide) continue;
    const { ours, informationSchema } = asked[name]!;
    figures[name].serverSide = {
      ours: await serverSideTimes(db, ours, iterations),
      informationSchema: await serverSideTimes(db, informationSchema, iterations),
      roundTrip: (await serverSideTimes(db, { roundTrip: () => db.query('SELECT 1') }, iterations))['roundTrip']!,
    };
  }
  return figures;
}

/**
 * Each question's server-side time per call: pg_stat_statements is reset, the question asked
 * `calls` times on its own, and the planning and execution time of every statement it sent in
 * this database summed (top-level statements: a function's inner queries are inside its call).
 */
async function serverSideTimes(db: Database, asks: Questions, calls: number): Promise<Record<string, number>> {
  await db.exec('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const times: Record<string, number> = {};
  for (const [name, ask] of Object.entries(asks)) {
    await ask(-1);
    await db.query('SELECT pg_stat_statements_reset()');
    for (let i = 0; i < calls; i++) await ask(i);
    const [row] = await db.query<{ ms: number }>(
      `SELECT coalesce(sum(total_exec_time + total_plan_time), 0)::float8 AS ms FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%'`,
    );
    times[name] = Math.round(((row?.ms ?? 0) / calls) * 1000) / 1000;
  }
  return times;
}

export function lookupRows(label: string, small: LookupFigures, smallCount: number, large: LookupFigures, largeCount: number): Row[] {
  return Object.keys(large.ours).flatMap((measure) => {
    const oursLarge = large.ours[measure] as Distribution;
    const oursSmall = small.ours[measure] as Distribution;
    const infoLarge = large.informationSchema[measure] as Distribution;
    const growth = ratio(oursLarge.p50, oursSmall.p50);
    const speedup = ratio(infoLarge.p50, oursLarge.p50);
    return [
      {
        scenario: `3 lookups ${label}`,
        measure: `${measure} at ${largeCount} vs ${smallCount}`,
        ours: oursLarge,
        baseline: { name: `ours at ${smallCount}`, value: oursSmall },
        ratio: growth,
        target: '<= 1.5',
        met: growth <= 1.5,
      },
      {
        scenario: `3 lookups ${label}`,
        measure: `${measure} at ${largeCount}`,
        ours: oursLarge,
        baseline: { name: 'information_schema', value: infoLarge },
        ratio: ratio(oursLarge.p50, infoLarge.p50),
        target: 'baseline/ours >= 10',
        met: speedup >= 10,
        // An answer the database gives costs at least a bare round trip: information_schema over
        // that is the most any lookup that asks the database (as a correct one must) could gain.
        note:
          `information_schema is ${speedup}x slower; a bare round trip (SELECT 1) takes ${large.roundTrip.p50} ms, ` +
          `so no lookup that asks the database can be more than ${ratio(infoLarge.p50, large.roundTrip.p50)}x faster`,
      },
      ...serverSideRows(label, measure, large, largeCount),
    ];
  });
}

/** Where the time of a lookup goes: the server's share of the end-to-end figure, ours and the baseline's. */
function serverSideRows(label: string, measure: string, figures: LookupFigures, count: number): Row[] {
  const server = figures.serverSide;
  if (!server) return [];
  const ours = server.ours[measure] as number;
  const info = server.informationSchema[measure] as number;
  const endToEnd = (figures.ours[measure] as Distribution).p50;
  const infoEndToEnd = (figures.informationSchema[measure] as Distribution).p50;
  return [
    {
      scenario: `3 lookups ${label}`,
      measure: `${measure} at ${count}, server-side ms (pg_stat_statements)`,
      ours,
      baseline: { name: 'information_schema, server-side', value: info },
      ratio: ratio(ours, info),
      target: 'report',
      note:
        `end to end ${endToEnd} ms (information_schema ${infoEndToEnd} ms): the server's share is ${Math.round((ours / endToEnd) * 100)}% ` +
        `(${Math.round((info / infoEndToEnd) * 100)}%); SELECT 1 takes ${server.roundTrip} ms server-side, ${figures.roundTrip.p50} ms end to end`,
    },
  ];
}
