import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Removes the temp dirs each test file made (harness/temp-dirs.ts), also when it failed.
    setupFiles: ['test/support/setup.ts'],
    // Files run in parallel worker processes; each starts at most one PostgreSQL cluster.
    pool: 'forks',
    // Vitest's default is one worker fewer than the cores: one on a 2-core machine, which ran the
    // files one after another, a core idle whenever a file waited (a timeout, a sleeping
    // statement, a server booting). Two files at a time on two cores.
    maxWorkers: Math.max(availableParallelism(), 2),
    // Each worker loads the engine, PGlite (compiling its WebAssembly), the SQL parser and the MCP
    // SDK once, not once per file: about 1.5 s of CPU a file. The files share no state but what
    // they close (clusters, stores, servers, temp dirs) in their own hooks.
    isolate: false,
    testTimeout: 30_000,
    hookTimeout: 90_000,
    env: ramTempDir(),
  },
});

/**
 * The tests' temp dirs (each PGlite store and throwaway cluster among them) in RAM when TMPDIR is not set and Linux's
 * /dev/shm is there: a new store is a copy of the template's thousand files, and PGlite writes
 * and syncs its WAL and tables as it goes. On the 2-core development VM the template's copy
 * took 0.7 s on its disk and 0.04 s in /dev/shm, and the layer's system CPU time fell by half.
 */
function ramTempDir(): { TMPDIR?: string } {
  if (process.env['TMPDIR']) return {};
  try {
    return statSync('/dev/shm').isDirectory() ? { TMPDIR: '/dev/shm' } : {};
  } catch {
    return {};
  }
}

