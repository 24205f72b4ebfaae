import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import pgvector from 'pgvector';
import { silentLogger, type Logger } from '../logger.js';
import { DamagedStoreError, isStoreDamage } from './damaged-store.js';
import { SessionDatabase, type Queryable } from './database.js';
import { DataDirLock } from './data-dir-lock.js';
import { Mutex } from './mutex.js';
import { openOrCreateStore } from './pglite-store.js';

/**
 * Embedded PostgreSQL (PGlite, with pgvector) in `<dataDir>/pgdata`. PGlite is one session in
 * one process: the data directory is locked against other processes, and inside this process
 * every call takes its turn on the mutex, so a transaction is never interleaved with other work.
 */
export class PGliteDatabase extends SessionDatabase {
  readonly kind = 'pglite';
  readonly description: string;
  readonly #mutex = new Mutex();
  readonly #session: Queryable;

  private constructor(
    private readonly pglite: PGlite,
    private readonly lock: DataDirLock,
    dataDir: string,
  ) {
    super();
    this.description = `embedded PGlite at ${dataDir}`;
    const damaged = (error: unknown) => (isStoreDamage(error) ? new DamagedStoreError(dataDir, error) : error);
    this.#session = {
      query: async <R>(sql: string, params?: readonly unknown[]) => {
        try {
          return (await pglite.query<R>(sql, params as unknown[] | undefined)).rows;
        } catch (error) {
          throw damaged(error);
        }
      },
      exec: async (sql: string) => {
        await pglite.exec(sql).catch((error: unknown) => {
          throw damaged(error);
        });
      },
    };
  }

  static async open(dataDir: string, log: Logger = silentLogger): Promise<PGliteDatabase> {
    await mkdir(dataDir, { recursive: true });
    const lock = await DataDirLock.acquire(dataDir, path.join(dataDir, 'lock'));
    try {
      const pglite = await openOrCreateStore(path.join(dataDir, 'pgdata'), (reason) =>
        log.warn('new embedded store made with initdb (slower) instead of the template', { reason }),
      ).catch((error: unknown) => {
        throw isStoreDamage(error) ? new DamagedStoreError(dataDir, error) : error;
      });
      return new PGliteDatabase(pglite, lock, dataDir);
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  withSession<T>(fn: (session: Queryable) => Promise<T>): Promise<T> {
    return this.#mutex.run(() => fn(this.#session));
  }

  async registerVectorTypes(): Promise<void> {
    // The PGlite pgvector bundle ships no type parsers: add pgvector's own, as `pg` gets them.
    const rows = await this.query<{ oid: number }>(
      `SELECT oid FROM pg_catalog.pg_type WHERE typname = 'vector'`,
    );
    for (const { oid } of rows) this.pglite.parsers[oid] = (text: string) => pgvector.fromSql(text);
  }

  async close(): Promise<void> {
    await this.#mutex.run(async () => {
      try {
        await this.pglite.close();
      } finally {
        // A damaged store's aborted instance may fail to close: the directory is free regardless.
        await this.lock.release();
      }
    });
  }
}
