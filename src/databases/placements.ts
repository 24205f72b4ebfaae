import type { Database, Queryable } from '../db/database.js';
import { MAX_IDENTIFIER_BYTES, quoteIdent } from '../db/identifiers.js';
import { sqlState } from '../db/sql-errors.js';
import { WORKSPACE_LOCK_CLASS, WORKSPACE_LOCK_TIMEOUT_MS, workspaceLockTimeout } from '../registry/workspace-lock.js';

/*
 * Which database of the PostgreSQL server holds each workspace, when the server spreads them
 * (--workspaces-per-database, docs/operations.md "Many workspaces"). PostgreSQL's catalogs are per
 * database: a database's pg_proc, pg_class, pg_depend and pg_trigger hold only its own workspaces'
 * objects, so a CREATE FUNCTION or CREATE TRIGGER costs what it costs beside that database's
 * workspaces, not beside the whole fleet (docs/benchmarks.md, Fleet scale). Roles are the
 * cluster's: the server's role works in every database.
 *
 * The home database (DATABASE_URL's) records the placements (core migration 0011). A project id
 * without a placement lives in the home database: every workspace made before the setting.
 */

/** One at a time across servers: choosing a member database and counting it in. */
const PLACEMENT_LOCK_CLASS = 0x70677064; // "pgpd"

/** The member database `n` of `home`: `<home>_w<n>`, checked against PostgreSQL's identifier length. */
export function memberDatabaseName(home: string, n: number): string {
  const name = `${home}_w${n}`;
  if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
    throw new Error(
      `The database name "${home}" is too long to spread workspaces over databases named after it ("${name}" is over ` +
        `${MAX_IDENTIFIER_BYTES} bytes): use a database with a shorter name in DATABASE_URL, or leave --workspaces-per-database out.`,
    );
  }
  return name;
}

/** The member database holding `projectId`, or undefined when it has no placement (it lives in the home database). */
export async function placementOf(q: Queryable, projectId: string): Promise<string | undefined> {
  const [row] = await q.query<{ database_name: string }>(
    'SELECT database_name FROM project_registry.workspace_placements WHERE project_id = $1',
    [projectId],
  );
  return row?.database_name;
}

/** Every member database the home database has placed a workspace in (or is about to). */
export async function memberDatabases(q: Queryable): Promise<string[]> {
  const rows = await q.query<{ database_name: string }>('SELECT database_name FROM project_registry.workspace_databases ORDER BY database_name');
  return rows.map((r) => r.database_name);
}

/**
 * The member databases the home database records, each with the ids placed there and whether
 * the PostgreSQL server has it: an operator may have dropped one, which a server makes again on
 * the next call to one of its workspaces (member-databases.ts, remakeGone).
 */
export async function memberDatabaseStates(q: Queryable): Promise<{ name: string; placed: number; present: boolean }[]> {
  return q.query(
    `SELECT d.database_name AS name, d.workspaces AS placed,
            EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = d.database_name) AS present
       FROM project_registry.workspace_databases d ORDER BY d.database_name`,
  );
}

/**
 * An id a list may show, from the home database: its workspace there (`schema_name`, `created_at`;
 * null when it has none), and its placement (`database_name`; null when it has none), `present`
 * when the PostgreSQL server has that database. A placement alone may be a dropped workspace's, or
 * a failed creation's: only its database knows.
 */
export interface ListCandidate {
  project_id: string;
  schema_name: string | null;
  created_at: Date | null;
  database_name: string | null;
  present: boolean;
}

/**
 * The first `limit` ids after `after` starting with `prefix` (and among `only`, when set) that the
 * home database has a workspace or a placement for, in id order: each side read along its primary
 * key, so a page costs the same at any depth.
 */
export async function listCandidates(q: Queryable, after: string, prefix: string, limit: number, only?: readonly string[]): Promise<ListCandidate[]> {
  return q.query<ListCandidate>(
    `WITH ids AS (
       (SELECT project_id FROM project_registry.workspace_config
         WHERE project_id > $1 AND project_id >= $2 AND project_id < $3 AND ($5::text[] IS NULL OR project_id = ANY ($5::text[]))
         ORDER BY project_id LIMIT $4)
       UNION
       (SELECT project_id FROM project_registry.workspace_placements
         WHERE project_id > $1 AND project_id >= $2 AND project_id < $3 AND ($5::text[] IS NULL OR project_id = ANY ($5::text[]))
         ORDER BY project_id LIMIT $4))
     SELECT i.project_id, w.schema_name, w.created_at, p.database_name,
            EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = p.database_name) AS present
       FROM (SELECT project_id FROM ids ORDER BY project_id LIMIT $4) i
       LEFT JOIN project_registry.workspace_config w USING (project_id)
       LEFT JOIN project_registry.workspace_placements p USING (project_id)
      ORDER BY i.project_id`,
    [after, prefix, `${prefix}~`, limit, only ? [...only] : null],
  );
}

/**
 * The id's workspace lock, then the placement lock. The workspace lock is the one core's
 * create_workspace() takes in the home database before it re-checks for a placement: a
 * creation there and a placement of the same id take turns, so each sees the other's row (a
 * workspace_config row here; a placement there, refused with PW003), never neither. The id's
 * lock first: a creation holds it for the whole script, and the placement lock, every server's,
 * is held only while this transaction reads and counts. Nothing takes them the other way round.
 */
async function lockPlacing(tx: Queryable, projectId: string): Promise<void> {
  try {
    await tx.query('SELECT project_registry.lock_workspace($1, $2, $3)', [projectId, WORKSPACE_LOCK_CLASS, WORKSPACE_LOCK_TIMEOUT_MS]);
  } catch (error) {
    throw workspaceLockTimeout(error, projectId, WORKSPACE_LOCK_TIMEOUT_MS) ?? error;
  }
  await tx.query(`SELECT pg_catalog.pg_advisory_xact_lock(${PLACEMENT_LOCK_CLASS}, 0)`);
}

/**
 * Places a project id the home database has no workspace and no placement for: in the member
 * database with the fewest workspaces below `perDatabase`, or in the next one when all are full
 * (only recorded here: `ensureMemberDatabase` makes it). Under a lock in the home database, so
 * two servers placing at once count each other in; a placement made meanwhile is returned as is.
 * Undefined: the home database has this workspace (made before the setting), where it stays.
 */
export async function place(home: Database, projectId: string, perDatabase: number): Promise<string | undefined> {
  return home.transaction(async (tx) => {
    await lockPlacing(tx, projectId);
    const placed = await placementOf(tx, projectId);
    if (placed !== undefined) return placed;
    const [existing] = await tx.query('SELECT 1 FROM project_registry.workspace_config WHERE project_id = $1', [projectId]);
    if (existing) return undefined;
    const [roomy] = await tx.query<{ database_name: string }>(
      `SELECT database_name FROM project_registry.workspace_databases WHERE workspaces < $1
        ORDER BY workspaces, database_name LIMIT 1`,
      [perDatabase],
    );
    let database = roomy?.database_name;
    if (database === undefined) {
      const [{ home: name, n } = { home: '', n: 0 }] = await tx.query<{ home: string; n: number }>(
        'SELECT pg_catalog.current_database() AS home, count(*)::int AS n FROM project_registry.workspace_databases',
      );
      database = memberDatabaseName(name, n + 1);
      await tx.query('INSERT INTO project_registry.workspace_databases (database_name) VALUES ($1)', [database]);
    }
    await tx.query('INSERT INTO project_registry.workspace_placements (project_id, database_name) VALUES ($1, $2)', [projectId, database]);
    await tx.query('UPDATE project_registry.workspace_databases SET workspaces = workspaces + 1 WHERE database_name = $1', [database]);
    return database;
  });
}

/**
 * Places `projectId` in `database` (a fork beside its source), unless it has a placement, or a
 * workspace in the home database, already: the database it is in either way.
 */
export async function placeIn(home: Database, projectId: string, database: string | undefined): Promise<string | undefined> {
  return home.transaction(async (tx) => {
    await lockPlacing(tx, projectId);
    const placed = await placementOf(tx, projectId);
    if (placed !== undefined) return placed;
    const [existing] = await tx.query('SELECT 1 FROM project_registry.workspace_config WHERE project_id = $1', [projectId]);
    if (existing || database === undefined) return undefined;
    await tx.query('INSERT INTO project_registry.workspace_placements (project_id, database_name) VALUES ($1, $2)', [projectId, database]);
    await tx.query('UPDATE project_registry.workspace_databases SET workspaces = workspaces + 1 WHERE database_name = $1', [database]);
    return database;
  });
}

/**
 * Why `projectId` cannot be put in another database, for a refused fork or rename: `database`, its
 * placement, holds its workspace, a dropped one's role history, or nothing yet (a creating call
 * that failed after placing it keeps the placement, member-databases.ts); undefined: a workspace
 * of the home database.
 */
export function keptPlacement(projectId: string, database: string | undefined): string {
  return database === undefined
    ? `"${projectId}" is a workspace of the home database`
    : `"${projectId}" is placed in the database "${database}" (an id keeps its database for good: its workspace is there, was dropped there, or a call making it failed)`;
}

/**
 * rename-workspace: the new id gets the old one's database, and the old id keeps its placement
 * (a no-op for a workspace of the home database). Kept, like a dropped workspace's: a server that
 * has the old id cached makes it anew where every other server would look for it.
 */
export async function copyPlacement(q: Queryable, from: string, to: string): Promise<void> {
  await q.query(
    `WITH placed AS (
       INSERT INTO project_registry.workspace_placements (project_id, database_name)
       SELECT $2, database_name FROM project_registry.workspace_placements WHERE project_id = $1
       RETURNING database_name)
     UPDATE project_registry.workspace_databases d SET workspaces = workspaces + 1 FROM placed WHERE d.database_name = placed.database_name`,
    [from, to],
  );
}

/**
 * CREATE DATABASE `name` unless it exists. Servers racing to make it all succeed: the loser's
 * duplicate (42P04, or 23505 when both passed PostgreSQL's own check) means it is there.
 */
export async function ensureMemberDatabase(home: Database, name: string): Promise<void> {
  const exists = async () => (await home.query('SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1', [name])).length > 0;
  if (await exists()) return;
  try {
    await home.query(`CREATE DATABASE ${quoteIdent(name)}`);
  } catch (error) {
    if (['42P04', '23505'].includes(sqlState(error) ?? '') && (await exists())) return;
    if (sqlState(error) === '42501') throw new MemberDatabaseError(createDatabaseAdvice(name, error));
    throw error;
  }
}

export class MemberDatabaseError extends Error {
  override name = 'MemberDatabaseError';
}

/** Boot's check, before any workspace is placed: the server's role may create the member databases. */
export async function checkCanSpread(home: Database): Promise<void> {
  const [row] = await home.query<{ role: string; may: boolean }>(
    'SELECT rolname AS role, (rolcreatedb OR rolsuper) AS may FROM pg_catalog.pg_roles WHERE rolname = current_user',
  );
  if (row && !row.may) throw new MemberDatabaseError(createDatabaseAdvice(undefined, undefined, row.role));
}

function createDatabaseAdvice(name: string | undefined, error: unknown, role = 'the server\'s role'): string {
  return (
    `--workspaces-per-database puts workspaces in databases the server creates${name ? ` (next: "${name}")` : ''}, and ${role} ` +
    `may not create databases${error ? ` (${(error as Error).message})` : ''}. As a superuser: ALTER ROLE ${role === 'the server\'s role' ? '<role>' : quoteIdent(role)} CREATEDB; ` +
    'or leave --workspaces-per-database (PG_WORKSPACE_WORKSPACES_PER_DATABASE) out.'
  );
}

/** DATABASE_URL with another database: the same server, user, password and options. */
export function memberUrl(homeUrl: string, database: string): string {
  if (!URL.canParse(homeUrl) || !/^postgres(ql)?:$/.test(new URL(homeUrl).protocol)) {
    // Never the value itself in the message: it may hold a password.
    throw new MemberDatabaseError(
      '--workspaces-per-database needs DATABASE_URL as a URL (postgresql://user@host:5432/database?options), to reach the ' +
        'member databases on the same server: the keyword form (host=… dbname=…) cannot name another database. Write it as a URL, ' +
        'or leave --workspaces-per-database (PG_WORKSPACE_WORKSPACES_PER_DATABASE) out.',
    );
  }
  const url = new URL(homeUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}
