import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { findPgBinDir, startPgCluster, type PgCluster } from './support/pg-cluster.js';

async function query(url: string, text: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

// Decided at collection time, before beforeAll can run; under CI=true the suite runs and
// startPgCluster throws, so missing binaries fail CI instead of skipping it.
const skip = findPgBinDir() === null && process.env['CI'] !== 'true';

describe.skipIf(skip)('throwaway PostgreSQL cluster', () => {
  let cluster: PgCluster;

  beforeAll(async () => {
    const started = await startPgCluster();
    if (!started) throw new Error('startPgCluster returned null although PostgreSQL binaries were found');
    cluster = started;
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('serves PostgreSQL on 127.0.0.1 at its own port', async () => {
    expect(cluster.host).toBe('127.0.0.1');
    const [row] = await cluster.sql('select version() as version, current_setting($1) as port', ['port']);
    expect(row?.['version']).toMatch(/^PostgreSQL \d+/);
    expect(Number(row?.['port'])).toBe(cluster.port);
  });

  it('creates distinct, connectable databases, even from a prefix that needs quoting', async () => {
    const a = await cluster.createDatabase('My-Test');
    const b = await cluster.createDatabase('My-Test');
    expect(a).not.toBe(b);
    const [row] = await query(a, 'select current_database() as name, current_user as user');
    expect(row?.['name']).toMatch(/^My-Test_/);
    expect(row?.['user']).toBe(cluster.superuser);
  });

  it('lets a role with a password connect through url()', async () => {
    await cluster.sql(`DROP ROLE IF EXISTS "app user"`);
    await cluster.sql(`CREATE ROLE "app user" LOGIN PASSWORD 'p@ss:/word'`);
    const [row] = await query(cluster.url('postgres', 'app user', 'p@ss:/word'), 'select current_user as user');
    expect(row?.['user']).toBe('app user');
  });

  it('refuses connections while stopped and keeps its data across a restart on the same port', async () => {
    const url = await cluster.createDatabase('restart');
    await query(url, 'create table kept (v int); insert into kept values (42)');

    await cluster.stop();
    await expect(cluster.sql('select 1')).rejects.toThrow(/ECONNREFUSED/);

    await cluster.start();
    expect(await query(url, 'select v from kept')).toEqual([{ v: 42 }]);
  });

  it('comes back after an immediate (crash-like) stop', async () => {
    await cluster.stop('immediate');
    await expect(cluster.sql('select 1')).rejects.toThrow(/ECONNREFUSED/);
    await cluster.start();
    expect(await cluster.sql('select 1 as one')).toEqual([{ one: 1 }]);
  });
});
