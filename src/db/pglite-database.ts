import { access, cp, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { PGlite, protocol } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import pgvector from 'pgvector';
import { pgliteTemplateDir } from '../package-info.js';
import { SessionDatabase, type PipelineOutcome, type PipelineStep, type Queryable } from './database.js';
import { PipelineCollector, writePipeline, type PipelineMessage } from './pipeline.js';
import { DataDirLock } from './data-dir-lock.js';
import { Mutex } from './mutex.js';

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
    this.#session = {
      query: async <R>(sql: string, params?: readonly unknown[]) =>
        (await pglite.query<R>(sql, params as unknown[] | undefined)).rows,
      exec: async (sql: string) => {
        await pglite.exec(sql);
      },
    };
  }

  static async open(dataDir: string): Promise<PGliteDatabase> {
    await mkdir(dataDir, { recursive: true });
    const lock = await DataDirLock.acquire(dataDir, path.join(dataDir, 'lock'));
    try {
      const pgdata = path.join(dataDir, 'pgdata');
      if (!(await exists(pgdata)) && (await exists(pgliteTemplateDir))) await copyTemplate(pgdata);
      const pglite = await PGlite.create({ dataDir: pgdata, extensions: { vector } });
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

  pipeline(steps: readonly PipelineStep[]): Promise<PipelineOutcome> {
    return this.#mutex.run(async () => {
      const parts: Uint8Array[] = [];
      writePipeline(steps, {
        parse: (o) => parts.push(protocol.serialize.parse(o)),
        bind: (o) => parts.push(protocol.serialize.bind(o)),
        execute: (o) => parts.push(protocol.serialize.execute(o)),
        describe: (o) => parts.push(protocol.serialize.describe(o)),
        sync: () => parts.push(protocol.serialize.sync()),
      });
      const { messages } = await this.pglite.execProtocol(Buffer.concat(parts), { throwOnError: false });
      const collector = new PipelineCollector(steps);
      for (const message of messages) collector.on(message as PipelineMessage, message.name === 'error' ? message : undefined);
      return collector.outcome;
    });
  }

  async close(): Promise<void> {
    await this.#mutex.run(async () => {
      await this.pglite.close();
      await this.lock.release();
    });
  }
}

const exists = (file: string) => access(file).then(() => true, () => false);

/**
 * A new store starts as a copy of the initialised data directory built with the package
 * (scripts/pglite-template.js) instead of running initdb. The copy is renamed into place only
 * once complete, so a crash mid-copy leaves no half-made store (we hold the data-dir lock).
 */
async function copyTemplate(pgdata: string): Promise<void> {
  const partial = `${pgdata}.partial`;
  await rm(partial, { recursive: true, force: true });
  await cp(pgliteTemplateDir, partial, { recursive: true });
  await rename(partial, pgdata);
}
