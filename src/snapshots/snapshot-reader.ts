import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Queryable } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { memberFor } from '../db/role-membership.js';
import { SANDBOX_SCHEMA } from '../sandbox/sandbox-ddl.js';
import { WorkspaceLifecycleError } from '../workspaces/workspace-lifecycle.js';

/*
 * A copy from a snapshot (a fork of one) runs agent code (a CHECK validated as it is added, a
 * domain, a materialized view) as the copying role, which must read the snapshot. It used to be
 * handed the snapshot for the copy, and that code rewrote the snapshot's rows, moved its
 * sequences and altered its tables: a snapshot is the agent's undo and must stay as taken.
 *
 * So the copier gets no privilege on the snapshot's objects. It reads rows through views in a
 * schema made for that transaction, one per table and sequence, owned by the snapshot role: a
 * view reads its table with its owner's privileges (and so the owner's pass through row level
 * security, as an owner copying had), and the copier may only SELECT them. PostgreSQL enforces
 * it: no write, DDL or setval on the snapshot's objects, whatever the copier's code runs.
 *
 * The copier still needs USAGE on the snapshot's schema: PostgreSQL's deparsers qualify every
 * name that is not visible on the current user's search path, and a schema without USAGE is left
 * out of it, so the copy would replay definitions naming the snapshot. USAGE lets it call the
 * snapshot's functions (their EXECUTE is PUBLIC's unless the agent took it), which run as the
 * caller, except SECURITY DEFINER ones: those would run as the snapshot role, which owns every
 * snapshot of the workspace (setval by OID, DROP OWNED BY CURRENT_USER). They are made SECURITY
 * INVOKER for the transaction and DEFINER again after it (the copy makes its copies DEFINER).
 *
 * What the copier's code could still do is make objects depend on the views or on the
 * snapshot's objects (a view of its own over them, a column of one of its types): the views'
 * dependents refuse the copy here, and the caller checks the snapshot's (copy-bridges.ts).
 */

/** The schema of the views over one snapshot: the server's own name space (no project id maps to it). */
function readerSchemaName(snapshotSchema: string): string {
  return `project_registry_copy_${createHash('sha256').update(snapshotSchema).digest('hex').slice(0, 16)}`;
}

/** The snapshot's SECURITY DEFINER routines, as regprocedure text (qualified as needed). */
const DEFINERS = `
  SELECT p.oid::pg_catalog.regprocedure::text AS routine, p.oid::int8 AS oid FROM pg_catalog.pg_proc p
   WHERE p.pronamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND p.prosecdef
   ORDER BY p.oid`;

const RELATIONS = `
  SELECT c.relname::text AS name, c.relkind = 'S' AS sequence
    FROM pg_catalog.pg_class c
   WHERE c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND c.relkind IN ('r', 'S')
   ORDER BY c.oid`;

/** What depends on the views (or their row types), besides their own parts. */
const DEPENDENTS = `
  SELECT DISTINCT CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                       THEN pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass,
                                                          (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid), 0)
                       ELSE pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) END AS object
    FROM pg_catalog.pg_class v
    JOIN pg_catalog.pg_depend d
      ON (d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = v.oid)
      OR (d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.refobjid = v.reltype)
   WHERE v.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1)
     AND d.deptype NOT IN ('i', 'a')
     AND NOT (d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
              AND (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid) = v.oid)
   ORDER BY 1 LIMIT 10`;

export interface SnapshotReading {
  /** The snapshot's schema. */
  snapshot: string;
  /** The schema whose views, named as the snapshot's tables and sequences, the copy reads. */
  schema: string;
  views: string[];
  /** The role that reads. */
  reader: string;
  /** The snapshot's owner, whose member the server is for the statements on its objects (memberFor). */
  keeper: string;
  /** The SECURITY DEFINER routines made SECURITY INVOKER for the copy: the copy makes its copies of them DEFINER. */
  definers: { routine: string; oid: string }[];
}

/**
 * In the copy's transaction: views over every table and sequence of `snapshotSchema`, owned by
 * `keeper` (the snapshot's owner), that `reader` may SELECT and nothing else. Making them runs
 * nothing of the agent's (a view's definition is only parsed).
 */
export async function openSnapshotViews(tx: Queryable, snapshotSchema: string, keeper: string, reader: string): Promise<SnapshotReading> {
  const schema = readerSchemaName(snapshotSchema);
  const relations = await tx.query<{ name: string; sequence: boolean }>(RELATIONS, [snapshotSchema]);
  const definers = await tx.query<{ routine: string; oid: string }>(DEFINERS, [snapshotSchema]);
  const [into, from] = [quoteIdent(schema), quoteIdent(snapshotSchema)];
  await tx.exec(
    [
      ...(definers.length > 0 ? [memberFor(keeper, definers.map((d) => `ALTER ROUTINE ${d.routine} SECURITY INVOKER`).join(';\n'))] : []),
      `GRANT USAGE ON SCHEMA ${from} TO ${quoteIdent(reader)}`,
      `CREATE SCHEMA ${into}`,
      ...relations.map((r) =>
        r.sequence
          ? `CREATE VIEW ${into}.${quoteIdent(r.name)} AS SELECT last_value, is_called FROM ${from}.${quoteIdent(r.name)}`
          : `CREATE VIEW ${into}.${quoteIdent(r.name)} AS SELECT * FROM ONLY ${from}.${quoteIdent(r.name)}`,
      ),
      `GRANT CREATE ON SCHEMA ${into} TO ${quoteIdent(keeper)}`,
      `SELECT ${quoteIdent(SANDBOX_SCHEMA)}.adopt_objects(${pg.escapeLiteral(schema)}, ${pg.escapeLiteral(keeper)})`,
      `REVOKE ALL ON SCHEMA ${into} FROM ${quoteIdent(keeper)}`,
      `GRANT USAGE ON SCHEMA ${into} TO ${quoteIdent(reader)}`,
      memberFor(keeper, `GRANT SELECT ON ALL TABLES IN SCHEMA ${into} TO ${quoteIdent(reader)}`),
    ].join(';\n'),
  );
  return { snapshot: snapshotSchema, schema, views: relations.map((r) => r.name), reader, keeper, definers };
}

/**
 * After the copy: the views and their schema dropped, refusing (the transaction rolls back) when
 * code the copy ran made anything depend on them, which would otherwise go with them or keep
 * them; the snapshot's schema closed to the reader again and its routines as they were.
 */
export async function closeSnapshotViews(tx: Queryable, reading: SnapshotReading, what: string): Promise<void> {
  const dependents = (await tx.query<{ object: string }>(DEPENDENTS, [reading.schema])).map((row) => row.object);
  if (dependents.length > 0) {
    throw new WorkspaceLifecycleError(
      `${what} is refused: code the copy ran made objects that depend on the snapshot it read (${dependents.join('; ')}). ` +
        'Find what makes them (a CHECK, domain or materialized view that runs DDL), remove it, and try again. Nothing was changed.',
    );
  }
  const into = quoteIdent(reading.schema);
  const views = reading.views.map((name) => `${into}.${quoteIdent(name)}`);
  await tx.exec(
    [
      ...(views.length > 0 ? [`DROP VIEW ${views.join(', ')}`] : []),
      `DROP SCHEMA ${into}`,
      `REVOKE ALL ON SCHEMA ${quoteIdent(reading.snapshot)} FROM ${quoteIdent(reading.reader)}`,
      ...(reading.definers.length > 0
        ? [memberFor(reading.keeper, reading.definers.map((d) => `ALTER ROUTINE ${d.routine} SECURITY DEFINER`).join(';\n'))]
        : []),
    ].join(';\n'),
  );
}

/**
 * On Citus the views cannot serve: a shard's query runs on its worker as the current user, who
 * must hold SELECT on the shard itself (a view's owner counts on the coordinator only). And the
 * copier's reads forbid any DDL on those shards over another connection for the rest of the
 * transaction: a grant to the copier could not be taken back there. So a role made for the copy,
 * the reader (NOLOGIN, `<new id>--reader-<OID of the new schema>`: never a name used before, so
 * no reader left by a process that stopped is ever handed to another copy), is granted SELECT on
 * the snapshot's tables and sequences (Citus grants it on their shards too) and USAGE on its
 * schema, the snapshot's SECURITY DEFINER routines are made INVOKER, and the copier becomes a
 * member of the reader, all in the copy's first transaction (committed: the copier's own
 * connections to the workers must see it). The copy's transaction takes back the membership, the
 * USAGE and the routines' INVOKER (no shard DDL), so the copier reads nothing of the snapshot
 * once it commits; the reader's table grants are revoked and the reader dropped right after
 * (finishSnapshotReading). All of it is taken back by OID, wherever a restore meanwhile renamed
 * the snapshot. A snapshot with row level security enabled on a table cannot be read so (the
 * reader is not its owner): such a fork is refused, saying so.
 *
 * What a reading changed is recorded in project_registry.snapshot_readings in the first
 * transaction. Two forks of one snapshot may be between their steps at once: the routines the
 * first made INVOKER are no longer DEFINER when the second looks, so each reading holds (and its
 * copy makes DEFINER again) the routines of the others still open too, and a reading that
 * closes makes DEFINER only those no other open reading holds. Otherwise the first to finish made
 * them DEFINER while the second's copier could still call them, as the snapshot role. A process
 * that stopped between the steps left its row: closed (after the copy) or past its lease (before
 * it), the workspace's next snapshot, fork or restore (or repair --forget-missing) undoes it
 * (settleSnapshotReadings), by then no copy's; a copy
 * that finds its own row gone when it starts is refused, to be tried again. Every change to the
 * rows of a workspace is made under its lock.
 */
export interface SnapshotGrants {
  /** The snapshot's schema, and its OID: taken back by OID, wherever a restore meanwhile renamed it. */
  snapshot: string;
  snapshotOid: string;
  reader: string;
  /** OIDs of the tables and sequences the reader may SELECT. */
  relations: string[];
  /** OIDs of the SECURITY DEFINER routines held INVOKER for the copy (by this reading or another open one). */
  definers: string[];
}

/**
 * How long a reading stays open before its copy begins (the move of an empty schema, two lock
 * waits); past it the workspace's next snapshot, fork or restore undoes it.
 */
export const SNAPSHOT_READING_LEASE_MS = 15 * 60_000;

const RELATION_OIDS = `
  SELECT c.oid::int8::text AS oid FROM pg_catalog.pg_class c
   WHERE c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND c.relkind IN ('r', 'S')
   ORDER BY c.oid`;

/** The objects named by OID still there, named as the server's statements need them now. */
const CURRENT_NAMES = `
  SELECT (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_namespace n WHERE n.oid = $1::pg_catalog.oid) AS schema,
         pg_catalog.to_regrole($2) IS NOT NULL AS reader,
         ARRAY(SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::pg_catalog.regclass::text
                 FROM pg_catalog.pg_class c WHERE c.oid = ANY ($3::pg_catalog.oid[]) ORDER BY c.oid) AS relations,
         ARRAY(SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p WHERE p.oid = ANY ($4::pg_catalog.oid[]) ORDER BY p.oid) AS definers,
         ARRAY(SELECT pg_catalog.quote_ident(r.rolname) FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.member
                WHERE m.roleid = pg_catalog.to_regrole($2) ORDER BY r.rolname) AS members`;

interface Reading {
  reader: string;
  snapshotOid: string;
  relations: string[];
  definers: string[];
}

async function currentNames(tx: Queryable, reading: Reading) {
  const [now] = await tx.query<{ schema: string | null; reader: boolean; relations: string[]; definers: string[]; members: string[] }>(CURRENT_NAMES, [
    reading.snapshotOid,
    quoteIdent(reading.reader),
    reading.relations,
    reading.definers,
  ]);
  return now ?? { schema: null, reader: false, relations: [], definers: [], members: [] };
}

/** The routines open readings of the snapshot other than `reader` hold INVOKER. */
async function heldByOthers(tx: Queryable, snapshotOid: string, reader: string): Promise<Set<string>> {
  const rows = await tx.query<{ oid: string }>(
    `SELECT DISTINCT unnest(definers)::int8::text AS oid FROM project_registry.snapshot_readings
      WHERE snapshot_schema = $1::pg_catalog.oid AND reader <> $2 AND NOT closed`,
    [snapshotOid, reader],
  );
  return new Set(rows.map((r) => r.oid));
}

/** The reading's routines no other open reading holds, made SECURITY DEFINER again. */
async function restoreDefiners(tx: Queryable, reading: Reading): Promise<void> {
  const others = await heldByOthers(tx, reading.snapshotOid, reading.reader);
  const mine = reading.definers.filter((oid) => !others.has(oid));
  const routines = (await currentNames(tx, { ...reading, definers: mine })).definers.map((routine) => `ALTER ROUTINE ${routine} SECURITY DEFINER`);
  for (const statement of asOwner(await snapshotOwner(tx, reading.snapshotOid), routines)) await tx.exec(statement);
}

/** The owner of the snapshot's tables and sequences (its snapshot role), if any: found by the schema's OID, wherever a restore renamed it. */
async function snapshotOwner(tx: Queryable, snapshotOid: string): Promise<string | null> {
  const [row] = await tx.query<{ owner: string }>(
    `SELECT pg_catalog.pg_get_userbyid(c.relowner)::text AS owner FROM pg_catalog.pg_class c
      WHERE c.relnamespace = $1::pg_catalog.oid AND c.relkind IN ('r', 'S') LIMIT 1`,
    [snapshotOid],
  );
  return row?.owner ?? null;
}

/**
 * `statements` a statement at a time (Citus forwards DDL on distributed objects as the string it
 * came in), with the server a member of `owner` for them only (memberFor); none: nothing at all.
 */
function asOwner(owner: string | null, statements: string[]): string[] {
  if (statements.length === 0 || !owner) return statements;
  return [`GRANT ${quoteIdent(owner)} TO CURRENT_USER`, ...statements, `REVOKE ${quoteIdent(owner)} FROM CURRENT_USER`];
}

const ROW_SECURITY_TABLES = `
  SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c.relname), ', ' ORDER BY c.relname) AS tables FROM pg_catalog.pg_class c
   WHERE c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND c.relkind = 'r' AND c.relrowsecurity`;

/**
 * In the committed first transaction of a copy from a snapshot of `projectId` on Citus, under its
 * lock: the reader, and `copier` its member, recorded. Refused (`what` names the copy) when a
 * table of the snapshot has row level security enabled: the reader is not its owner, so its
 * policies would apply, and the copy fails rather than lose rows.
 */
export async function grantSnapshotReading(
  tx: Queryable,
  projectId: string,
  snapshotSchema: string,
  reader: string,
  copier: string,
  what: string,
): Promise<SnapshotGrants> {
  const [secured] = await tx.query<{ tables: string | null }>(ROW_SECURITY_TABLES, [snapshotSchema]);
  if (secured?.tables) {
    throw new WorkspaceLifecycleError(
      `${what} is refused on Citus: row level security is enabled on its table(s) ${secured.tables}, and the copy reads a snapshot ` +
        'as a role that may only read it, not as its owner, so the policies would apply. Restore the snapshot and fork the workspace ' +
        '(its current state), or fork another snapshot. Nothing was changed.',
    );
  }
  const [schema] = await tx.query<{ oid: string }>('SELECT $1::pg_catalog.regnamespace::pg_catalog.oid::int8::text AS oid', [quoteIdent(snapshotSchema)]);
  const snapshotOid = schema?.oid ?? '0';
  const owner = await snapshotOwner(tx, snapshotOid);
  const definers = (await tx.query<{ oid: string }>(DEFINERS, [snapshotSchema])).map((d) => d.oid);
  const held = [...(await heldByOthers(tx, snapshotOid, reader))];
  const grants: SnapshotGrants = {
    snapshot: snapshotSchema,
    snapshotOid,
    reader,
    relations: (await tx.query<{ oid: string }>(RELATION_OIDS, [snapshotSchema])).map((r) => r.oid),
    definers: [...new Set([...definers, ...held])].sort((a, b) => Number(a) - Number(b)),
  };
  const names = await currentNames(tx, { ...grants, definers });
  const to = quoteIdent(reader);
  await tx.query(
    `INSERT INTO project_registry.snapshot_readings (reader, project_id, snapshot_schema, relations, definers, lease_until)
     VALUES ($1, $2, $3::pg_catalog.oid, $4::pg_catalog.oid[], $5::pg_catalog.oid[], pg_catalog.now() + $6 * interval '1 millisecond')`,
    [reader, projectId, snapshotOid, grants.relations, grants.definers, SNAPSHOT_READING_LEASE_MS],
  );
  // A statement at a time: Citus forwards DDL on distributed objects as the string it came in.
  for (const statement of [
    // Never one used before (its name holds the new schema's OID): fails rather than reuse one.
    `CREATE ROLE ${to} NOLOGIN NOINHERIT VALID UNTIL '-infinity'`,
    ...asOwner(owner, [
      ...names.definers.map((routine) => `ALTER ROUTINE ${routine} SECURITY INVOKER`),
      ...names.relations.map((relation) => `GRANT SELECT ON ${relation} TO ${to}`),
    ]),
    `GRANT USAGE ON SCHEMA ${quoteIdent(snapshotSchema)} TO ${to}`,
    // Inheriting, for the copy only: the sandbox refuses every role change.
    `GRANT ${to} TO ${quoteIdent(copier)}`,
    `ALTER ROLE ${quoteIdent(copier)} INHERIT`,
  ]) {
    await tx.exec(statement);
  }
  return grants;
}

/** Every recorded reader of the snapshot (this copy's and any other's): their grants on it are not copied. */
export async function snapshotReaders(tx: Queryable, grants: SnapshotGrants): Promise<string[]> {
  const rows = await tx.query<{ reader: string }>('SELECT reader FROM project_registry.snapshot_readings WHERE snapshot_schema = $1::pg_catalog.oid', [grants.snapshotOid]);
  return [...new Set([grants.reader, ...rows.map((r) => r.reader)])];
}

/** Whether a fork's reading of the snapshot is open (under way, or stopped within its lease). */
export async function snapshotBeingRead(tx: Queryable, snapshotSchema: string): Promise<boolean> {
  const rows = await tx.query(
    'SELECT FROM project_registry.snapshot_readings WHERE snapshot_schema = pg_catalog.to_regnamespace($1)::pg_catalog.oid AND NOT closed',
    [snapshotSchema],
  );
  return rows.length > 0;
}

/** The reading's row, locked, if it is still open. */
async function openRow(tx: Queryable, reader: string): Promise<boolean> {
  const rows = await tx.query('SELECT FROM project_registry.snapshot_readings WHERE reader = $1 AND NOT closed FOR UPDATE', [reader]);
  return rows.length > 0;
}

/**
 * In the copy's transaction, under the workspace's lock, before the copy: its reading must still
 * be open. A reading past its lease may have been undone by another snapshot, fork or restore of
 * the workspace (settleSnapshotReadings): the copy would then read without it.
 */
export async function requireSnapshotReading(tx: Queryable, grants: SnapshotGrants, what: string): Promise<void> {
  if (await openRow(tx, grants.reader)) return;
  throw new WorkspaceLifecycleError(`${what} took too long to begin its copy and was stopped: try again. Nothing was changed.`);
}

/** In the copy's transaction (or when a failed copy is discarded), under the workspace's lock: the copier reads the snapshot no more, its routines are as they were. */
export async function closeSnapshotReading(tx: Queryable, grants: SnapshotGrants, copier: string): Promise<void> {
  if (!(await openRow(tx, grants.reader))) return;
  const to = quoteIdent(grants.reader);
  const now = await currentNames(tx, grants);
  if (now.reader) {
    await tx.exec(`REVOKE ${to} FROM ${quoteIdent(copier)}`);
    await tx.exec(`ALTER ROLE ${quoteIdent(copier)} NOINHERIT`);
    if (now.schema) await tx.exec(`REVOKE ALL ON SCHEMA ${now.schema} FROM ${to}`);
  }
  await restoreDefiners(tx, grants);
  await tx.query('UPDATE project_registry.snapshot_readings SET closed = true WHERE reader = $1', [grants.reader]);
}

/** After the copy's transaction, in one of its own under the workspace's lock: the reader's grants revoked, the reader dropped, its row gone. */
export async function finishSnapshotReading(tx: Queryable, grants: SnapshotGrants): Promise<void> {
  const rows = await tx.query('DELETE FROM project_registry.snapshot_readings WHERE reader = $1 RETURNING reader', [grants.reader]);
  if (rows.length === 0) return;
  await dropReader(tx, grants);
}

async function dropReader(tx: Queryable, reading: Reading): Promise<void> {
  const to = quoteIdent(reading.reader);
  const now = await currentNames(tx, reading);
  if (!now.reader) return;
  for (const member of now.members) await tx.exec(`REVOKE ${to} FROM ${member}`);
  if (now.schema) await tx.exec(`REVOKE ALL ON SCHEMA ${now.schema} FROM ${to}`);
  const owner = await snapshotOwner(tx, reading.snapshotOid);
  for (const statement of asOwner(owner, now.relations.map((relation) => `REVOKE ALL ON ${relation} FROM ${to}`))) await tx.exec(statement);
  await tx.exec(`DROP ROLE ${to}`);
}

/**
 * Under the workspace's lock, before its snapshot, fork or restore on Citus: what readings of its
 * snapshots left by a process that stopped between a copy's steps (a row closed, or open past its
 * lease) undone, by OID: the reader's membership, grants and role, the routines it held INVOKER
 * that no open reading holds. Returns the readers undone.
 */
export async function settleSnapshotReadings(tx: Queryable, projectId: string): Promise<string[]> {
  const left = await tx.query<{ reader: string; snapshot_oid: string; relations: string[]; definers: string[] }>(
    `DELETE FROM project_registry.snapshot_readings
      WHERE project_id = $1 AND (closed OR lease_until < pg_catalog.now())
      RETURNING reader, snapshot_schema::int8::text AS snapshot_oid, relations::int8[]::text[] AS relations, definers::int8[]::text[] AS definers`,
    [projectId],
  );
  for (const row of left) {
    const reading = { reader: row.reader, snapshotOid: row.snapshot_oid, relations: row.relations, definers: row.definers };
    await restoreDefiners(tx, reading);
    await dropReader(tx, reading);
  }
  return left.map((row) => row.reader);
}
