import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import fsx from 'fs-native-extensions';
import type { LockHolder, LockTry } from '../database.js';

/*
 * Locks as flock(2)s on files `<dir>/lock-<key in hex>`, for the processes sharing one embedded
 * store: they share its single session too, so advisory locks there would not keep them apart.
 * The kernel drops a flock when its process dies, even on SIGKILL. The file holds the holder's
 * pid and since when, for the messages of those waiting.
 */

const fileOf = (dir: string, key: bigint) => path.join(dir, `lock-${key.toString(16)}`);

/** One try for the file lock `key` in `dir`, as `Database.tryExclusive` describes. */
export async function tryFileLock<T>(dir: string, key: bigint, attempt: LockTry, body: () => Promise<T>): Promise<T | undefined> {
  const file = await open(fileOf(dir, key), 'a+');
  try {
    if (!fsx.tryLock(file.fd)) {
      attempt.decide({ locked: false, holders: attempt.nameHolders() ? await fileLockHolders(dir, key) : undefined });
      return undefined;
    }
    try {
      if (!attempt.decide({ locked: true })) return undefined;
      await file.truncate(0);
      await file.write(`${process.pid} ${Date.now()}\n`);
      return await body();
    } finally {
      await file.truncate(0).catch(() => undefined);
      fsx.unlock(file.fd);
    }
  } finally {
    await file.close();
  }
}

export async function fileLockHolders(dir: string, key: bigint): Promise<LockHolder[]> {
  const [pid, since] = (await readFile(fileOf(dir, key), 'utf8').catch(() => '')).trim().split(' ').map(Number);
  // A holder that was killed left its pid in the file; the kernel freed its lock all the same.
  if (!pid || !(await isLocked(fileOf(dir, key)))) return [];
  const heldSeconds = since ? Math.round((Date.now() - since) / 1000) : null;
  return [{ pid, application_name: 'pg-workspace-mcp', client_addr: null, state: `holds ${fileOf(dir, key)}`, held_seconds: heldSeconds }];
}

/** Whether any open file (this process's own included) holds the lock, by trying it on a descriptor of our own. */
async function isLocked(file: string): Promise<boolean> {
  const handle = await open(file, 'r+').catch(() => undefined);
  if (!handle) return false;
  try {
    if (!fsx.tryLock(handle.fd)) return true;
    fsx.unlock(handle.fd);
    return false;
  } finally {
    await handle.close();
  }
}
