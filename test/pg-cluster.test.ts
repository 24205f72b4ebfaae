import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import pg from 'pg';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';

async function query(url: string, text: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

describe('throwaway PostgreSQL cluster', () => {
  // null only outside CI, after startPgCluster's loud warning; under CI=true it throws instead.
  let started: PgCluster | null = null;
  const live = (ctx: TestContext): PgCluster => {
    if (!started) ctx.skip();
    return started as PgCluster;
  };

  beforeAll(async () => {
    started = await startPgCluster();
  }, 60_000);

  afterAll(async () => {
    await started?.destroy();
  });

  it('serves PostgreSQL on 127.0.0.1 at its own port', async (ctx) => {
    const cluster = live(ctx);
    expect(cluster.host).toBe('127.0.0.1');
    const [row] = await cluster.sql('select version() as version, current_setting($1) as port', ['port']);
    expect(row?.['version']).toMatch(/^PostgreSQL \d+/);
    expect(Number(row?.['port'])).toBe(cluster.port);
  });

  it('creates distinct, connectable databases, even from a prefix that needs quoting', async (ctx) => {
    const cluster = live(ctx);
    const a = await cluster.createDatabase('My-Test');
    const b = await cluster.createDatabase('My-Test');
    expect(a).not.toBe(b);
    const [row] = await query(a, 'select current_database() as name, current_user as user');
    expect(row?.['name']).toMatch(/^My-Test_/);
    expect(row?.['user']).toBe(cluster.superuser);
  });

  it('url() carries a user and a password with URL-special characters', async (ctx) => {
    const cluster = live(ctx);
    // Authentication is trust, so this checks the URL encoding, not the password itself.
    await cluster.sql(`CREATE ROLE "app user" LOGIN PASSWORD 'p@ss:/word'`);
    const [row] = await query(cluster.url('postgres', 'app user', 'p@ss:/word'), 'select current_user as user');
    expect(row?.['user']).toBe('app user');
  });

  it('refuses connections while stopped and keeps its data across a restart on the same port', async (ctx) => {
    const cluster = live(ctx);
    const url = await cluster.createDatabase('restart');
    await query(url, 'create table kept (v int); insert into kept values (42)');

    await cluster.stop();
    await expect(cluster.sql('select 1')).rejects.toThrow(/ECONNREFUSED/);

    await cluster.start();
    expect(await query(url, 'select v from kept')).toEqual([{ v: 42 }]);
  });

  it('comes back after an immediate (crash-like) stop', async (ctx) => {
    const cluster = live(ctx);
    await cluster.stop('immediate');
    await expect(cluster.sql('select 1')).rejects.toThrow(/ECONNREFUSED/);
    await cluster.start();
    expect(await cluster.sql('select 1 as one')).toEqual([{ one: 1 }]);
  });
});
