import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Every temp dir a test made in this worker, removed after its file (test/support/setup.ts). */
const made = new Set<string>();

export async function tempDir(prefix = 'pgw-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.add(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  const dirs = [...made];
  made.clear();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
}

// A worker that ends before its afterAll hooks (a crash, a timeout) still leaves nothing behind.
process.on('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});
