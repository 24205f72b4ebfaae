import { open, readFile, type FileHandle } from 'node:fs/promises';
import fsx from 'fs-native-extensions';

export class DataDirInUseError extends Error {
  constructor(dataDir: string, holderPid: string) {
    super(
      `The embedded data directory ${dataDir} is in use by another pg-workspace-mcp process` +
        ` (pid ${holderPid || 'unknown'}). PGlite allows one process per data directory: this server` +
        ` tries again on every call and works once that process has exited; or point this one at another` +
        ` directory (--data-dir or PG_WORKSPACE_DATA_DIR), or use a PostgreSQL server (DATABASE_URL)` +
        ` so that several processes can share one database.`,
    );
    this.name = 'DataDirInUseError';
  }
}

/**
 * An exclusive flock(2) on `<dataDir>/lock`. The kernel drops it when the process dies, even on
 * SIGKILL, so there is never a stale lock to clean up; the file's content (our pid) only serves
 * the error message of the process that is turned away.
 */
export class DataDirLock {
  private constructor(readonly path: string, private readonly file: FileHandle) {}

  static async acquire(dataDir: string, lockPath: string): Promise<DataDirLock> {
    const file = await open(lockPath, 'a+');
    if (!fsx.tryLock(file.fd)) {
      await file.close();
      const holder = (await readFile(lockPath, 'utf8').catch(() => '')).trim();
      throw new DataDirInUseError(dataDir, holder);
    }
    await file.truncate(0);
    await file.write(`${process.pid}\n`);
    return new DataDirLock(lockPath, file);
  }

  async release(): Promise<void> {
    await this.file.truncate(0).catch(() => undefined);
    fsx.unlock(this.file.fd);
    await this.file.close();
  }
}
