import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { SessionDatabase, type LockHolder, type LockTry, type PipelineOutcome, type Queryable } from '../../src/db/database.js';
import { openOrCreateStore, PGLITE_START_PARAMS } from '../../src/db/embedded/pglite-store.js';
import { tempDir } from './fixtures.js';

/**
 * A PGlite without the pgvector bundle: a real database on which `vector` is not available. A
 * copy of the template `npm run build` makes, as a store is (PGlite's initdb takes seconds of CPU).
 */
export async function pgliteWithoutPgvector(): Promise<SessionDatabase> {
  const pgdata = path.join(await tempDir('pgw-no-vector-'), 'pgdata');
  const pglite = await openOrCreateStore(pgdata, () => undefined, undefined, (dir) => PGlite.create({ dataDir: dir, startParams: PGLITE_START_PARAMS }));
  const session: Queryable = {
    query: async <R>(sql: string, params?: readonly unknown[]) => (await pglite.query<R>(sql, params as unknown[] | undefined)).rows,
    exec: async (sql: string) => {
      await pglite.exec(sql);
    },
  };
  return new (class extends SessionDatabase {
    readonly kind = 'pglite' as const;
    readonly description = 'PGlite without pgvector';
    // One caller at a time in these tests: no mutex needed.
    withSession<T>(fn: (s: Queryable) => Promise<T>): Promise<T> {
      return fn(session);
    }
    // Nobody else uses this database: every try takes the lock.
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
