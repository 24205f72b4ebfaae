import { PGlite } from '@electric-sql/pglite';
import { SessionDatabase, type LockHolder, type LockTry, type PipelineOutcome, type Queryable } from '../../src/db/database.js';

/** An in-memory PGlite without the pgvector bundle: a real database on which `vector` is not available. */
export async function pgliteWithoutPgvector(): Promise<SessionDatabase> {
  const pglite = await PGlite.create();
  const session: Queryable = {
    query: async <R>(sql: string, params?: readonly unknown[]) => (await pglite.query<R>(sql, params as unknown[] | undefined)).rows,
    exec: async (sql: string) => {
      await pglite.exec(sql);
    },
  };
  return new (class extends SessionDatabase {
    readonly kind = 'pglite' as const;
    readonly description = 'in-memory PGlite without pgvector';
    // One caller at a time in these tests: no mutex needed.
    withSession<T>(fn: (s: Queryable) => Promise<T>): Promise<T> {
      return fn(session);
    }
    // Nobody else uses this in-memory database: every try takes the lock.
    tryExclusive<T>(_key: bigint, attempt: LockTry, body: () => Promise<T>): Promise<T | undefined> {
      return attempt.decide({ locked: true }) ? body() : Promise.resolve(undefined);
    }
    async lockHolders(): Promise<LockHolder[]> {
      return [];
    }
    pipeline(): Promise<PipelineOutcome> {
      throw new Error('not used: these tests run no SQL tools');
    }
    runAsRole(): Promise<void> {
      throw new Error('not used: these tests run no SQL tools');
    }
    async registerVectorTypes(): Promise<void> {}
    close(): Promise<void> {
      return pglite.close();
    }
  })();
}
