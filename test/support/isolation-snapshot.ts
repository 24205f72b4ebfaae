import pg from 'pg';
import type { Database } from '../../src/db/database.js';
import type { PgCluster } from '../../harness/pg-cluster.js';
import { tempDir, writeExtension } from './fixtures.js';
import { callTool, connectInProcess } from './mcp.js';

/**
 * Everything outside workspace alpha, as a superuser sees it: registry and ledgers, workspace
 * beta's notes, roles and memberships, role settings, objects, functions and their flags,
 * schemas and their privileges. Escape tests compare it before and after an attack.
 */
export const SNAPSHOT = `
SELECT json_build_object(
  'registry', (SELECT json_agg(w ORDER BY project_id) FROM (SELECT project_id, schema_name, workspace_fingerprint, metadata FROM project_registry.workspace_config) w),
  'ledger', (SELECT json_agg(m ORDER BY project_id, extension_id, name) FROM (SELECT project_id, extension_id, name, checksum FROM project_registry.workspace_migrations) m),
  'global_ledger', (SELECT json_agg(m ORDER BY extension_id, name) FROM (SELECT extension_id, name, checksum FROM project_registry.schema_migrations) m),
  'install', (SELECT fingerprint FROM project_registry.install_state),
  'beta', (SELECT json_agg(n ORDER BY id) FROM project_beta.notes n),
  'roles', (SELECT json_agg(r ORDER BY rolname) FROM (SELECT rolname, rolsuper, rolcreaterole, rolcanlogin, rolinherit, rolbypassrls, rolconfig FROM pg_roles) r),
  'members', (SELECT json_agg(m ORDER BY role, member) FROM (SELECT roleid::regrole::text AS role, member::regrole::text AS member FROM pg_auth_members) m),
  'role_settings', (SELECT count(*) FROM pg_db_role_setting),
  'objects', (SELECT json_agg(o ORDER BY name) FROM (
     SELECT n.nspname || '.' || c.relname AS name, c.relkind, c.relowner::regrole::text AS owner, c.relacl::text AS acl
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname NOT IN ('project_alpha', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_temp%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp%') o),
  'functions', (SELECT json_agg(f ORDER BY name) FROM (
     SELECT p.oid::regprocedure::text AS name, p.prosecdef, p.proconfig, p.proowner::regrole::text AS owner, md5(p.prosrc) AS body
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname NOT IN ('project_alpha', 'pg_catalog', 'information_schema')
        AND NOT (n.nspname = 'project_registry_sandbox' AND p.proname = 'project_alpha')) f),
  'schemas', (SELECT json_agg(s ORDER BY nspname) FROM (
     SELECT nspname, nspowner::regrole::text AS owner, nspacl::text AS acl FROM pg_namespace
      WHERE nspname NOT LIKE 'pg\\_temp%' AND nspname NOT LIKE 'pg\\_toast\\_temp%') s)
)::text AS snapshot`;

/** The server's own session after a call (PGlite has one; pg's pool hands back the last one used). */
export const SESSION = `
SELECT (SELECT count(*) FROM pg_prepared_statements)::int AS prepared,
       (SELECT count(*) FROM pg_cursors WHERE name <> '')::int AS cursors,
       (SELECT count(*) FROM pg_listening_channels())::int AS listening,
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')::int AS advisory_locks,
       (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int AS temp_objects,
       current_setting('search_path') AS search_path, current_setting('statement_timeout') AS statement_timeout,
       current_user AS role`;

/** One MCP server for an escape suite, with a superuser's view of everything outside the workspaces. */
export interface IsolationServer {
  /** The server's own database (its one session on PGlite, its pool on PostgreSQL). */
  serverDb: Database;
  run(name: string, args: Record<string, unknown>): ReturnType<typeof callTool>;
  /** A superuser's query: the admin connection on PostgreSQL; PGlite's session user is one. */
  asSuperuser<R>(sql: string): Promise<R[]>;
  /**
   * Another application's session listening on `channel` (PostgreSQL only: PGlite has one
   * session, the server's): the payloads it receives, as they arrive.
   */
  listen(channel: string): Promise<string[]>;
  /** SNAPSHOT, as a superuser sees it. */
  snapshot(): Promise<string>;
  close(): Promise<void>;
}

/**
 * The server under attack, with a `notes` workspace table. On PostgreSQL it is set up as in
 * production: a server role that may create roles but is not a superuser, pgvector (when asked)
 * created by an admin. Undefined when no PostgreSQL cluster could be started.
 */
export async function startIsolationServer(
  kind: 'pglite' | 'postgres',
  cluster: PgCluster | null,
  options: { role: string; databasePrefix: string; statementTimeoutMs: number; upgradeTimeoutMs?: number; createVector?: boolean; disabledExtensions?: string[] },
): Promise<IsolationServer | undefined> {
  const notes = await writeExtension(await tempDir(), { id: 'notes' }, {
    'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);',
  });
  let mcp: Awaited<ReturnType<typeof connectInProcess>>;
  let superuser: pg.Client | undefined;
  let adminUrl: string | undefined;
  if (kind === 'pglite') {
    mcp = await connectInProcess({
      extensionDirs: [notes],
      statementTimeoutMs: options.statementTimeoutMs,
      ...(options.upgradeTimeoutMs ? { upgradeTimeoutMs: options.upgradeTimeoutMs } : {}),
    });
  } else {
    if (!cluster) return undefined;
    const url = await cluster.createDatabase(options.databasePrefix);
    adminUrl = url;
    const database = new URL(url).pathname.slice(1);
    await cluster.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${options.role}') THEN CREATE ROLE ${options.role} LOGIN CREATEROLE; END IF; END $$`);
    await cluster.sql(`GRANT CREATE ON DATABASE ${database} TO ${options.role}`);
    superuser = new pg.Client({ connectionString: url });
    await superuser.connect();
    if (options.createVector) await superuser.query('CREATE EXTENSION vector');
    // As docs/isolation.md asks on a database with wal_level = logical.
    await superuser.query('REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text), pg_logical_emit_message(boolean, text, bytea) FROM PUBLIC');
    mcp = await connectInProcess({
      extensionDirs: [notes],
      databaseUrl: cluster.url(database, options.role),
      statementTimeoutMs: options.statementTimeoutMs,
      ...(options.upgradeTimeoutMs ? { upgradeTimeoutMs: options.upgradeTimeoutMs } : {}),
      ...(options.disabledExtensions ? { disabledExtensions: options.disabledExtensions } : {}),
    });
  }
  const serverDb = (await mcp.engine.ready(120_000)).db;
  const asSuperuser = async <R>(sql: string) => (superuser ? (await superuser.query(sql)).rows : await serverDb.query(sql)) as R[];
  let listener: pg.Client | undefined;
  return {
    serverDb,
    async listen(channel) {
      if (!adminUrl) throw new Error('listen() needs the PostgreSQL backend');
      const received: string[] = [];
      if (!listener) {
        listener = new pg.Client({ connectionString: adminUrl });
        await listener.connect();
      }
      listener.on('notification', (n) => received.push(n.payload ?? ''));
      await listener.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      return received;
    },
    run: (name, args) => callTool(mcp.client, mcp.tools, name, args),
    asSuperuser,
    snapshot: async () => (await asSuperuser<{ snapshot: string }>(SNAPSHOT))[0]?.snapshot ?? '',
    async close() {
      await listener?.end();
      await superuser?.end();
      await mcp.close();
    },
  };
}
