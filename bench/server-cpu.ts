import { readdirSync, readFileSync } from 'node:fs';
import type { Database } from '../src/db/database.js';

/**
 * The CPU time a PostgreSQL cluster's processes spent (Linux's /proc/<pid>/schedstat: nanoseconds
 * on a CPU, not waiting for one), summed over the postmaster's children: what a call cost the
 * server, every backend included (idle ones catching up on invalidations too), whatever else the
 * machine runs. Undefined where /proc or the data directory cannot be read.
 */
export async function clusterCpu(db: Database): Promise<(() => number) | undefined> {
  const [row] = await db.query<{ dir: string }>(`SELECT pg_catalog.current_setting('data_directory') AS dir`);
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(`${row?.dir}/postmaster.pid`, 'utf8').split('\n')[0]);
    readFileSync(`/proc/${postmaster}/schedstat`, 'utf8');
  } catch {
    return undefined;
  }
  return () => {
    let total = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        // Fields after the command's closing parenthesis: state, then the parent's pid.
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== postmaster) continue;
        total += Number(readFileSync(`/proc/${entry}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // The process ended meanwhile.
      }
    }
    return total / 1e6;
  };
}
