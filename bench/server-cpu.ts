import { readdirSync, readFileSync } from 'node:fs';
import type { Database } from '../src/db/database.js';

/** CPU time (ms) of each of a cluster's processes, by pid, at one moment. */
export type CpuSnapshot = ReadonlyMap<number, number>;

/**
 * The CPU time a PostgreSQL cluster's processes spent (Linux's /proc/<pid>/schedstat: time on a
 * CPU, not waiting for one), over the postmaster's children: what a call cost the server, every
 * backend included (idle ones catching up on invalidations too), whatever else the machine runs.
 * `since` sums each process's growth since an earlier snapshot, a new one's whole time. A process
 * that ended meanwhile counts for nothing (its last slice is lost), never for less than nothing
 * (the pool closes connections between calls); with `countEnded` (spans of hundreds of
 * milliseconds, where a connection the pool closed at once after the call, a burst's extra,
 * matters) it counts through the postmaster's reaped children's time (/proc/<postmaster>/stat
 * cutime and cstime), less what it had spent at the earlier snapshot: read in clock ticks, so
 * each span is off by up to 10 ms, too coarse for calls of a few milliseconds.
 * Undefined where /proc or the data directory cannot be read.
 */
export async function clusterCpu(db: Database, options: { countEnded?: boolean } = {}): Promise<{ now(): CpuSnapshot; since(before: CpuSnapshot): number } | undefined> {
  const [row] = await db.query<{ dir: string }>(`SELECT pg_catalog.current_setting('data_directory') AS dir`);
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(`${row?.dir}/postmaster.pid`, 'utf8').split('\n')[0]);
    readFileSync(`/proc/${postmaster}/schedstat`, 'utf8');
  } catch {
    return undefined;
  }
  /** Fields of /proc/<pid>/stat after the command's closing parenthesis: state is [0], the parent's pid [1]. */
  const statFields = (pid: number | string) => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  };
  const now = (): CpuSnapshot => {
    const cpu = new Map<number, number>();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (Number(statFields(entry)[1]) !== postmaster) continue;
        cpu.set(Number(entry), Number(readFileSync(`/proc/${entry}/schedstat`, 'utf8').split(' ')[0]) / 1e6);
      } catch {
        // The process ended meanwhile.
      }
    }
    if (options.countEnded) {
      // cutime and cstime (stat fields 16 and 17, here [13] and [14]): USER_HZ is 100 on Linux.
      const fields = statFields(postmaster);
      cpu.set(REAPED, (Number(fields[13]) + Number(fields[14])) * 10);
    }
    return cpu;
  };
  const since = (before: CpuSnapshot): number => {
    const after = now();
    let total = 0;
    for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
    if (options.countEnded) for (const [pid, ms] of before) if (!after.has(pid)) total -= ms;
    return total;
  };
  return { now, since };
}

/** The snapshot's key for the children the postmaster has reaped (no pid is negative). */
const REAPED = -1;
