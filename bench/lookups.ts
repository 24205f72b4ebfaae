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
}

export interface LookupSubject {
  db: Database;
  searchPath: string[];
  /** Its registry holds `count` workspaces named `${prefix}-NNNNNN`. */
  prefix: string;
  count: number;
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
  for (const name of names) {
    const { ours, informationSchema } = await questions(plan, subjects[name]);
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
  return Object.fromEntries(names.map((name) => [name, figuresOf(name)])) as Record<K, LookupFigures>;
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
    ];
  });
}
