import { open, readFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import fsx from 'fs-native-extensions';
import type { LockHolder, LockScope } from './database.js';

/**
 * Locks as flock(2)s on files `<dir>/lock-<key in hex>`, for the processes sharing one embedded
 * store: they share its single session too, so advisory locks there would not keep them apart.
 * The kernel drops a flock when its process dies, even on SIGKILL. The file holds the holder's
 * pid and since when, for the messages of those waiting.
 */
export async function withFileLocks<T>(dir: string, fn: (locks: LockScope) => Promise<T>): Promise<T> {
  const held: FileHandle[] = [];
  const fileOf = (key: bigint) => path.join(dir, `lock-${key.toString(16)}`);
  try {
    return await fn({
      async tryLock(key) {
        const file = await open(fileOf(key), 'a+');
        if (!fsx.tryLock(file.fd)) {
          await file.close();
          return false;
        }
        await file.truncate(0);
        await file.write(`${process.pid} ${Date.now()}\n`);
        held.push(file);
        return true;
      },
      async holders(key): Promise<LockHolder[]> {
        const [pid, since] = (await readFile(fileOf(key), 'utf8').catch(() => '')).trim().split(' ').map(Number);
        if (!pid) return [];
        const heldSeconds = since ? Math.round((Date.now() - since) / 1000) : null;
        return [{ pid, application_name: 'pg-workspace-mcp', client_addr: null, state: `holds ${fileOf(key)}`, held_seconds: heldSeconds }];
      },
    });
  } finally {
    for (const file of held.reverse()) {
      await file.truncate(0).catch(() => undefined);
      fsx.unlock(file.fd);
      await file.close();
    }
  }
}
