import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { silentLogger } from '../src/logger.js';
import { sandboxedWorkspaces } from '../src/sandboxed-workspaces.js';
import type { WorkspaceSandbox } from '../src/sandbox/workspace-sandbox.js';
import { install, planFor } from './support/fixtures.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';

/*
 * Issue 27 item 5: a pooled connection that ran one workspace's agent code never runs another's
 * (a custom setting leaves a placeholder PostgreSQL cannot remove). Issue 24 item 1's connection
 * slots: what a server keeps between calls stays bounded. Between the two, a server passing
 * between workspaces should find each workspace's own connection again instead of opening one.
 */
let cluster: PgCluster | null = null;

beforeAll(async () => {
  cluster = await startPgCluster();
}, 90_000);

afterAll(async () => {
  await cluster?.destroy();
});

async function engineOn(ctx: TestContext, maxConnections?: number) {
  if (!cluster) ctx.skip();
  const c = cluster as PgCluster;
  const url = await c.createDatabase('reuse');
  const db = new PostgresDatabase({ connectionString: url, sharedSlots: true, ...(maxConnections ? { maxConnections } : {}) });
  const plan = await planFor([], ['codebase']);
  const report = await install(db, plan);
  const { sandbox } = sandboxedWorkspaces(db, plan, report.searchPathSchemas, silentLogger);
  const database = new URL(url).pathname.slice(1);
  const backends = async () =>
    Number((await c.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pg-workspace-mcp'`, [database]))[0]?.['n']);
  return { db, sandbox, backends };
}

/**
 * Calls of `workspaces` in turn, `rounds` times. Each leaves a custom setting named for its
 * workspace and reads the others' (NULL unless that name was ever set on its session), and
 * reports its backend: no backend may serve two workspaces' agent code. Returns the backends of
 * each round.
 */
async function takeTurns(sandbox: WorkspaceSandbox, workspaces: readonly string[], rounds: number, together = false): Promise<number[][]> {
  const ranAgentOf = new Map<number, string>();
  const call = async (workspace: string, n: number) => {
    const others = workspaces.filter((w) => w !== workspace);
    const result = await sandbox.query(
      workspace,
      `SELECT pg_backend_pid() AS pid, set_config($1, 'secret', false) AS left_behind, ARRAY[${others.map((_, i) => `current_setting($${i + 2}, true)`).join(', ')}] AS seen`,
      [`pgw_reuse.w${n}`, ...others.map((w) => `pgw_reuse.w${workspaces.indexOf(w)}`)],
    );
    const [pid, , seen] = result.rows[0] ?? [];
    expect(seen, `${workspace} read another workspace's setting`).toEqual(others.map(() => null));
    expect(ranAgentOf.get(pid as number) ?? workspace, `backend ${String(pid)} ran another workspace's agent code`).toBe(workspace);
    ranAgentOf.set(pid as number, workspace);
    return pid as number;
  };
  const perRound: number[][] = [];
  for (let round = 0; round < rounds; round++) {
    if (together) perRound.push(await Promise.all(workspaces.map(call)));
    else {
      const pids: number[] = [];
      for (const [n, workspace] of workspaces.entries()) pids.push(await call(workspace, n));
      perRound.push(pids);
    }
  }
  return perRound;
}

describe('connections kept between calls of several workspaces (postgres)', () => {
  it("calls passing between four workspaces find each workspace's own connection again, and none serves two workspaces", async (ctx) => {
    const { db, sandbox, backends } = await engineOn(ctx);
    try {
      const workspaces = ['reuse-a', 'reuse-b', 'reuse-c', 'reuse-d'];
      const [first, ...later] = await takeTurns(sandbox, workspaces, 5);
      // After the first round opened them, every call runs on its workspace's connection of that round.
      for (const round of later) expect(round).toEqual(first);
      expect(await backends()).toBeLessThanOrEqual(workspaces.length + 1);
    } finally {
      await db.close();
    }
  }, 60_000);

  it('at the pool limit, a call closes a connection kept for another workspace and is served', async (ctx) => {
    const { db, sandbox, backends } = await engineOn(ctx, 2);
    try {
      const rounds = await takeTurns(sandbox, ['limit-a', 'limit-b', 'limit-c', 'limit-d'], 3);
      expect(rounds.flat()).toHaveLength(12);
      expect(await backends()).toBeLessThanOrEqual(2);
    } finally {
      await db.close();
    }
  }, 60_000);

  it('calls of six workspaces at once on a pool of 3: each is served, and none runs on a backend that ran another workspace', async (ctx) => {
    const { db, sandbox, backends } = await engineOn(ctx, 3);
    try {
      const workspaces = Array.from({ length: 6 }, (_, i) => `together-${i}`);
      const rounds = await takeTurns(sandbox, workspaces, 4, true);
      expect(rounds.flat()).toHaveLength(24);
      expect(await backends()).toBeLessThanOrEqual(3);
    } finally {
      await db.close();
    }
  }, 60_000);

  it('connections kept for other workspaces close after the idle timeout, and one stays warm', async (ctx) => {
    const { db, sandbox, backends } = await engineOn(ctx);
    try {
      const [first] = await takeTurns(sandbox, ['idle-a', 'idle-b', 'idle-c'], 2);
      expect(new Set(first).size).toBe(3);
      // pg's idle timeout (10 s), which the server keeps for the connections beyond the warm one.
      await new Promise((resolve) => setTimeout(resolve, 11_000));
      expect(await backends()).toBe(1);
    } finally {
      await db.close();
    }
  }, 60_000);
});
