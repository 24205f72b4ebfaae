import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { findPgBinDir, startPgCluster, type PgCluster } from './pg-cluster.js';
import { NODE_COMMAND_FUNCTIONS, REVOKE_WORKER_STATS, SERVER_NODE_COMMANDS, WORKER_LARGE_OBJECT_MAKERS } from '../src/db/postgres/citus.js';

/**
 * A Citus cluster of throwaway PostgreSQL clusters on loopback: one coordinator and `workers`
 * workers. Citus keeps its node list per database, so every database made here is created on
 * all nodes, gets the citus extension on each, and registers the nodes on its coordinator.
 */
export interface CitusCluster {
  readonly coordinator: PgCluster;
  readonly workers: readonly PgCluster[];
  /** A database on every node with Citus set up; returns the coordinator's URL for it. */
  createDatabase(prefix?: string): Promise<string>;
  /**
   * A LOGIN CREATEROLE role that is no superuser, with CREATE on the database at `coordinatorUrl`,
   * as docs/isolation.md has production run the server: made on the coordinator only, Citus
   * propagating both to the workers. Returns the coordinator's URL for the database as it.
   */
  serverRole(coordinatorUrl: string, role: string): Promise<string>;
  /** URL of the same database on worker `i`. */
  workerUrl(i: number, coordinatorUrl: string): string;
  destroy(): Promise<void>;
}

/** Logical decoding is what citus_schema_move and the rebalancer copy shards with. */
const CITUS_SETTINGS: Record<string, string> = {
  shared_preload_libraries: "'citus'",
  wal_level: 'logical',
  max_connections: '200',
  // The build links libcurl: keep it from phoning home from a test machine.
  'citus.enable_statistics_collection': 'off',
};

/** Where the server loads shared libraries from: `pg_config --pkglibdir`, else ../lib beside bin. */
function citusLibrary(bin: string): string {
  const pgConfig = spawnSync(path.join(bin, 'pg_config'), ['--pkglibdir'], { encoding: 'utf8' });
  const libdir = pgConfig.status === 0 ? pgConfig.stdout.trim() : path.join(bin, '..', 'lib');
  return path.join(libdir, 'citus.so');
}

/**
 * Returns null (loudly) when PostgreSQL or Citus is not installed outside CI; under CI=true
 * that is an error, never a silent skip.
 */
export async function startCitusCluster(options: { workers?: number } = {}): Promise<CitusCluster | null> {
  const bin = findPgBinDir();
  if (bin && !existsSync(citusLibrary(bin))) {
    const message =
      `Citus is not installed in the PostgreSQL at ${bin} (no ${citusLibrary(bin)}): the Citus tests cannot run. ` +
      'Build it with: bash ../shared/vendor/build-pg-extensions.sh';
    if (process.env['CI'] === 'true') throw new Error(message);
    process.stderr.write(`\n!!!!!!!!!!\n!!! SKIPPING CITUS TESTS: ${message}\n!!!!!!!!!!\n\n`);
    return null;
  }
  const started = await Promise.allSettled(
    Array.from({ length: 1 + (options.workers ?? 2) }, () => startPgCluster({ settings: CITUS_SETTINGS })),
  );
  const nodes = started.flatMap((s) => (s.status === 'fulfilled' && s.value ? [s.value] : []));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed || nodes.length < started.length) {
    await Promise.all(nodes.map((n) => n.destroy()));
    if (failed) throw failed.reason;
    return null; // startPgCluster has already warned: no PostgreSQL binaries
  }
  const [coordinator, ...workers] = nodes as [PgCluster, ...PgCluster[]];
  let databases = 0;
  return {
    coordinator,
    workers,
    async createDatabase(prefix = 'citus') {
      const name = `${prefix}_${++databases}`;
      await Promise.all(
        nodes.map(async (node, i) => {
          await node.sql(`CREATE DATABASE "${name}"`);
          await sqlOn(node.url(name), 'CREATE EXTENSION citus');
          // Citus runs with wal_level = logical: the SQL tools are refused until this is done (docs/isolation.md).
          await sqlOn(node.url(name), 'REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text), pg_logical_emit_message(boolean, text, bytea) FROM PUBLIC');
          // Citus's functions that run commands on the nodes over connections of their own: refused likewise.
          await sqlOn(node.url(name), revokeFromPublic(NODE_COMMAND_FUNCTIONS));
          // And on a worker, where a workspace's function runs outside the sandbox's checks: large objects and pg_stats.
          if (i > 0) await sqlOn(node.url(name), `${revokeFromPublic(WORKER_LARGE_OBJECT_MAKERS)}; ${REVOKE_WORKER_STATS}`);
        }),
      );
      const url = coordinator.url(name);
      await sqlOn(url, 'SELECT citus_set_coordinator_host($1, $2)', [coordinator.host, coordinator.port]);
      for (const worker of workers) await sqlOn(url, 'SELECT citus_add_node($1, $2)', [worker.host, worker.port]);
      return url;
    },
    async serverRole(coordinatorUrl, role) {
      const name = databaseOf(coordinatorUrl);
      await sqlOn(coordinatorUrl, `CREATE ROLE "${role}" LOGIN CREATEROLE`);
      await sqlOn(coordinatorUrl, `GRANT CREATE ON DATABASE "${name}" TO "${role}"`);
      // The install asks the workers for their extensions through these (docs/citus.md).
      await sqlOn(coordinatorUrl, `GRANT EXECUTE ON FUNCTION ${SERVER_NODE_COMMANDS} TO "${role}"`);
      return coordinator.url(name, role);
    },
    workerUrl(i, coordinatorUrl) {
      const worker = workers[i];
      if (!worker) throw new RangeError(`no worker ${i}`);
      return worker.url(databaseOf(coordinatorUrl));
    },
    async destroy() {
      await Promise.all(nodes.map((n) => n.destroy()));
    },
  };
}

/** What docs/citus.md asks of an administrator: EXECUTE on these functions of pg_catalog revoked from PUBLIC. */
const revokeFromPublic = (names: readonly string[]) => `DO $$ DECLARE f regprocedure; BEGIN
  FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY ('{${names.join(',')}}') LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
  END LOOP; END $$`;

const databaseOf = (url: string): string => decodeURIComponent(new URL(url).pathname.slice(1));

/** One statement over a connection of its own. */
export async function sqlOn(url: string, text: string, params?: unknown[]): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows;
  } finally {
    await client.end();
  }
}
