import { spawn } from 'node:child_process';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGliteDatabase } from '../src/db/embedded/pglite-database.js';
import { copyTemplate, openPGlite } from '../src/db/embedded/pglite-store.js';
import type { InstallPlan } from '../src/installer/install-plan.js';
import { silentLogger } from '../src/logger.js';
import { pgliteTemplateDir } from '../src/package-info.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { install, tempDir } from '../harness/fixtures.js';
import { distribution, type Distribution } from './stats.js';

export interface FreshStoreFigures {
  /** The floor: PGlite.create on an existing store with PGlite's own settings (and pgvector), then SELECT 1. */
  floor: Distribution;
  /** The same open with the settings the server opens its store with. */
  ownOpen: Distribution;
  /** The phases of a new store in the server's order, each on its own. */
  copy: Distribution;
  storeOpen: Distribution;
  install: Distribution;
  firstEnsure: Distribution;
  /** From nothing to the first ensure_workspace answered, in this process: the sum of the three. */
  total: Distribution;
}

/**
 * Scenario 12, in-process: where a fresh embedded store's time goes (copying the template,
 * opening it, installing the extensions, the first ensure_workspace), beside the floor measured
 * in the same rounds: PGlite's own bare open of an existing store. `copy` is the template copy
 * alone, into a directory of its own; `storeOpen` is PGliteDatabase.open of a new directory, the
 * copy included, as boot does it.
 */
export async function freshStorePhases(plan: InstallPlan, rounds: number): Promise<FreshStoreFigures> {
  const root = await tempDir('bench-fresh-');
  const existing = path.join(root, 'existing');
  await (await PGliteDatabase.open(existing, silentLogger)).close();
  const existingData = path.join(existing, 'pgdata');
  const samples: Record<keyof FreshStoreFigures, number[]> = { floor: [], ownOpen: [], copy: [], storeOpen: [], install: [], firstEnsure: [], total: [] };
  const timed = async <T>(into: number[], fn: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const result = await fn();
    into.push(performance.now() - started);
    return result;
  };
  for (let i = -1; i < rounds; i++) {
    const round: typeof samples = i < 0 ? { floor: [], ownOpen: [], copy: [], storeOpen: [], install: [], firstEnsure: [], total: [] } : samples;
    const floor = await timed(round.floor, async () => {
      const pglite = await PGlite.create({ dataDir: existingData, extensions: { vector } });
      await pglite.query('SELECT 1');
      return pglite;
    });
    await floor.close();
    const own = await timed(round.ownOpen, async () => {
      const pglite = await openPGlite(existingData);
      await pglite.query('SELECT 1');
      return pglite;
    });
    await own.close();
    const reason = await timed(round.copy, () => copyTemplate(path.join(root, `copy${i}`, 'pgdata'), pgliteTemplateDir));
    if (reason) throw new Error(`fresh store benchmark: ${reason}`);
    const started = performance.now();
    const db = await timed(round.storeOpen, () => PGliteDatabase.open(path.join(root, `fresh${i}`), silentLogger));
    try {
      const report = await timed(round.install, () => install(db, plan));
      await timed(round.firstEnsure, async () => {
        await db.registerVectorTypes();
        return new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger).ensure('first');
      });
      round.total.push(performance.now() - started);
    } finally {
      await db.close();
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, distribution(v)])) as unknown as FreshStoreFigures;
}

const PGLITE_OPEN = path.resolve('dist/bench/pglite-open.js');

/** Spawn of bench/pglite-open.ts to its `ready`: a new process's bare PGlite open of `pgdata`. */
export function spawnedPGliteOpen(pgdata: string): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, [PGLITE_OPEN, pgdata], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let ready: number | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      if (ready === undefined && chunk.toString().includes('ready')) ready = performance.now() - started;
    });
    child.once('error', reject);
    child.once('exit', (code) => (ready !== undefined && code === 0 ? resolve(ready) : reject(new Error(`pglite-open exited with ${code}`))));
  });
}
