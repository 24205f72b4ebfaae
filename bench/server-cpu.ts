import { readdirSync, readFileSync } from 'node:fs';
import type { Database } from '../src/db/database.js';

/** CPU time (ms) of each of a cluster's processes, by pid, at one moment. */
export type CpuSnapshot = ReadonlyMap<number, number>;

/**
 * The CPU time a PostgreSQL cluster's processes spent (Linux's /proc/<pid>/schedstat: time on a
 * CPU, not waiting for one), over the postmaster's children: what a call cost the server, every
 * backend included (idle ones catching up on invalidations too), whatever else the machine runs.
 * `since` sums each process's growth since an earlier snapshot, a new one's whole time: a process
 * that ended meanwhile counts for nothing (its last slice is lost), never for less than nothing
 * (the pool closes connections between calls). Undefined where /proc or the data directory
 * cannot be read.
 */
export async function clusterCpu(db: Database): Promise<{ now(): CpuSnapshot; since(before: CpuSnapshot): number } | undefined> {
  const [row] = await db.query<{ dir: string }>(`SELECT pg_catalog.current_setting('data_directory') AS dir`);
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(`${row?.dir}/postmaster.pid`, 'utf8').split('\n')[0]);
    readFileSync(`/proc/${postmaster}/schedstat`, 'utf8');
  } catch {
    return undefined;
  }
  const now = (): CpuSnapshot => {
    const cpu = new Map<number, number>();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        // Fields after the command's closing parenthesis: state, then the parent's pid.
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== postmaster) continue;
        cpu.set(Number(entry), Number(readFileSync(`/proc/${entry}/schedstat`, 'utf8').split(' ')[0]) / 1e6);
      } catch {
        // The process ended meanwhile.
      }
    }
    return cpu;
  };
  const since = (before: CpuSnapshot): number => {
    let total = 0;
    for (const [pid, ms] of now()) total += ms - (before.get(pid) ?? 0);
    return total;
  };
  return { now, since };
}
